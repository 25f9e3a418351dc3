"""Benchmark tables in their Hugging Face hub schema: a hub id (offline cache) or a local copy.

A local copy is either a ``save_to_disk`` folder or parquet files in the hub layout
(``data/<split>-00000-of-00001.parquet``; any ``<split>-*.parquet`` or ``<split>/*.parquet``
below the folder). Parquet files are read with pyarrow (no cache is written); their
``Image()`` features come from the schema metadata ``datasets`` stores in them. Image columns
stay encoded until ``decode_image`` reads one row, so a bad image names its row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regionedit_jax import images as image_ops
from regionedit_jax.data.sources import parquet_split_files, saved_split


def load(source: str, split: str, *, what: str, columns: Sequence[str], image_columns: Sequence[str]):
    """Loads ``split`` of a dataset and checks its columns.

    Args:
      source: a hub id (read from the local Hugging Face cache when offline) or a local folder.
      split: e.g. "test".
      what: the benchmark's name for messages ("Emu Edit").
      columns: every column the benchmark needs; a missing one fails naming it.
      image_columns: the columns holding ``Image()`` features (returned undecoded).
    Returns:
      a ``datasets.Dataset`` with ``columns`` only, images as ``{"bytes", "path"}`` dicts.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(os.path.expanduser(source))
    data = saved_split(root, split, f"the {what} copy")
    if data is None and root.is_dir():
        tables = [pq.read_table(f, memory_map=True) for f in parquet_split_files(root, split)]
        try:
            data = datasets.Dataset(pa.concat_tables(tables))
        except pa.ArrowInvalid as e:
            raise ValueError(
                f"the {what} parquet files under {source} ({split}) disagree on their columns: {e}"
            ) from None
    elif data is None and (source.count("/") != 1 or source.startswith((".", "/", "~"))):  # a path
        raise FileNotFoundError(f"the {what} dataset folder {source!r} does not exist.")
    elif data is None:
        try:
            data = datasets.load_dataset(source, split=split)
        except (FileNotFoundError, ConnectionError, OSError, ValueError) as e:
            raise FileNotFoundError(
                f"cannot load the {what} dataset {source!r} split {split!r}: {type(e).__name__}: {e}. "
                "Offline, a hub id loads only from the local Hugging Face cache; or pass a local copy "
                "(a save_to_disk folder, or parquet files under data/)."
            ) from None
    missing = [c for c in columns if c not in data.column_names]
    if missing:
        raise ValueError(
            f"the {what} dataset {source!r} ({split}) has no column {missing[0]!r}"
            f"{f' (nor {missing[1:]})' if len(missing) > 1 else ''}; it has {data.column_names} "
            f"and the benchmark needs {list(columns)}."
        )
    data = data.select_columns(list(columns))
    for column in image_columns:
        feature = data.features[column]
        if isinstance(feature, datasets.Image):
            data = data.cast_column(column, datasets.Image(decode=False))
        elif not (isinstance(feature, dict) and "bytes" in feature):
            raise ValueError(f"the {what} column {column!r} must be an Image() feature; got {feature}.")
    return data


def decode_image(value: Any, where: str, root: str | None = None) -> np.ndarray:
    """An undecoded ``Image()`` value (``{"bytes", "path"}``), bytes or PIL image -> [H, W, 3] uint8.

    ``where`` names the row in errors ("row idx=12, column 'image'").
    """
    data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (value, None)
    try:
        if data is None and path:
            data = path if os.path.isabs(path) or root is None else os.path.join(root, path)
        if data is None or (isinstance(data, bytes | bytearray) and not data):
            raise image_ops.ImageReadError("no image data")
        return image_ops.decode(data)
    except image_ops.ImageReadError as e:
        raise ValueError(f"{where}: {e}") from None
