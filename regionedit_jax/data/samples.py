"""The offline sample set: real photos that ship inside installed packages, with edits.

A JSONL manifest (``samples.jsonl`` beside this module; format in ``SAMPLES.md``) lists one photo a line. Each
row names its photo by a locator:

* ``skimage:NAME``: the loader ``skimage.data.NAME`` (``skimage:chelsea``); a loader
  that returns several images (``stereo_motorcycle``) gives its first;
* ``sklearn:FILE``: ``sklearn.datasets.load_sample_image(FILE)`` (``sklearn:china.jpg``);
* ``matplotlib:FILE``: ``matplotlib.cbook.get_sample_data(FILE)``
  (``matplotlib:grace_hopper.jpg``);
* anything else is an image file path, relative to the manifest's folder.

Every image loads as an HWC uint8 RGB array: grayscale is repeated into three channels,
palettes are expanded, and alpha is composited onto white.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from regionedit_jax import images as image_ops

# Overrides the default manifest location (samples.jsonl beside this module, shipped as package data).
MANIFEST_ENV = "REGIONEDIT_SAMPLES"
DEFAULT_MANIFEST = Path(__file__).resolve().parent / "samples.jsonl"

# Locator scheme -> the pip package that provides it.
SCHEMES = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}
# Two or more characters before the colon, so a Windows drive letter stays a path.
_SCHEME_RE = re.compile(r"^([A-Za-z][\w.+-]+):(.*)$")
_EXPECTED = "expected one of skimage:, sklearn:, matplotlib:, or a file path"
# Names in skimage.data.__all__ that are not image loaders.
_SKIMAGE_NOT_IMAGES = frozenset({"data_dir", "download_all", "file_hash", "lbp_frontal_face_cascade_filename"})
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff"})
_ROW_KEYS = ("id", "source", "caption", "instructions", "license")
_INSTRUCTION_KEYS = ("instruction", "target_caption")


@dataclass(frozen=True)
class Instruction:
    """One edit of a photo and a caption of the photo after it."""

    instruction: str
    target_caption: str


@dataclass(frozen=True)
class Sample:
    """One manifest row; ``root`` is the folder that relative file paths resolve from."""

    id: str
    source: str
    caption: str
    instructions: tuple[Instruction, ...]
    license: str
    root: Path | None = field(default=None, repr=False, compare=False)

    def image(self) -> np.ndarray:
        """This sample's photo as an HWC uint8 RGB array."""
        return load_image(self.source, root=self.root)


def load_samples(path: str | os.PathLike[str] | None = None) -> list[Sample]:
    """Read a manifest: ``path``, else ``$REGIONEDIT_SAMPLES``, else the bundled one."""
    manifest = Path(path or os.environ.get(MANIFEST_ENV) or DEFAULT_MANIFEST)
    if not manifest.is_file():
        raise FileNotFoundError(
            f"sample manifest not found: {manifest}; pass load_samples(path=...) or set "
            f"{MANIFEST_ENV} (the manifest lives in the repository's data/ folder)"
        )
    samples: list[Sample] = []
    seen: set[str] = set()
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON: {err}") from err
        sample = _parse_row(row, where, manifest.parent)
        if sample.id in seen:
            raise ValueError(f"{where}: duplicate id {sample.id!r}")
        seen.add(sample.id)
        samples.append(sample)
    return samples


def _parse_row(row: Any, where: str, root: Path) -> Sample:
    """Check one manifest row against the schema and build its Sample."""
    _check_keys(row, _ROW_KEYS, where)
    if not isinstance(row["instructions"], list):
        raise ValueError(f"{where}: 'instructions' must be a list of objects")
    instructions = []
    for item in row["instructions"]:
        _check_keys(item, _INSTRUCTION_KEYS, f"{where}: instruction")
        instructions.append(Instruction(**item))
    return Sample(
        id=row["id"],
        source=row["source"],
        caption=row["caption"],
        instructions=tuple(instructions),
        license=row["license"],
        root=root,
    )


def _check_keys(obj: Any, keys: tuple[str, ...], where: str) -> None:
    """Require a JSON object with exactly ``keys``, each a string or list as the schema says."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object with keys {list(keys)}")
    missing = [k for k in keys if k not in obj]
    extra = sorted(set(obj) - set(keys))
    if missing or extra:
        raise ValueError(f"{where}: missing keys {missing}, unknown keys {extra}")
    for key in keys:
        if key != "instructions" and not isinstance(obj[key], str):
            raise ValueError(f"{where}: {key!r} must be a string")


def load_image(source: str, root: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Resolve a locator to an HWC uint8 RGB array; file paths are relative to ``root``."""
    match = _SCHEME_RE.match(source)
    if match is None:
        return _load_file(source, root)
    scheme, name = match.groups()
    if scheme not in SCHEMES:
        raise ValueError(f"unknown locator scheme {scheme!r} in {source!r}; {_EXPECTED}")
    if not name:
        raise ValueError(f"locator {source!r} names no image; e.g. {scheme}:NAME")
    loader = {"skimage": _load_skimage, "sklearn": _load_sklearn, "matplotlib": _load_matplotlib}
    return image_ops.decode(loader[scheme](name))


def _load_file(source: str, root: str | os.PathLike[str] | None) -> np.ndarray:
    """Read an image file; a relative path resolves from ``root`` (default: the cwd)."""
    path = Path(source)
    if root is not None and not path.is_absolute():
        path = Path(root) / path
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path} (locator {source!r}); {_EXPECTED}")
    return image_ops.decode(path)


def _import(module: str, scheme: str) -> ModuleType:
    """Import the package behind a scheme, saying how to install it when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = SCHEMES[scheme]
        raise ModuleNotFoundError(f"{scheme}: images need the {package} package: pip install {package}") from err


def _load_skimage(name: str) -> np.ndarray:
    """Call ``skimage.data.<name>``; loaders that need a download fail with a clear error."""
    data = _import("skimage.data", "skimage")
    names = sorted(set(data.__all__) - _SKIMAGE_NOT_IMAGES)
    if name not in names:
        raise ValueError(f"unknown skimage image {name!r}; skimage.data has: {', '.join(names)}")
    try:
        image = getattr(data, name)()
    except (ImportError, OSError) as err:
        raise FileNotFoundError(
            f"skimage:{name} is not bundled with scikit-image: it is downloaded on first use "
            f"(needs pooch and network access); pick a bundled image such as skimage:chelsea"
        ) from err
    return image[0] if isinstance(image, tuple) else image


def _load_sklearn(name: str) -> np.ndarray:
    """Call ``sklearn.datasets.load_sample_image(name)``."""
    datasets = _import("sklearn.datasets", "sklearn")
    try:
        return datasets.load_sample_image(name)
    except ValueError as err:
        raise ValueError(f"unknown sklearn sample image {name!r}: {err}") from err


def _load_matplotlib(name: str) -> np.ndarray:
    """Read ``matplotlib.cbook.get_sample_data(name)`` as an image."""
    cbook = _import("matplotlib.cbook", "matplotlib")
    path = Path(cbook.get_sample_data(name, asfileobj=False))
    if path.suffix.lower() not in _IMAGE_SUFFIXES or not path.is_file():
        folder = Path(importlib.import_module("matplotlib").get_data_path()) / "sample_data"
        images = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        raise ValueError(f"unknown matplotlib sample image {name!r}; matplotlib ships: {', '.join(images)}")
    return image_ops.decode(path)
