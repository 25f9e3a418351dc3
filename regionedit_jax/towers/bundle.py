"""A config's frozen towers, loaded by name (``config.towers``; see configs/common.py)."""

from __future__ import annotations

import importlib
import os
from typing import Any

import jax.numpy as jnp

from regionedit_jax.towers import files

NAMES = ("clip", "t5", "sd_inpaint", "dino")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def dtype_of(name: str) -> Any:
    """ "float32" | "bfloat16" -> the jnp dtype, with a clear error for anything else."""
    if name not in _DTYPES:
        raise ValueError(f"tower dtype must be one of {sorted(_DTYPES)}; got {name!r}.")
    return _DTYPES[name]


def attention_of(name: str) -> str | None:
    """ "auto" | "xla" | "cudnn" -> the ``nn.attention`` implementation (None for "auto")."""
    if name not in ("auto", "xla", "cudnn"):
        raise ValueError(f"tower attention must be 'auto', 'xla' or 'cudnn'; got {name!r}.")
    return None if name == "auto" else name


def check_paths(towers_config, names: tuple[str, ...] = NAMES) -> None:
    """A tower path outside the bundle that is neither a folder nor a hub id is refused by name
    (before a bundle is written or anything loads)."""
    for name in names:
        path = os.path.expanduser(str(towers_config[name]["path"]))
        if "{bundle}" not in path and not os.path.isdir(path) and not files.looks_like_hub_id(path):
            raise files.TowerFilesError(
                f"config.towers.{name}.path: folder {path!r} does not exist. {files.HOW_TO_GET}"
            )


def load(towers_config, names: tuple[str, ...] = NAMES, seed: int = 0) -> dict[str, Any]:
    """Loads the named towers; a tiny ``bundle`` is written first when it is missing.

    Args:
      towers_config: ``config.towers``: ``bundle`` and one entry per tower with ``path`` (a hub
        id or folder; ``{bundle}`` in it stands for the bundle folder, e.g. "{bundle}/t5"),
        ``dtype``, ``attention`` and extra load arguments (``max_length`` for T5).
      names: which towers to load.
      seed: seed of a tiny bundle that has to be written.
    Returns:
      name -> loaded tower object.
    """
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown towers {unknown}; expected some of {list(NAMES)}.")
    bundle = towers_config.get("bundle", "")
    check_paths(towers_config, names)
    if bundle:
        from regionedit_jax.towers import tiny

        tiny.write_bundle(bundle, seed=seed)
    out = {}
    for name in names:
        spec = dict(towers_config[name])
        path = str(spec.pop("path"))
        if "{bundle}" in path:
            if not bundle:
                raise ValueError(
                    f"config.towers.{name}.path is {path!r} but config.towers.bundle is empty; "
                    "set the bundle folder or give the tower a hub id or folder."
                )
            path = path.replace("{bundle}", bundle)
        spec["dtype"] = dtype_of(spec["dtype"])
        spec["attention"] = attention_of(spec.get("attention", "auto"))
        out[name] = importlib.import_module(f"regionedit_jax.towers.{name}").load(path, **spec)
    return out
