"""The training record: one annotated text-image pair, as stored in ArrayRecord shards.

A record is a msgpack map (language-neutral, no TensorFlow needed to read it)::

  schema          int    SCHEMA_VERSION
  id              str    unique within a dataset (source-derived, stable across reruns)
  image           bytes  JPEG (or PNG for images with transparency flattened), longer side
                         at most ``max_side`` pixels, RGB
  caption         str    the source description c_src (the pair's original caption)
  instruction     str    the editing instruction y
  target_caption  str    the target description c_tgt
  source          str    where the pair came from (e.g. "webdataset:shard-0001.tar/000017")
  edit_kind       str    the instruction writer's kind ("replace", "add", "style", ...)
  features        map    optional precomputed frozen-encoder outputs: name -> {dtype, shape, data}

Shards are ``*.array_record`` files written with ``group_size:1`` (uncompressed)
(true random access for grain), each written to a temporary name and renamed when complete,
so a half-written shard never looks finished.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import os
from collections.abc import Mapping

import msgpack
import numpy as np
from PIL import Image

SCHEMA_VERSION = 1
_FIELDS = ("id", "image", "caption", "instruction", "target_caption", "source", "edit_kind")


class RecordError(ValueError):
    """A record's bytes do not decode to the documented schema."""


@dataclasses.dataclass(frozen=True)
class Record:
    id: str
    image: bytes  # encoded RGB image (JPEG or PNG)
    caption: str
    instruction: str
    target_caption: str
    source: str = ""
    edit_kind: str = ""
    features: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


def encode(record: Record) -> bytes:
    """Record -> msgpack bytes."""
    out = {name: getattr(record, name) for name in _FIELDS}
    out["schema"] = SCHEMA_VERSION
    if record.features:
        out["features"] = {
            k: {"dtype": str(v.dtype), "shape": list(v.shape), "data": np.ascontiguousarray(v).tobytes()}
            for k, v in record.features.items()
        }
    return msgpack.packb(out, use_bin_type=True)


def decode(data: bytes) -> Record:
    """msgpack bytes -> Record, with a clear error for anything else."""
    try:
        raw = msgpack.unpackb(data, raw=False)
    except (msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError, ValueError) as e:
        raise RecordError(f"not a training record ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA_VERSION:
        raise RecordError(
            f"record schema {raw.get('schema') if isinstance(raw, dict) else '?'} is not "
            f"{SCHEMA_VERSION}; rewrite the shards with launch/prepare_data.py"
        )
    missing = [f for f in _FIELDS if f not in raw]
    if missing:
        raise RecordError(f"record {raw.get('id', '?')!r} lacks fields {missing}")
    features = {
        k: np.frombuffer(v["data"], dtype=v["dtype"]).reshape(v["shape"]) for k, v in raw.get("features", {}).items()
    }
    return Record(**{f: raw[f] for f in _FIELDS}, features=features)


def encode_image(image, max_side: int = 512, quality: int = 95) -> bytes:
    """An image (anything ``images.decode`` takes) -> JPEG bytes of its RGB pixels, longer side <= max_side."""
    from regionedit_jax import images as image_ops

    image = Image.fromarray(image_ops.decode(image))
    scale = max_side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def shard_name(out_dir: str, prefix: str, index: int, count: int) -> str:
    return os.path.join(out_dir, f"{prefix}-{index:05d}-of-{count:05d}.array_record")


def shard_paths(data_dir: str) -> list[str]:
    """The finished shards of a dataset folder, sorted; a clear error when there are none."""
    paths = sorted(glob.glob(os.path.join(data_dir, "*.array_record")))
    if not paths:
        raise FileNotFoundError(
            f"no *.array_record shards in {data_dir!r}; write them with "
            "python launch/prepare_data.py --source ... --out DIR"
        )
    return paths


def check_shards(data_dir: str) -> list[str]:
    """``shard_paths``, each opened (its index read, not its records): a damaged or truncated shard
    is named before any model loads."""
    import grain

    paths = shard_paths(data_dir)
    for path in paths:
        try:
            grain.sources.ArrayRecordDataSource([path])
        except (RuntimeError, OSError, ValueError) as err:
            raise ValueError(
                f"shard {path!r} is damaged ({' '.join(str(err).split())[:160]}). Delete it and rerun "
                "launch/prepare_data.py with the same flags: it rewrites only the missing shards."
            ) from None
    return paths


class ShardWriter:
    """Writes records to one ArrayRecord shard; the file appears under its name only on close."""

    def __init__(self, path: str):
        from array_record.python.array_record_module import ArrayRecordWriter

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path, self._tmp = path, path + ".partial"
        if os.path.islink(self._tmp):  # a link at the temporary name is removed, never written through
            os.remove(self._tmp)
        # group_size 1: true random access; uncompressed: JPEG bytes do not compress anyway.
        self._writer = ArrayRecordWriter(self._tmp, "group_size:1,uncompressed")
        self.count = 0

    def write(self, record: Record) -> None:
        self._writer.write(encode(record))
        self.count += 1

    def close(self) -> None:
        self._writer.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._writer.close()
        os.remove(self._tmp)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
