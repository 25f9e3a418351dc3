"""Result files appear whole, and never through a link.

Each file is written to a fresh hidden file in its destination folder (``tempfile.mkstemp``,
which never opens an existing name) and renamed over its name. A reader never sees half a
file, an interrupted write leaves the previous file, and a symlink standing at the name is
replaced, not followed: nothing outside the output folder changes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np


def write_file(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Calls ``write(f)`` on a temporary file beside ``path``, then renames it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    write_file(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str, value: Any, **dump_options) -> None:
    """``value`` as JSON (``json.dumps`` options, e.g. indent), newline-terminated."""
    write_text(path, json.dumps(value, **dump_options) + "\n")


def save_image(path: str, image, format: str = "PNG") -> None:
    """A PIL image or a uint8 array [H, W] / [H, W, 3] saved as ``format``."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    write_file(path, lambda f: picture.save(f, format=format))


def check_folder(path: str, what: str) -> None:
    """Refuses an output folder that cannot be one (an existing file, or a parent that is a file
    or not writable), before any model loads; ``what`` names it in the message, e.g. "--workdir"."""
    path = os.path.abspath(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"{what} {path!r} exists and is not a folder; name another.")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{what} {path!r}: {existing!r} is a file, so the folder cannot be made.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path!r}: {existing!r} is not writable.")


def make_readable(folder: str) -> None:
    """A folder made by ``tempfile.mkdtemp`` (mode 0700) gets the usual mode (0777 less the umask)."""
    os.chmod(folder, 0o777 & ~_UMASK)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, and setting it while other threads
# create files (annotate's image workers) would give those files the wrong mode.
_UMASK = _read_umask()
