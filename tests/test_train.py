"""Training: sharded steps and checkpoints, learning on a fixed batch, exact resume, failures, SIGTERM.

Everything runs on the 8 forced CPU devices with the tiny bundle and the 12 bundled sample
photos (32 px, batch 8, 2 DDIM steps). Compiling the train step takes ~35 s on 2 cores, so
the tests share it: one records folder, the session's towers, and a persistent compilation
cache for the module (and the subprocesses), so every rebuild of the same step is a cache hit.

Most runs use ``train_worker.train_config``: configs/tiny.py on a (data=4, fsdp=2) mesh.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import train_worker as tw
from regionedit_jax import checkpoints
from regionedit_jax.data import pipeline
from regionedit_jax.train import loop

REPO = tw.REPO
RESUME_STEPS = 6  # the resume, NaN and SIGTERM runs: 6 steps, checkpoints every 3


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """One persistent compilation cache for the session's training tests (and their subprocesses)."""
    directory = str(tmp_path_factory.getbasetemp() / "jax_train_cache")
    with tw.compilation_cache(directory):
        yield directory


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> str:
    return tw.write_records(str(tmp_path_factory.mktemp("train_records")))


@pytest.fixture(scope="module")
def towers(clip_tower, t5_tower, sd_tower):
    return {"clip": clip_tower, "t5": t5_tower, "sd_inpaint": sd_tower}


def resume_config(tiny_bundle, records, **train):
    return tw.train_config(tiny_bundle, records, **{"num_steps": RESUME_STEPS, "checkpoint_every": 3, **train})


def saved_steps(workdir) -> list[int]:
    folder = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(folder) else []


def assert_finite(metrics: dict[str, float]) -> None:
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    assert not bad, bad


# --------------------------------------------------------------------------- 1. sharded steps


