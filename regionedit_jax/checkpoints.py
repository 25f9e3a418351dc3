"""Trainable parameters on disk: an orbax CheckpointManager folder with a ``params`` item.

Layout: ``DIR/<step>/params/...`` (orbax's standard format), the trainable tree
``{"region": ..., "projector": ...}``. Training writes further items (optimizer state, data
iterator, config) beside ``params`` in the same steps; inference reads only ``params``.

Every finished step is sealed with ``DIR/<step>/sha256.json``, the SHA-256 of each of its
files; ``verify`` checks a step against it before anything restores it. A step without the
file (saved by an older version, or the run died between saving and sealing) is unverified,
not corrupt.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from regionedit_jax import outputs

PARAMS = "params"
MANIFEST = "sha256.json"


def step_folder(directory: str, step: int) -> str:
    return os.path.join(os.path.abspath(directory), str(step))


def _digests(folder: str) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder`` except the manifest."""
    digests = {}
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(parent, name)
            relative = os.path.relpath(path, folder)
            if relative == MANIFEST or relative.startswith(f".{MANIFEST}."):  # the seal, or its temporary file
                continue
            with open(path, "rb") as f:
                digests[relative] = hashlib.file_digest(f, "sha256").hexdigest()
    return digests


def seal(directory: str, step: int) -> None:
    """Writes the SHA-256 of every file of finished step ``step`` to ``DIR/<step>/sha256.json``
    (atomically; call on one process after the save has finished)."""
    folder = step_folder(directory, step)
    outputs.write_json(os.path.join(folder, MANIFEST), {"files": _digests(folder)}, indent=0, sort_keys=True)


def verify(directory: str, step: int) -> list[str] | None:
    """The problems of step ``step`` against its seal: [] intact, None unsealed (cannot tell),
    else one line per changed, missing or unexpected file."""
    folder = step_folder(directory, step)
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            expected = json.load(f)["files"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        return [f"{MANIFEST} is unreadable ({type(err).__name__})"]
    actual = _digests(folder)
    problems = [f"{name} is missing" for name in sorted(set(expected) - set(actual))]
    problems += [
        f"{name} changed (SHA-256 differs)"
        for name in sorted(set(expected) & set(actual))
        if expected[name] != actual[name]
    ]
    problems += [f"{name} was not saved with the step" for name in sorted(set(actual) - set(expected))]
    return problems


def split_step(path: str) -> tuple[str, int | None]:
    """``DIR/<step>`` -> (DIR, step) when ``path`` is a step folder of a checkpoint folder, else (path, None)."""
    path = os.path.abspath(path)
    name = os.path.basename(path.rstrip(os.sep))
    if name.isdigit() and os.path.isdir(path) and not os.path.isdir(os.path.join(path, str(int(name)))):
        parent = os.path.dirname(path.rstrip(os.sep))
        if os.path.isdir(os.path.join(path, PARAMS)) or os.path.isdir(os.path.join(path, "state")):
            return parent, int(name)
    return path, None


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


def param_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(k): tuple(v.shape) for k, v in flat}


def save_params(directory: str, step: int, params: Any) -> None:
    """Writes ``params`` as step ``step`` of the checkpoint folder ``directory``, sealed."""
    with manager(directory, create=True) as checkpoints:
        checkpoints.save(step, args=ocp.args.Composite(**{PARAMS: ocp.args.StandardSave(params)}))
        checkpoints.wait_until_finished()
    if jax.process_index() == 0:
        seal(directory, step)


def choose_step(directory: str, step: int | None = None) -> int:
    """The step of checkpoint folder ``directory`` (or of a ``DIR/<step>`` folder) that
    ``restore_params`` reads: ``step``, else the latest; refused when its files are not the ones
    sealed with it. Cheap (no arrays are read): for checking before towers load."""
    directory, named = split_step(directory)
    step = named if step is None else step
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"checkpoint {directory!r} is a file; pass a training workdir's checkpoints/ folder.")
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"checkpoint folder {directory!r} does not exist; pass a training "
            "workdir's checkpoints/ folder (or omit it to start from a fresh init)."
        )
    with manager(directory) as checkpoints:
        steps = sorted(checkpoints.all_steps())
    if not steps:
        raise FileNotFoundError(f"checkpoint folder {directory!r} holds no finished steps.")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise FileNotFoundError(f"checkpoint folder {directory!r} has steps {steps}, not {step}.")
    problems = verify(directory, step)
    if problems:
        intact = [s for s in steps if s != step and verify(directory, s) == []]
        hint = (
            f"the newest intact step is {intact[-1]}: pass {step_folder(directory, intact[-1])}"
            if intact
            else "no other step is verified intact"
        )
        raise ValueError(
            f"checkpoint {step_folder(directory, step)} is corrupt: {'; '.join(problems[:3])}"
            f"{f' (+{len(problems) - 3} more)' if len(problems) > 3 else ''}; {hint}."
        )
    return step


def restore_params(directory: str, target: Any, step: int | None = None) -> tuple[Any, int]:
    """Reads the trainable params of ``step`` (default: the latest, or the step of a
    ``DIR/<step>`` folder) shaped like ``target``, after ``choose_step`` verified its files.

    Returns (params, step). Errors say what is missing, corrupt or different, and where.
    """
    step = choose_step(directory, step)
    directory, _ = split_step(directory)
    with manager(directory) as checkpoints:
        stored, wanted = param_shapes(checkpoints.item_metadata(step)[PARAMS].tree), param_shapes(target)
        if stored != wanted:
            diff = sorted(set(stored.items()) ^ set(wanted.items()))[:6]
            raise ValueError(
                f"checkpoint {directory!r} step {step} does not match this config's region "
                f"predictor (first differences, as (path, shape): {diff}). Was it trained "
                "with another config.region or other towers?"
            )
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
        try:
            restored = checkpoints.restore(
                step, args=ocp.args.Composite(**{PARAMS: ocp.args.StandardRestore(abstract)})
            )
        except Exception as err:  # orbax/tensorstore errors of damaged files have many types
            raise ValueError(
                f"checkpoint {step_folder(directory, step)} cannot be read ({type(err).__name__}: "
                f"{' '.join(str(err).split())[:200]}); its files are damaged"
                f"{'' if verify(directory, step) is not None else ' (it has no checksum seal to say which)'}."
            ) from None
    return restored[PARAMS], step
