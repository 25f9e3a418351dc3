"""Where a tower's files come from: a local folder in the Hugging Face layout, or a hub id.

A hub id (``openai/clip-vit-large-patch14``) resolves through the standard Hugging Face
cache (``HF_HOME``; ``HF_HUB_OFFLINE=1`` uses only what is cached). A local folder is used
as it is. Every failure names the folder or file, says what was expected there, and how
to get it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

HOW_TO_GET = (
    "Pass a local folder in the Hugging Face layout (as written by save_pretrained), or a hub id "
    "with network access (files are cached under HF_HOME). For offline tests and demos, write a "
    "tiny random bundle: python -m regionedit_jax.towers.tiny --out DIR"
)
# Only what the towers read: no PyTorch pickles, TF or ONNX exports.
_HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]


class TowerFilesError(FileNotFoundError):
    """A tower's folder, config or weights are missing or hold another model."""


def looks_like_hub_id(path: str) -> bool:
    """``owner/name``, not a relative or absolute path."""
    return path.count("/") == 1 and not path.startswith((".", "/", "~"))


def resolve(name_or_path: str | os.PathLike, what: str) -> str:
    """Returns a local folder for a folder path or a hub id.

    Args:
      name_or_path: a local directory, or a hub id such as ``facebook/dino-vits16``.
      what: the tower's name, used in error messages ("CLIP", "T5", ...).
    """
    path = os.path.expanduser(os.fspath(name_or_path))
    if os.path.isdir(path):
        return path
    if not looks_like_hub_id(path):
        raise TowerFilesError(f"{what}: folder {path!r} does not exist. {HOW_TO_GET}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return snapshot_download(repo_id=path, allow_patterns=_HUB_PATTERNS)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise TowerFilesError(
            f"{what}: {path!r} is neither a local folder nor a hub id in the local cache, and the "
            f"hub could not be reached ({type(e).__name__}). {HOW_TO_GET}"
        ) from None


def require_file(folder: str, candidates: Sequence[str], what: str, expected: str) -> str:
    """Returns the first of ``candidates`` present in ``folder``, or explains what is missing."""
    if not os.path.isdir(folder):
        raise TowerFilesError(f"{what}: folder {folder!r} does not exist; expected {expected}. {HOW_TO_GET}")
    for name in candidates:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    present = sorted(os.listdir(folder))[:12]
    raise TowerFilesError(
        f"{what}: {folder!r} has no {' or '.join(candidates)} ({expected}); it holds {present}. "
        + (
            "PyTorch .bin weights must be converted to safetensors first (save_pretrained with "
            "safe_serialization=True). "
            if any(p.endswith(".bin") for p in present)
            else ""
        )
        + HOW_TO_GET
    )


def read_config(
    folder: str, what: str, *, key: str, allowed: Sequence[str], name: str = "config.json"
) -> dict[str, Any]:
    """Reads a config file and checks that it describes the expected kind of model.

    Args:
      key: the field naming the model kind (``model_type`` or ``_class_name``).
      allowed: accepted values of that field.
    """
    path = require_file(folder, [name], what, f"the model's {name}")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TowerFilesError(f"{what}: {path!r} is not valid JSON ({e}).") from None
    if config.get(key) not in allowed:
        raise TowerFilesError(
            f"{what}: {path!r} describes a {config.get(key)!r} model, expected "
            f"{' or '.join(map(repr, allowed))}. Is this the folder of another model?"
        )
    return config


def settings(parse: Callable[[dict[str, Any], str], Any], config: dict[str, Any], what: str, folder: str) -> Any:
    """``parse(config, what)`` (an ``nn`` settings reader); a field it cannot honour becomes a
    ``TowerFilesError`` naming the folder's config.json."""
    from regionedit_jax.nn.settings import SettingsError

    try:
        return parse(config, what)
    except SettingsError as e:
        raise TowerFilesError(f"{e} (in {os.path.join(folder, 'config.json')!r})") from None


def weights_file(folder: str, what: str, base: str) -> str:
    """The safetensors weights in ``folder``: ``base.safetensors`` or its sharded index."""
    return require_file(
        folder, [f"{base}.safetensors", f"{base}.safetensors.index.json"], what, "the weights in safetensors format"
    )


def image_stats(folder: str, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[tuple, tuple]:
    """The (image_mean, image_std) of ``preprocessor_config.json`` if present, else the defaults."""
    path = os.path.join(folder, "preprocessor_config.json")
    if not os.path.isfile(path):
        return mean, std
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    return tuple(spec.get("image_mean", mean)), tuple(spec.get("image_std", std))
