"""Trainable parameters on disk: an orbax CheckpointManager folder with a ``params`` item.

Layout: ``DIR/<step>/params/...`` (orbax's standard format), the trainable tree
``{"region": ..., "projector": ...}``. Training writes further items (optimizer state, data
iterator, config) beside ``params`` in the same steps; inference reads only ``params``.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

PARAMS = "params"


def manager(directory: str, keep: int | None = None, create: bool = False) -> ocp.CheckpointManager:
    """The one CheckpointManager factory, for the trainer and the params reader alike.

    It knows every item a training checkpoint holds: ``state`` and ``params`` (standard
    pytrees), ``config`` (JSON) and ``data`` (each process's grain iterator position), so a
    reader that restores only ``params`` does not trip over the others. ``keep``: the last
    this many steps are kept (None: all); ``create``: make the folder.
    """
    import grain

    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for item in (PARAMS, "state"):
        for args in (ocp.args.StandardSave, ocp.args.StandardRestore):
            registry.add(item, args, ocp.StandardCheckpointHandler)
    for args in (ocp.args.JsonSave, ocp.args.JsonRestore):
        registry.add("config", args, ocp.JsonCheckpointHandler)
    for args in (grain.checkpoint.CheckpointSave, grain.checkpoint.CheckpointRestore):
        registry.add("data", args, grain.checkpoint.CheckpointHandler)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options, handler_registry=registry)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(k): tuple(v.shape) for k, v in flat}


def save_params(directory: str, step: int, params: Any) -> None:
    """Writes ``params`` as step ``step`` of the checkpoint folder ``directory``."""
    with manager(directory, create=True) as checkpoints:
        checkpoints.save(step, args=ocp.args.Composite(**{PARAMS: ocp.args.StandardSave(params)}))
        checkpoints.wait_until_finished()


def restore_params(directory: str, target: Any, step: int | None = None) -> tuple[Any, int]:
    """Reads the trainable params of ``step`` (default: the latest) shaped like ``target``.

    Returns (params, step). Errors say what is missing and where.
    """
    path = os.path.abspath(directory)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"checkpoint folder {directory!r} does not exist; pass a training "
            "workdir's checkpoints/ folder (or omit it to start from a fresh init)."
        )
    with manager(path) as checkpoints:
        steps = checkpoints.all_steps()
        if not steps:
            raise FileNotFoundError(f"checkpoint folder {directory!r} holds no finished steps.")
        step = max(steps) if step is None else step
        if step not in steps:
            raise FileNotFoundError(f"checkpoint folder {directory!r} has steps {sorted(steps)}, not {step}.")
        stored, wanted = _shapes(checkpoints.item_metadata(step)[PARAMS].tree), _shapes(target)
        if stored != wanted:
            diff = sorted(set(stored.items()) ^ set(wanted.items()))[:6]
            raise ValueError(
                f"checkpoint {directory!r} step {step} does not match this config's region "
                f"predictor (first differences, as (path, shape): {diff}). Was it trained "
                "with another config.region or other towers?"
            )
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        restored = checkpoints.restore(step, args=ocp.args.Composite(**{PARAMS: ocp.args.StandardRestore(abstract)}))
    return restored[PARAMS], step
