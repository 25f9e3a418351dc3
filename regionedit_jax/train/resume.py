"""Resuming a workdir: the newest intact checkpoint, trained with the same shapes and optimiser.

Each step of ``workdir/checkpoints`` is checked against its SHA-256 seal
(``checkpoints.verify``) before it is restored. A corrupt step is reported by name, moved to
``workdir/corrupt_checkpoints/<step>`` (kept for inspection, and out of the way of the step
that will be saved again) and the next older step is tried. A step saved with another
``region`` or ``optimizer`` config, or whose params have other shapes, is refused with what
differs: resuming it would load the wrong tree or silently change the run.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from regionedit_jax import checkpoints as params_io

# The config sections a resumed run must share with its checkpoint.
SAME_SECTIONS = ("region", "optimizer")


def config_json(config) -> dict[str, Any]:
    """The config as the checkpoint stores it (JSON types: tuples become lists)."""
    return json.loads(config.to_json_best_effort())


def differences(stored: Any, current: Any, prefix: str = "") -> list[str]:
    """'key: stored -> current' for every leaf that differs between two JSON trees."""
    if isinstance(stored, dict) and isinstance(current, dict):
        lines = []
        for key in sorted(set(stored) | set(current)):
            missing = "(absent)"
            lines += differences(stored.get(key, missing), current.get(key, missing), f"{prefix}{key}.")
        return lines
    return [] if stored == current else [f"{prefix.rstrip('.')}: {stored!r} -> {current!r}"]


def check_same_training(stored_config: dict[str, Any], config, stored_shapes, wanted_shapes, where: str) -> None:
    """Raises ValueError naming what differs between a checkpoint and the run that would resume it."""
    current = config_json(config)
    lines = []
    for section in SAME_SECTIONS:
        lines += differences({section: stored_config.get(section, {})}, {section: current.get(section, {})})
    if stored_shapes != wanted_shapes:
        changed = sorted(set(stored_shapes.items()) ^ set(wanted_shapes.items()))[:4]
        lines.append(f"trained param shapes (first differences, as (path, shape)): {changed}")
        lines += differences({"towers": stored_config.get("towers", {})}, {"towers": current.get("towers", {})})
    if lines:
        raise ValueError(
            f"{where} was trained with another config, so it cannot be resumed with this one: "
            + "; ".join(lines[:8])
            + (f" (+{len(lines) - 8} more)" if len(lines) > 8 else "")
            + ". Resume with the same values, or train in a new workdir starting from these params "
            f"(--config.train.init_checkpoint={os.path.dirname(where)})."
        )


def check_config(manager: ocp.CheckpointManager, workdir: str, config) -> None:
    """The region and optimizer sections against the newest step whose config can be read, before
    anything compiles; ValueError says what differs."""
    directory = os.path.join(workdir, "checkpoints")
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            stored = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config
        except Exception:  # unreadable: restore_newest_intact reports and sets it aside
            continue
        check_same_training(stored, config, {}, {}, params_io.step_folder(directory, step))
        return


def _set_aside(workdir: str, step: int) -> str:
    """Moves step ``step`` of workdir/checkpoints to workdir/corrupt_checkpoints/<step>[.n]."""
    aside = os.path.join(workdir, "corrupt_checkpoints", str(step))
    base, n = aside, 1
    while os.path.exists(aside):
        aside, n = f"{base}.{n}", n + 1
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        shutil.move(params_io.step_folder(os.path.join(workdir, "checkpoints"), step), aside)
    multihost_utils.sync_global_devices(f"set aside corrupt checkpoint {step}")
    return aside


def restore_newest_intact(manager: ocp.CheckpointManager, workdir: str, config, abstract_state, data, say):
    """Restores (state, data) from the newest intact step of ``manager``; returns the restored
    composite and its step, or (None, None) when no step is left."""
    directory = os.path.join(workdir, "checkpoints")
    wanted = params_io.param_shapes(abstract_state.params)
    for step in sorted(manager.all_steps(), reverse=True):
        where = params_io.step_folder(directory, step)
        problems = params_io.verify(directory, step)
        if not problems:
            try:
                stored_config = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config
                stored = params_io.param_shapes(manager.item_metadata(step)["params"].tree)
            except Exception as err:
                if problems == []:  # sealed and intact, yet unreadable: not corruption, a bug
                    raise
                problems = [f"its config or metadata cannot be read ({type(err).__name__}: {err})"]
            else:
                check_same_training(stored_config, config, stored, wanted, where)
                try:
                    restored = manager.restore(
                        step,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardRestore(abstract_state),
                            data=grain.checkpoint.CheckpointRestore(data),
                        ),
                    )
                except Exception as err:
                    if problems == []:  # sealed and intact, yet unreadable: not corruption, a bug
                        raise
                    problems = [f"it cannot be restored ({type(err).__name__}: {err})"]
                else:
                    if problems is None:
                        say(f"note: {where} has no checksum seal (an older save); restored unverified")
                    return restored, step
        aside = _set_aside(workdir, step)
        say(f"checkpoint {where} is corrupt: {'; '.join(problems[:3])}. Moved to {aside}; trying an older step.")
        manager.reload()
    return None, None
