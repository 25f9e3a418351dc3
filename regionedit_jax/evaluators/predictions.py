"""Another system's outputs in a folder, matched to benchmark rows by id, so baselines are scored
with the same code as ours.

Files are ``<name>.png`` (or .jpg, .jpeg, .webp), possibly in subfolders; a file's name is its path
below the folder without the extension ("123", "327726/327726_iter_3"). Each benchmark says which
names can hold a row (Emu Edit: ``<idx>``; MagicBrush: ``<img_id>_<turn_index>`` or MagicBrush's
own layout, see magicbrush.py). Missing rows fail naming them; files that match no row of the
dataset are reported (a warning and ``extra_files`` in the results).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from regionedit_jax import images as image_ops

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_SHOW = 10


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


class PredictionFolder:
    """Index of the images under ``folder`` by name (relative path without extension, '/'-separated)."""

    def __init__(self, folder: str):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"the predictions folder {folder!r} does not exist.")
        self.folder, self.files = folder, {}
        for parent, _, names in os.walk(folder):
            for name in sorted(names):
                stem, suffix = os.path.splitext(name)
                if suffix.lower() not in SUFFIXES:
                    continue
                key = os.path.relpath(os.path.join(parent, stem), folder).replace(os.sep, "/")
                if key in self.files:
                    raise ValueError(
                        f"two predictions for {key!r} in {folder}: "
                        f"{os.path.basename(self.files[key])} and {name}; keep one."
                    )
                self.files[key] = os.path.join(parent, name)

    def match(
        self, wanted: Mapping[str, Sequence[str]], belongs: Callable[[str], bool], what: str
    ) -> tuple[dict[str, str], list[str]]:
        """Finds each row's file.

        Args:
          wanted: row id -> the file names that can hold it, in order of preference.
          belongs: whether a file name names some row of the dataset (scored here or not, e.g.
            rows past --limit or earlier turns of a session), so it is not an extra file.
          what: the benchmark, for messages.
        Returns:
          (row id -> path, names of extra files that match no row of the dataset).
        """
        found, missing = {}, []
        for row_id, names in wanted.items():
            path = next((self.files[n] for n in names if n in self.files), None)
            if path is None:
                missing.append(row_id)
            else:
                found[row_id] = path
        used = {os.path.relpath(os.path.splitext(p)[0], self.folder).replace(os.sep, "/") for p in found.values()}
        extra = sorted(n for n in self.files if n not in used and not belongs(n))
        if missing:
            hint = (
                (
                    f" The folder has {len(extra)} images whose names match no {what} row: {_listing(extra)}; "
                    "are the files named by another key?"
                )
                if extra
                else ""
            )
            first = wanted[missing[0]][0]
            raise ValueError(
                f"{len(missing)} of {len(wanted)} {what} rows have no image in {self.folder}: "
                f"ids {_listing(missing)} (expected e.g. {first}.png).{hint}"
            )
        if extra:
            warnings.warn(
                f"{len(extra)} images in {self.folder} match no {what} row and are not scored: {_listing(extra)}.",
                stacklevel=3,
            )
        return found, extra

    @staticmethod
    def read(path: str, row_id: str) -> np.ndarray:
        """The image of one row -> [H, W, 3] uint8; an unreadable file names the row."""
        try:
            return image_ops.decode(path)
        except image_ops.ImageReadError as e:
            raise ValueError(f"row {row_id}: {e}") from None
