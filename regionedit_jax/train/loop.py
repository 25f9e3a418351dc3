"""``train_and_evaluate(config, workdir)``: the training loop around one compiled step.

Resume order: the workdir's newest intact checkpoint (state + data iterator, exact; see
train/resume.py: corrupt steps are set aside, a changed config is refused), else
``config.train.init_checkpoint`` (params only), else a fresh init. Checkpoints
(``workdir/checkpoints/<step>/``) hold the train state, the trainable ``params`` (what the
Editor reads), every process's data-iterator position and the config; the last
``keep_checkpoints`` are kept. SIGTERM (cluster preemption) reaching any host makes every
host save the same step and exit 0 (the flag is agreed by all processes each step); a Ctrl-C
does the same and exits 130, a second Ctrl-C at once. Loss and
gradient norm are checked for NaN/inf at every log step and before every save: a bad value
stops the run with a clear message and the last good checkpoint stays.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import linen as nn
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from regionedit_jax import checkpoints as params_io
from regionedit_jax import generators, outputs
from regionedit_jax.configs import checks as config_checks
from regionedit_jax.data import pipeline, records
from regionedit_jax.model import RegionEditModel
from regionedit_jax.towers import bundle
from regionedit_jax.train import mesh as mesh_lib
from regionedit_jax.train import resume, writers
from regionedit_jax.train.state import TrainState, make_optimizer
from regionedit_jax.train.step import make_train_step


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite."""


def initialize_distributed(config) -> None:
    """``jax.distributed.initialize`` when ``config.distributed`` asks for it.

    With an empty coordinator address JAX detects the cluster itself (SLURM, TPU pods,
    Open MPI); explicit values serve local multi-process runs and tests.
    """
    dc = config.distributed
    if not dc.enabled or jax.distributed.is_initialized():
        return
    kwargs = {}
    if dc.coordinator_address:  # local multi-process runs: CPU collectives need gloo (no effect on GPUs)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        kwargs = dict(
            coordinator_address=dc.coordinator_address, num_processes=dc.num_processes, process_id=dc.process_id
        )
    jax.distributed.initialize(**kwargs)


def _check_finite(step: int, metrics: dict[str, float]) -> None:
    bad = {k: metrics[k] for k in ("total", "grad_norm") if not np.isfinite(metrics[k])}
    if bad:
        raise TrainingDiverged(
            f"step {step}: {bad} is not finite; stopping. The last good checkpoint is kept. A resume "
            "keeps the optimizer settings, so start a new workdir from it with a lower optimizer.lr "
            "or a smaller optimizer.grad_clip: --config.train.init_checkpoint=WORKDIR/checkpoints."
        )


def _any_process(flag: bool) -> bool:
    """True when ``flag`` is set on any process (one tiny all-gather; local with one process)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.max(multihost_utils.process_allgather(np.int32(flag))))


class _Preemption:
    """Turns SIGTERM and the first Ctrl-C (SIGINT) into a flag the loop checks after each step:
    the step is saved, then the run stops. A second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self.interrupted = False  # the request was a Ctrl-C
        self._previous = {}

    def __enter__(self):
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        except ValueError:  # not the main thread: leave signals alone
            self._previous = {}
        return self

    def _handle(self, signum, frame):
        self.requested = True
        if signum == signal.SIGINT:
            self.interrupted = True
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        for s, previous in self._previous.items():
            signal.signal(s, previous)


@dataclasses.dataclass
class Trainer:
    """Everything the loop needs, built once from the config (see ``Trainer.build``)."""

    config: Any
    model: RegionEditModel
    mesh: Any
    frozen: Any
    state: TrainState
    state_shardings: Any
    step_fn: Any  # compiled train step
    compile_seconds: float

    @classmethod
    def build(cls, config, sample_batch: dict[str, np.ndarray], towers: dict[str, Any] | None = None) -> Trainer:
        mesh = mesh_lib.make_mesh(dict(config.mesh))
        towers = towers or load_towers(config)
        model = RegionEditModel.from_towers(towers, config, generator_steps=config.train.generator_steps)
        frozen_host = model.frozen_params()
        frozen_sh = mesh_lib.frozen_shardings(frozen_host, mesh, config.sharding.frozen)
        frozen = jax.device_put(frozen_host, frozen_sh)
        tx = make_optimizer(config)

        def init(rng):
            return TrainState.create(model.init(rng, boxed=True), tx)

        abstract = jax.eval_shape(init, jax.random.key(config.seed))
        state_sh = mesh_lib.logical_shardings(abstract, mesh, config.sharding.logical_rules)
        state = jax.jit(lambda r: nn.meta.unbox(init(r)), out_shardings=state_sh)(jax.random.key(config.seed))
        replicated = NamedSharding(mesh, P())
        batch_sh = NamedSharding(mesh, mesh_lib.BATCH)
        step = jax.jit(
            make_train_step(model, config),
            in_shardings=(state_sh, frozen_sh, batch_sh, replicated),
            out_shardings=(state_sh, replicated, batch_sh),
            donate_argnums=(0,),
        )
        start = time.perf_counter()
        compiled = step.lower(state, frozen, pipeline.to_global(sample_batch, mesh), jax.random.key(0)).compile()
        return cls(config, model, mesh, frozen, state, state_sh, compiled, time.perf_counter() - start)

    def abstract_state(self) -> Any:
        return jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), self.state, self.state_shardings
        )


