"""Per-row outputs of an evaluation on disk, so a rerun skips the rows already finished.

Layout of ``folder``: ``settings.json`` (what produced the rows), and per row ``<id>.png`` (the
edited image), ``<id>.mask.png`` (the region, white = repainted), ``<id>.<name>.png`` (extra
images, e.g. earlier turns) and ``<id>.json`` (metrics and texts). The JSON is written last and
atomically: a row is done exactly when its JSON exists. A folder holding rows made with other
settings (another checkpoint, seed, dataset, ...) is refused, so stale rows never mix in.
Without a folder the records live in memory only (a training loop's periodic evaluation).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
from PIL import Image

from regionedit_jax import images as image_ops
from regionedit_jax import outputs

_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_id(row_id: str) -> str:
    """Row ids become file names: letters, digits, '_', '-', '.' only."""
    if not isinstance(row_id, str) or not _ID.fullmatch(row_id):
        raise ValueError(f"row id {row_id!r} cannot name a file; ids may hold letters, digits, '_', '-', '.'.")
    return row_id


def _atomic_write(path: str, write) -> None:
    outputs.write_file(path, write)


class RowCache:
    """Finished rows of one evaluation (a folder, or memory when ``folder`` is None)."""

    def __init__(self, folder: str | None, settings: dict[str, Any]):
        self.folder, self._memory = folder, {}
        if folder is None:
            return
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "settings.json")
        settings = json.loads(json.dumps(settings))  # the JSON form, to compare like with like
        has_rows = any(n.endswith(".json") and n != "settings.json" for n in os.listdir(folder))
        if has_rows and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                before = json.load(f)
            before, now = _flatten(before), _flatten(settings)
            changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            if changed:
                detail = "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
                raise ValueError(
                    f"{folder} holds rows made with other settings ({detail}); use another "
                    "--workdir, or delete that folder to start again."
                )
        else:
            _atomic_write(path, lambda f: _dump(f, settings))

    def _path(self, row_id: str, suffix: str) -> str:
        return os.path.join(self.folder, check_id(row_id) + suffix)

    def done(self, row_id: str) -> bool:
        if self.folder is None:
            return row_id in self._memory
        return os.path.isfile(self._path(row_id, ".json"))

    def record(self, row_id: str) -> dict[str, Any]:
        """The saved record (metrics and texts) of a finished row."""
        if self.folder is None:
            return self._memory[row_id]
        with open(self._path(row_id, ".json"), encoding="utf-8") as f:
            return json.load(f)

    def save(self, row_id: str, record: dict[str, Any], images: dict[str, np.ndarray] | None = None) -> None:
        """Saves a finished row: ``images`` maps "" (edited), "mask" or a name to [H, W(, 3)] uint8/bool."""
        record = json.loads(json.dumps(record, default=_plain))
        if self.folder is None:
            self._memory[row_id] = record
            return
        for name, image in (images or {}).items():
            array = np.asarray(image)
            if array.dtype == np.bool_:
                array = array.astype(np.uint8) * 255
            path = self._path(row_id, f".{name}.png" if name else ".png")
            _atomic_write(path, lambda f, a=array: Image.fromarray(a).save(f, format="PNG"))
        _atomic_write(self._path(row_id, ".json"), lambda f: _dump(f, record))

    def image(self, row_id: str, name: str = "") -> np.ndarray | None:
        """A saved image ([H, W, 3] uint8; masks [H, W] bool), or None when it was not saved."""
        if self.folder is None:
            return None
        path = self._path(row_id, f".{name}.png" if name else ".png")
        if not os.path.isfile(path):
            return None
        array = image_ops.decode(path)
        return array[..., 0] > 127 if name == "mask" else array


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, so a changed setting is named precisely."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a row record.")


def _dump(f, value: Any) -> None:
    f.write(json.dumps(value, indent=1, default=_plain).encode("utf-8"))