def test_sharded_steps_write_a_readable_checkpoint(tiny_bundle, records, towers, tmp_path, monkeypatch):
    config = tw.train_config(tiny_bundle, records, num_steps=3, checkpoint_every=3, panel_every=3)
    capture = tw.Capture(monkeypatch)
    start = time.perf_counter()
    metrics = loop.train_and_evaluate(config, str(tmp_path), towers)
    print(
        f"\n3 sharded steps: {time.perf_counter() - start:.1f} s "
        f"(step compiled in {capture.trainer.compile_seconds:.1f} s)"
    )
    trainer = capture.trainer
    assert dict(trainer.mesh.shape) == {"data": 4, "fsdp": 2}
    assert_finite(metrics)
    assert metrics["grad_norm_region"] > 0 and 0 <= metrics["mask_area"] <= 1
    assert int(trainer.state.step) == 3

    # Trainable params follow the logical rules: embed -> fsdp, the rest replicated.
    params = trainer.state.params
    kernel = params["region"]["patch_in"]["kernel"]  # ("embed", "mlp")
    assert kernel.sharding.spec == P("fsdp", None)
    assert {s.data.shape for s in kernel.addressable_shards} == {(kernel.shape[0] // 2, kernel.shape[1])}
    assert params["region"]["mlp_0"]["fc2"]["kernel"].sharding.spec == P(None, "fsdp")  # ("mlp", "embed")
    mu = trainer.state.opt_state[1][0].mu["region"]["patch_in"]["kernel"]  # Adam moments as the params
    assert mu.sharding.spec == P("fsdp", None)
    # A 1-wide "embed" output (the region heads' last layer) cannot split: replicated.
    head = params["region"]["head_1"]["fc2"]["kernel"]
    assert head.shape[-1] == 1 and all(a is None for a in head.sharding.spec)
    # Frozen towers: CLIP and the UNet are fsdp-sharded by the regex rules, T5 replicated.
    frozen_specs = {
        jax.tree_util.keystr(k): v.sharding.spec for k, v in jax.tree_util.tree_flatten_with_path(trainer.frozen)[0]
    }
    assert any("fsdp" in spec for name, spec in frozen_specs.items() if name.startswith("['clip']"))
    assert all(all(a is None for a in spec) for name, spec in frozen_specs.items() if name.startswith("['t5']"))

    # The checkpoint holds state, params, data position and config; the Editor's reader takes params.
    assert saved_steps(tmp_path) == [3]
    step_dir = tmp_path / "checkpoints" / "3"
    assert {"state", "params", "data", "config"} <= set(os.listdir(step_dir))
    restored, step = checkpoints.restore_params(str(tmp_path / "checkpoints"), params)
    assert step == 3
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(restored)[0], jax.tree_util.tree_leaves(params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
    assert os.path.isfile(tmp_path / "panels" / "step_0000003.png")
    assert os.listdir(tmp_path / "tensorboard")


# --------------------------------------------------------------------------- 2. learning signal


def fixed_batch_trainer(tiny_config, records, towers, **loss):
    config = ml_collections.ConfigDict(tiny_config.to_dict())
    config.data.path = records
    config.loss.update(loss)
    config.lock()
    batch = next(iter(loop.make_training_dataset(config, towers)))
    trainer = loop.Trainer.build(config, batch, towers)
    return config, trainer, pipeline.to_global(batch, trainer.mesh)


def test_loss_falls_on_a_fixed_batch_and_the_region_gets_gradients(tiny_config, records, towers):
    config, trainer, batch = fixed_batch_trainer(tiny_config, records, towers)
    rng = jax.random.key(1)
    curve, times = [], []
    for _ in range(config.train.num_steps):  # 30 steps: warmup 3, cosine to lr / 100
        start = time.perf_counter()
        trainer.state, metrics, _ = trainer.step_fn(trainer.state, trainer.frozen, batch, rng)
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        times.append(time.perf_counter() - start)
        assert_finite(metrics)
        assert metrics["grad_norm_region"] > 0
        curve.append(metrics)
    total = [m["total"] for m in curve]
    print(
        f"\nfixed batch (mesh {dict(trainer.mesh.shape)}): compiled in {trainer.compile_seconds:.1f} s, "
        f"median step {1000 * np.median(times[2:]):.0f} ms"
    )
    print("step  total   sem    clip   dir    struct  mask   |g|       |g_region|")
    for i, m in enumerate(curve, 1):
        print(
            f"{i:4d}  {m['total']:.3f}  {m['sem']:.3f}  {m['clip']:.3f}  {m['direction']:.3f}  "
            f"{m['structure']:.4f}  {m['mask_area']:.2f}   {m['grad_norm']:<9.3g} {m['grad_norm_region']:.3g}"
        )
    first, last = np.mean(total[:5]), np.mean(total[-5:])
    print(f"first-5 mean {first:.3f} -> last-5 mean {last:.3f}")
    assert last < first - 0.25, total


def test_clip_losses_alone_reach_the_region_through_the_straight_through_blend(tiny_config, records, towers):
    # alpha = 0 drops L_sem, the only term that sees the region predictor's features directly;
    # the CLIP terms see only I_edit = m_st * sg(G) + (1 - m_st) * I_src.
    _, trainer, batch = fixed_batch_trainer(tiny_config, records, towers, alpha=0.0)
    trainer.state, metrics, _ = trainer.step_fn(trainer.state, trainer.frozen, batch, jax.random.key(1))
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    print(f"\nalpha=0: |g| {metrics['grad_norm']:.4g}, |g_region| {metrics['grad_norm_region']:.4g}")
    assert_finite(metrics)
    assert metrics["sem"] > 0 and metrics["total"] == pytest.approx(metrics["clip_total"])
    assert metrics["grad_norm_region"] > 0
    # The projector only serves L_sem: no gradient, so all of |g| is the region's.
    assert metrics["grad_norm"] == pytest.approx(metrics["grad_norm_region"], rel=1e-6)


# --------------------------------------------------------------------------- 3. exact resume
# The first run is stopped at step 3 the way a cluster stops it (SIGTERM, handled by the loop),
# not by a shorter num_steps: num_steps shapes the lr schedule (warmup and cosine decay), so a
# 3-step run is a different run, not the first half of a 6-step one.


def run_capturing(config, workdir, towers, before_step=None):
    """train_and_evaluate with the Trainer and the fed batches captured -> (metrics, capture)."""
    with pytest.MonkeyPatch.context() as mp:
        capture = tw.Capture(mp)
        capture.before_step = before_step
        metrics = loop.train_and_evaluate(config, str(workdir), towers)
    return metrics, capture


def sigterm_at(step: int):
    """A before_step hook that sends this process SIGTERM while step ``step`` runs."""

    def hook(at, state):
        if at == step - 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return state

    return hook


@pytest.fixture(scope="module")
def uninterrupted(tiny_bundle, records, towers, tmp_path_factory):
    """6 steps in one go: workdir, last metrics, final params (host tree and flat), fed batch digests."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    metrics, capture = run_capturing(resume_config(tiny_bundle, records), workdir, towers)
    params = jax.device_get(capture.trainer.state.params)
    return SimpleNamespace(
        workdir=workdir, metrics=metrics, params=params, flat=tw.flat_params(params), fed=capture.fed[1:]
    )


@pytest.fixture(scope="module")
def preempted(tiny_bundle, records, towers, tmp_path_factory):
    """The same run, preempted (SIGTERM in this process) during step 3: (workdir, fed batch digests)."""
    workdir = tmp_path_factory.mktemp("preempted")
    _, capture = run_capturing(resume_config(tiny_bundle, records), workdir, towers, sigterm_at(3))
    assert int(capture.trainer.state.step) == 3 and saved_steps(workdir) == [3]
    return workdir, capture.fed[1:]


def test_resume_after_preemption_is_exact(tiny_bundle, records, towers, uninterrupted, preempted, tmp_path):
    ref_dir, ref_metrics, ref_params, ref_fed = (
        uninterrupted.workdir,
        uninterrupted.metrics,
        uninterrupted.flat,
        uninterrupted.fed,
    )
    workdir = tmp_path / "resumed"
    shutil.copytree(preempted[0], workdir)
    metrics, capture = run_capturing(resume_config(tiny_bundle, records), workdir, towers)
    assert saved_steps(workdir) == [3, 6]
    # The same batches in the same order: 3 before the preemption, 3 after the resume.
    assert len(ref_fed) == RESUME_STEPS
    assert preempted[1] + capture.fed[1:] == ref_fed
    data_state = "checkpoints/6/data/process_0-of-1.json"
    assert json.load(open(workdir / data_state)) == json.load(open(ref_dir / data_state))
    # Bit for bit: the same compiled step on the same state, batches and step-folded rng.
    params = tw.flat_params(capture.trainer.state.params)
    assert params.keys() == ref_params.keys()
    for name in params:
        np.testing.assert_array_equal(params[name], ref_params[name], err_msg=name)
    assert metrics == ref_metrics


def test_a_corrupt_newest_step_is_set_aside_and_the_run_resumes_from_the_newest_intact_one(
    tiny_bundle, records, towers, uninterrupted, tmp_path, capsys
):
    workdir = tmp_path / "corrupt"
    shutil.copytree(uninterrupted.workdir, workdir)
    state_files = [
        os.path.join(p, n) for p, _, names in os.walk(workdir / "checkpoints" / "6" / "state") for n in names
    ]
    victim = max(state_files, key=os.path.getsize)
    data = bytearray(open(victim, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(victim, "wb").write(data)

    metrics, capture = run_capturing(resume_config(tiny_bundle, records), workdir, towers)
    out = capsys.readouterr().out
    assert re.search(
        r"checkpoints/6 is corrupt: state/.* changed \(SHA-256 differs\)\. Moved to .*corrupt_checkpoints/6", out
    )
    assert "resumed from" in out and "step 3" in out
    assert os.path.isdir(workdir / "corrupt_checkpoints" / "6" / "state")  # kept for inspection
    assert saved_steps(workdir) == [3, 6] and checkpoints.verify(str(workdir / "checkpoints"), 6) == []
    # Steps 4-6 retrained from step 3 end bit for bit where the uninterrupted run ended.
    params = tw.flat_params(capture.trainer.state.params)
    for name in params:
        np.testing.assert_array_equal(params[name], uninterrupted.flat[name], err_msg=name)
    assert metrics == uninterrupted.metrics


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"optimizer.lr": 5e-4}, "optimizer.lr: 0.001 -> 0.0005"),
        ({"region.depth": 2}, "region.depth: 1 -> 2"),
    ],
)
def test_resuming_with_another_optimizer_or_region_says_what_differs(
    tiny_bundle, records, towers, preempted, tmp_path, change, expected
):
    workdir = tmp_path / "changed"
    shutil.copytree(preempted[0], workdir)
    config = resume_config(tiny_bundle, records).unlock()
    for key, value in change.items():
        section, name = key.split(".")
        config[section][name] = value
    with pytest.raises(ValueError, match="was trained with another config") as err:
        loop.train_and_evaluate(config, str(workdir), towers)
    print(f"\n{err.value}")
    assert expected in str(err.value) and "init_checkpoint=" in str(err.value)
    assert saved_steps(workdir) == [3]  # nothing was moved or written


def test_sigterm_between_the_step_and_its_save_is_handled_at_the_next_step(
    tiny_bundle, records, towers, tmp_path, monkeypatch
):
    # A signal that lands after the loop has decided not to save step 1 (here: while step 1's
    # metrics are written) must not end the run unsaved; it is honoured after step 2.
    from regionedit_jax.train import writers

    scalars = writers.MetricWriter.scalars
    sent = []

    def scalars_then_sigterm(self, step, values):
        scalars(self, step, values)
        if not sent:
            sent.append(step)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(writers.MetricWriter, "scalars", scalars_then_sigterm)
    _, capture = run_capturing(resume_config(tiny_bundle, records), tmp_path, towers)
    assert sent == [1]
    assert int(capture.trainer.state.step) == 2 and saved_steps(tmp_path) == [2]


# --------------------------------------------------------------------------- 4. failing fast and cleanly


def launch_train(args, timeout=120, **env):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "launch", "train.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    "flag, name",
    [
        ("--config.train.num_stesp=3", "num_stesp"),
        ("--config=configs/tiny.py:bundel=x", "bundel"),
    ],
)
def test_config_typo_fails_at_parse_time(flag, name, tmp_path):
    start = time.perf_counter()
    result = launch_train([flag, "--workdir", str(tmp_path / "w")])
    seconds = time.perf_counter() - start
    said = next((line for line in result.stderr.splitlines() if name in line), "")
    print(f"\n{flag}: exit {result.returncode} in {seconds:.1f} s: {said.strip()[:200]}")
    assert result.returncode != 0
    assert name in result.stderr
    assert "step" not in result.stdout and not (tmp_path / "w").exists()  # nothing ran
    assert seconds < 60


@pytest.mark.parametrize(
    "log_every, checkpoint_every, caught_at",
    [
        (100, 1, 4),  # caught by the check before saving step 4
        (100, 100, 6),  # not logged or saved until the last step: caught there
    ],
)
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(
    tiny_bundle, records, towers, preempted, uninterrupted, tmp_path, log_every, checkpoint_every, caught_at
):
    workdir = tmp_path / "nan"
    shutil.copytree(preempted[0], workdir)

    def poison(at, state):  # from step 4 on, NaN params make the loss and the gradients NaN
        if at >= 3:
            state = state.replace(params=jax.tree_util.tree_map(lambda x: x * np.nan, state.params))
        return state

    config = resume_config(tiny_bundle, records, log_every=log_every, checkpoint_every=checkpoint_every)
    with pytest.raises(loop.TrainingDiverged, match=rf"step {caught_at}: .*'total': nan.* is not finite") as err:
        run_capturing(config, workdir, towers, poison)
    print(f"\n{err.value}")
    assert "last good checkpoint is kept" in str(err.value) and "--config.train.init_checkpoint" in str(err.value)
    assert saved_steps(workdir) == [3]
    params, step = checkpoints.restore_params(str(workdir / "checkpoints"), uninterrupted.params)
    assert step == 3
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(params))


# --------------------------------------------------------------------------- 5. SIGTERM


@pytest.mark.parametrize(
    "signum, code, said",
    [(signal.SIGTERM, 0, "SIGTERM: saved step"), (signal.SIGINT, 130, "Ctrl-C: saved step")],
    ids=["sigterm", "ctrl-c"],
)
def test_a_signal_saves_and_the_rerun_continues(
    tiny_bundle, records, compile_cache, uninterrupted, tmp_path, signum, code, said
):
    workdir = tmp_path / "w"
    args = [
        f"--config=configs/tiny.py:bundle={tiny_bundle},data={records}",
        "--workdir",
        str(workdir),
        "--config.mesh.data=4",
        "--config.mesh.fsdp=2",
        f"--config.train.num_steps={RESUME_STEPS}",
        "--config.train.checkpoint_every=3",
        "--config.train.log_every=1",
        "--config.train.panel_every=0",
    ]
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": compile_cache,
        "PYTHONUNBUFFERED": "1",
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
    command = [sys.executable, os.path.join(REPO, "launch", "train.py"), *args]
    start = time.perf_counter()
    with open(tmp_path / "stderr1", "w") as stderr:
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        watchdog = threading.Timer(300, proc.kill)
        watchdog.start()
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("step 1/"):  # the loop runs and the signal is handled
                    proc.send_signal(signum)
            exit_code = proc.wait()
        finally:
            watchdog.cancel()
            proc.kill()
    out = "".join(lines)
    print(f"\npreempted run: exit {exit_code} after {time.perf_counter() - start:.1f} s\n{out}")
    assert exit_code == code, (tmp_path / "stderr1").read_text()[-3000:]
    saved = re.search(re.escape(said) + r" (\d+)", out)
    assert saved, out
    at = int(saved.group(1))
    assert 1 <= at < RESUME_STEPS
    assert saved_steps(workdir) == sorted({3, at} if at > 3 else {at})

    start = time.perf_counter()
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    print(f"rerun: exit {rerun.returncode} after {time.perf_counter() - start:.1f} s\n{rerun.stdout}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"checkpoints step {at}" in rerun.stdout
    assert f"step {at + 1}/{RESUME_STEPS}" in rerun.stdout and f"step {at}/" not in rerun.stdout
    assert saved_steps(workdir)[-1] == RESUME_STEPS
    # ... and ends where the uninterrupted in-process run ended.
    params, step = checkpoints.restore_params(str(workdir / "checkpoints"), uninterrupted.params)
    assert step == RESUME_STEPS
    for name, value in tw.flat_params(params).items():
        np.testing.assert_array_equal(value, uninterrupted.flat[name], err_msg=name)


def test_scalars_read_back_from_the_event_files(tmp_path):
    from regionedit_jax.train import writers

    writer = writers.MetricWriter(str(tmp_path), enabled=True)
    for step in (1, 2, 3):
        writer.scalars(step, {"total": 1.0 / step, "grad_norm": float(step)})
    writer.scalars(2, {"total": 0.25})  # a resumed run writes step 2 again
    writer.image(3, "panel", np.zeros((4, 4, 3), np.uint8))
    writer.close()
    scalars = writers.read_scalars(str(tmp_path))
    assert scalars["total"] == [(1, 1.0), (2, 0.25), (3, pytest.approx(1 / 3))]
    assert scalars["grad_norm"] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert writers.read_scalars(str(tmp_path / "missing")) == {}