def load_towers(config) -> dict[str, Any]:
    """CLIP, T5 and the towers of the configured generator."""
    return bundle.load(config.towers, ("clip", "t5") + generators.towers_for(config.generator), seed=config.seed)


def make_training_dataset(config, towers: dict[str, Any], **overrides):
    """``pipeline.make_dataset`` for ``config`` with the towers' tokenizers and the generator's prompt tokens."""
    generator = generators.make(config.generator, towers, num_steps=config.train.generator_steps)
    args = dict(
        image_size=config.image_size,
        global_batch_size=config.global_batch_size,
        clip_tokenizer=towers["clip"].tokenizer,
        t5_tokenizer=towers["t5"].tokenizer,
        seed=config.seed,
        prompt_tokenizer=generator.prompt_tokenizer,
        t5_max_length=towers["t5"].max_length,
        crop=config.data.crop,
        worker_count=config.data.workers,
    )
    return pipeline.make_dataset(config.data.path, **{**args, **overrides})


def _local_rows(x: jax.Array, n: int) -> np.ndarray:
    """The first ``n`` rows of a batch-sharded global array that this process holds."""
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    seen, rows = set(), []
    for shard in shards:
        start = shard.index[0].start or 0
        if start not in seen:
            seen.add(start)
            rows.append(np.asarray(shard.data))
    return np.concatenate(rows)[:n]


def _panel(trainer: Trainer, local: dict[str, np.ndarray], preview: dict[str, jax.Array]) -> np.ndarray:
    n = trainer.config.train.panel_images
    edited, mask = _local_rows(preview["edited"], n), _local_rows(preview["mask"], n)
    n = len(edited)
    texts = trainer.model.t5.tokenizer.decode(local["t5_ids"][:n])
    return writers.panel(local["image"][:n], mask, edited, texts)


def _periodic_evaluation(config, towers: dict[str, Any], params: Any, say):
    """``params -> {"eval/<name>/<metric>": value}`` for ``config.evals``, or None when there are none.

    The evaluators are built (and their options validated) here, before any training step.
    """
    if not config.evals:
        return None
    from regionedit_jax import evaluators
    from regionedit_jax.editor import Editor

    built = evaluators.build_all(config.evals, towers)
    if jax.process_count() > 1:
        say("config.evals: periodic evaluation runs in single-process training only; skipped here.")
        return None
    editor = Editor.from_towers(towers, config, params=jax.device_get(params))

    def run(params) -> dict[str, float]:
        editor.params = jax.device_get(params)
        out = {}
        for name, evaluator in built.items():
            for key, value in evaluator.run(editor).items():
                if isinstance(value, (int, float)):
                    out[f"eval/{name}/{key}"] = float(value)
        say("  ".join(f"{k} {v:.4f}" for k, v in out.items()))
        return out

    return run


