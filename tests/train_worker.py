"""Helpers for the training tests, and a script that runs one training process.

As a script (one process of a local multi-process run, or a whole single-process run)::

  python tests/train_worker.py --bundle B --data D --workdir W --out P.npz --steps 3 \
      [--process_id i --num_processes 2 --port PORT]

It trains ``configs/tiny.py`` on the (data=4, fsdp=2) mesh with ``train_and_evaluate``,
writes the final trainable params (every process writes the full, gathered tree) to
``--out`` and prints one ``RESULT {json}`` line: the last metrics, the global batch rows this
process's devices hold, and a digest of every row of every local batch it fed to the step.
The device count comes from the caller's ``XLA_FLAGS``.

Imported (tests/ is on ``sys.path``), it offers the pieces the tests share: the config
variant, row digests, a hook that captures the ``Trainer`` the loop builds, a dataset that
emulates several hosts' slices in one process, and a scoped persistent compilation cache.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_config(bundle: str, data: str, **train: Any):
    """configs/tiny.py on the (data=4, fsdp=2) mesh, no panels, log every step; ``train`` overrides."""
    import ml_collections

    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from regionedit_jax.configs import tiny

    config = ml_collections.ConfigDict(tiny.get_config(f"bundle={bundle},data={data}").to_dict())
    config.mesh.update(data=4, fsdp=2)
    config.train.update({"panel_every": 0, "log_every": 1, "checkpoint_every": 3, **train})
    config.lock()
    return config


def write_records(out: str) -> str:
    """The bundled sample photos (12 pairs) annotated into ArrayRecord shards in ``out``."""
    from regionedit_jax.data import annotate

    manifest = annotate.annotate(annotate.Settings(source="samples", out=out, max_side=64), workers=2, progress=False)
    assert manifest["totals"]["records"] >= 8, manifest["totals"]
    return out


def row_digests(batch: dict[str, Any]) -> list[str]:
    """One short digest per row of a host batch (image and instruction tokens)."""
    import numpy as np

    image, t5 = np.asarray(batch["image"]), np.asarray(batch["t5_ids"])
    return [hashlib.sha1(image[i].tobytes() + t5[i].tobytes()).hexdigest()[:12] for i in range(len(image))]


class Capture:
    """Patches ``Trainer.build`` (and ``pipeline.to_global``) to keep what the loop does.

    ``trainers``: every Trainer built; ``fed``: row digests of each host batch the loop put on
    devices (the compile sample included, as the first entry of each run); ``before_step``: an
    optional ``fn(step, state) -> state`` called before each compiled step (``step`` is the
    state's step counter), e.g. to poison params or to send a signal.
    """

    def __init__(self, monkeypatch=None):
        from regionedit_jax.data import pipeline
        from regionedit_jax.train import loop

        self.trainers, self.fed, self.before_step = [], [], None
        build, to_global = loop.Trainer.build.__func__, pipeline.to_global

        def capture_build(cls, *args, **kwargs):
            trainer = build(cls, *args, **kwargs)
            step_fn = trainer.step_fn

            def wrapped(state, frozen, batch, rng):
                if self.before_step is not None:
                    state = self.before_step(int(state.step), state)
                return step_fn(state, frozen, batch, rng)

            trainer.step_fn = wrapped
            self.trainers.append(trainer)
            return trainer

        def capture_to_global(batch, mesh, *args, **kwargs):
            self.fed.append(row_digests(batch))
            return to_global(batch, mesh, *args, **kwargs)

        if monkeypatch is not None:
            monkeypatch.setattr(loop.Trainer, "build", classmethod(capture_build))
            monkeypatch.setattr(pipeline, "to_global", capture_to_global)
        else:
            loop.Trainer.build = classmethod(capture_build)
            pipeline.to_global = capture_to_global

    @property
    def trainer(self):
        return self.trainers[-1]


def flat_params(params: Any) -> dict[str, Any]:
    """A params tree -> {"['region']['patch_in']['kernel']": np.ndarray} (host copies)."""
    import jax
    import numpy as np

    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}


def emulated_hosts(make_dataset, hosts: int):
    """A ``make_dataset`` replacement for one process that yields what ``hosts`` processes load.

    Each call builds ``hosts`` datasets with ``process_index=i, process_count=hosts`` and the
    global batch size; a batch is their per-host batches concatenated in host order (host i's
    rows at ``[i * b, (i + 1) * b)``, where process i's devices put them in a multi-process run).
    Iterator state and skip counts are the per-host ones, so the loop checkpoints it as usual.
    """
    import grain
    import numpy as np

    class HostsIterator(grain.DatasetIterator):
        def __init__(self, parents):
            super().__init__(parents)
            self.hosts = list(parents)

        def __next__(self):
            batches = [next(h) for h in self.hosts]
            return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

        @property
        def skipped(self):
            counts = [h.skipped for h in self.hosts]
            return {k: sum(c[k] for c in counts) for k in counts[0]}

        def get_state(self):
            return {"hosts": [h.get_state() for h in self.hosts]}

        def set_state(self, state):
            for h, s in zip(self.hosts, state["hosts"], strict=True):
                h.set_state(s)

    class HostsDataset(grain.IterDataset):
        def __init__(self, datasets):
            super().__init__(list(datasets))
            self.datasets = list(datasets)

        def __iter__(self):
            return HostsIterator([iter(d) for d in self.datasets])

    def make(*args, **kwargs):
        kwargs.update(process_count=hosts)
        return HostsDataset([make_dataset(*args, **{**kwargs, "process_index": i}) for i in range(hosts)])

    return make


@contextlib.contextmanager
def compilation_cache(directory: str):
    """JAX's persistent compilation cache in ``directory`` while inside, off again after.

    Repeated builds of the same train step (resume tests, subprocesses) then load the
    executable instead of compiling it again (~35 s each on 2 CPU cores). JAX decides once per
    process whether to use the cache; ``reset_cache`` (a private helper JAX's own tests use)
    makes it look again. Without that helper this is a no-op: slower, same results.
    """
    import jax

    try:
        from jax._src import compilation_cache as cc
    except ImportError:  # pragma: no cover - private module moved: run uncached
        yield
        return
    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    saved = {n: getattr(jax.config, n) for n in names}
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    cc.reset_cache()
    try:
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)
        cc.reset_cache()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True, help="npz of the final params")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--process_id", type=int, default=0)
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    import ml_collections

    config = ml_collections.ConfigDict(
        train_config(args.bundle, args.data, num_steps=args.steps, checkpoint_every=args.steps).to_dict()
    )
    if args.num_processes > 1:
        config.distributed.update(
            enabled=True,
            coordinator_address=f"127.0.0.1:{args.port}",
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    config.lock()

    from regionedit_jax.train import loop

    loop.initialize_distributed(config)
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    capture = Capture()
    metrics = loop.train_and_evaluate(config, args.workdir)
    trainer = capture.trainer
    params = multihost_utils.process_allgather(trainer.state.params, tiled=True)
    np.savez(args.out, **flat_params(params))
    probe = jax.make_array_from_process_local_data(
        jax.sharding.NamedSharding(trainer.mesh, jax.sharding.PartitionSpec(("data", "fsdp"))),
        np.zeros((config.global_batch_size // jax.process_count(),), np.float32),
    )
    rows = sorted({i for s in probe.addressable_shards for i in range(*s.index[0].indices(probe.shape[0]))})
    print(
        "RESULT "
        + json.dumps(
            {
                "process_index": jax.process_index(),
                "process_count": jax.process_count(),
                "devices": jax.device_count(),
                "local_devices": jax.local_device_count(),
                "rows": rows,
                "fed": capture.fed,
                "metrics": metrics,
            }
        ),
        flush=True,
    )
    if args.num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