def train_and_evaluate(config, workdir: str, towers: dict[str, Any] | None = None) -> dict[str, float]:
    """Trains ``config.train.num_steps`` steps in ``workdir``; returns the last logged metrics."""
    config_checks.check(config)
    outputs.check_folder(workdir, "--workdir")
    if config.train.init_checkpoint:  # missing or corrupt: refused before towers load
        params_io.choose_step(config.train.init_checkpoint)
    records.check_shards(config.data.path)  # missing or damaged shards: refused before towers load
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    tc = config.train
    is_main = jax.process_index() == 0
    say = print if is_main else (lambda *a, **k: None)
    checkpoint_dir = os.path.join(workdir, "checkpoints")
    manager = params_io.manager(checkpoint_dir, tc.keep_checkpoints, create=True)
    trained = manager.latest_step() or 0
    if trained >= tc.num_steps and not params_io.verify(checkpoint_dir, trained):
        say(
            f"{workdir} is already trained to step {trained} (train.num_steps={tc.num_steps}); "
            "nothing to do. Raise --config.train.num_steps to train further."
        )
        manager.close()
        return {}
    try:
        resume.check_config(manager, workdir, config)  # a changed config is refused before towers load
    except ValueError:
        manager.close()
        raise
    towers = towers or load_towers(config)
    dataset = make_training_dataset(config, towers)
    data = iter(dataset)
    first = next(iter(dataset))  # shapes for compiling; the training iterator is untouched
    trainer = Trainer.build(config, first, towers)
    say(
        f"mesh {dict(trainer.mesh.shape)} on {jax.device_count()} devices, {jax.process_count()} process(es); "
        f"step compiled in {trainer.compile_seconds:.1f} s"
    )

    restored, latest = resume.restore_newest_intact(manager, workdir, config, trainer.abstract_state(), data, say)
    if restored is not None:
        trainer.state = restored.state
        say(f"resumed from {workdir}/checkpoints step {latest}")
    elif tc.init_checkpoint:
        params, step = params_io.restore_params(tc.init_checkpoint, trainer.state.params)
        trainer.state = trainer.state.replace(params=jax.device_put(params, trainer.state_shardings.params))
        say(f"initialised params from {tc.init_checkpoint} step {step}")

    writer = writers.MetricWriter(os.path.join(workdir, "tensorboard"))
    evaluate = _periodic_evaluation(config, towers, trainer.state.params, say)
    rng = jax.random.key(config.seed + 1)
    step = int(trainer.state.step)
    last: dict[str, float] = {}
    timer = (time.perf_counter(), step)

    unsealed = []  # the step saved last, sealed once its asynchronous save has finished

    def seal_saved() -> None:
        manager.wait_until_finished()
        if unsealed and is_main:
            params_io.seal(checkpoint_dir, unsealed.pop())
        unsealed.clear()

    def save(at: int, metrics) -> None:
        _check_finite(at, {k: float(v) for k, v in jax.device_get(metrics).items()})
        seal_saved()
        unsealed.append(at)
        manager.save(
            at,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(trainer.state),
                params=ocp.args.StandardSave(trainer.state.params),
                data=grain.checkpoint.CheckpointSave(data),
                config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
            ),
        )

    interrupted = False
    with _Preemption() as preemption:
        try:
            while step < tc.num_steps:
                local = next(data)
                trainer.state, metrics, preview = trainer.step_fn(
                    trainer.state, trainer.frozen, pipeline.to_global(local, trainer.mesh), rng
                )
                step += 1
                # Read once, agreed by all processes: a SIGTERM that reached any host stops every
                # host after this same step (one saves alone would leave the others in a collective).
                preempted = _any_process(preemption.requested)
                done = step == tc.num_steps or preempted
                if step % tc.log_every == 0 or done:
                    last = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    _check_finite(step, last)
                    last.update({f"skipped/{k}": v for k, v in data.skipped.items()})
                    writer.scalars(step, last)
                    now = time.perf_counter()
                    rate = (step - timer[1]) / max(now - timer[0], 1e-9)
                    timer = (now, step)
                    eta = (tc.num_steps - step) / max(rate, 1e-9)
                    say(
                        f"step {step}/{tc.num_steps}  loss {last['total']:.4f}  sem {last['sem']:.3f}  "
                        f"clip {last['clip']:.3f}  dir {last['direction']:.3f}  struct {last['structure']:.4f}  "
                        f"mask {last['mask_area']:.2f}  |g| {last['grad_norm']:.3g}  {rate:.2f} steps/s  "
                        f"ETA {eta / 60:.1f} min",
                        flush=True,
                    )
                if tc.panel_every and (step % tc.panel_every == 0 or done) and is_main:
                    image = _panel(trainer, local, preview)
                    writers.save_png(os.path.join(workdir, "panels", f"step_{step:07d}.png"), image)
                    writer.image(step, "panel", image)
                if step % tc.checkpoint_every == 0 or done:
                    save(step, metrics)
                if evaluate and tc.eval_every and (step % tc.eval_every == 0 or done):
                    writer.scalars(step, evaluate(trainer.state.params))
                if preempted and preemption.interrupted:
                    say(f"Ctrl-C: saved step {step}; run the same command again to resume.")
                    interrupted = True
                    break
                if preempted:
                    say(f"SIGTERM: saved step {step}; exiting so the job can be rescheduled.")
                    break
        finally:
            seal_saved()
            manager.close()
            writer.close()
    if interrupted:
        raise KeyboardInterrupt  # after the save: the command exits 130
    return last
