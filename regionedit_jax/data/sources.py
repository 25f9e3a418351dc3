"""Sources of (image, caption) pairs behind one interface, chosen by a spec string.

  source = open_source("webdataset:shards/{00000..00009}.tar", shard_index=0, num_shards=4)
  for pair in source:                 # this process's pairs, in source order
      pair.key, pair.image, pair.caption, pair.origin, pair.error

Spec syntax (see `open_source`):

  samples                      the bundled sample photos (regionedit_jax/data/samples.jsonl)
  jsonl:PATH | PATH.jsonl      a manifest of {"image": path, "caption": text} rows, or rows in the
                               samples format ({"source": locator, "caption": text})
  folder:DIR                   images under DIR with same-named .txt captions
  webdataset:GLOB | GLOB.tar   img2dataset WebDataset tars ({key}.jpg/.png/.webp, {key}.txt,
                               {key}.json), read as a stream; GLOB may use {00000..00009} ranges
  tfds:NAME[:split]            a tensorflow-datasets ArrayRecord dataset (NAME may be NAME:VERSION
                               or a dataset folder), read without TensorFlow; data_dir= its root
  hf:ID_OR_PATH[:split]        Hugging Face datasets: a save_to_disk folder, a folder of parquet
                               files in the hub layout, or a hub id already in the local cache
  shapes:N[:split]             N rendered edits of the shapes world (regionedit_jax.worlds; split
                               train or test, default train), each carrying its own edit

Sharding: a source opened with `shard_index=i, num_shards=n` yields the items whose position p in
the source satisfies p % n == i; `iter_local` numbers them j = p // n. Unreadable items are yielded
as pairs with `error` set ("<code>: <detail>"), never raised, so an annotator can count them.
"""

from __future__ import annotations

import abc
import codecs
import glob
import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Reject codes a source can set on a pair (the annotator adds its own for images and captions).
SOURCE_ERRORS: dict[str, str] = {
    "missing_file": "the image file the source names does not exist",
    "missing_image": "the item has no image",
    "missing_caption": "the item has no caption",
    "read_error": "the item could not be read (bad manifest row, broken archive or record)",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_WDS_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
_SPEC_HELP = (
    "samples, jsonl:PATH (or PATH.jsonl), folder:DIR, webdataset:GLOB (or GLOB.tar), "
    "tfds:NAME[:split], hf:ID_OR_PATH[:split], shapes:N[:split]"
)

ImageData = bytes | Image.Image | np.ndarray | None


@dataclass(frozen=True)
class Pair:
    """One item of a source: `error` is a reject code (and ': detail') when it is unreadable;
    `edit` is the describe.Edit of a source that knows its own edit (then no describer runs)."""

    key: str
    image: ImageData
    caption: str | bytes | None
    origin: str
    error: str | None = None
    edit: Any = None

    @property
    def reason(self) -> str | None:
        """The reject code of `error`, without its detail."""
        return None if self.error is None else self.error.split(":", 1)[0]


def _failed(key: str, origin: str, code: str, detail: str) -> Pair:
    return Pair(key, None, None, origin, f"{code}: {detail}")


class Source(abc.ABC):
    """An ordered collection of pairs, of which this process reads every `num_shards`-th."""

    def __init__(self, *, shard_index: int = 0, num_shards: int = 1) -> None:
        if num_shards < 1 or not 0 <= shard_index < num_shards:
            raise ValueError(f"need 0 <= shard_index < num_shards, got {shard_index}/{num_shards}")
        self.shard_index, self.num_shards = shard_index, num_shards

    def __iter__(self) -> Iterator[Pair]:
        return (pair for _, pair in self.iter_local())

    def size(self) -> int | None:
        """How many pairs this process reads, or None for a stream of unknown length."""
        return None

    @abc.abstractmethod
    def iter_local(
        self, want: Callable[[int], bool] | None = None, stop: int | None = None
    ) -> Iterator[tuple[int, Pair]]:
        """(local index, pair) for this process's items with local index < stop where want(j);
        items not wanted are skipped without loading their image."""


class IndexedSource(Source):
    """A source with random access: `_count()` items, `_get(position)` reads one."""

    def size(self) -> int:
        return len(range(self.shard_index, self._count(), self.num_shards))

    def iter_local(self, want=None, stop=None):
        positions = range(self.shard_index, self._count(), self.num_shards)
        for j, position in enumerate(positions[:stop]):
            if want is None or want(j):
                yield j, self._get(position)

    @abc.abstractmethod
    def _count(self) -> int: ...

    @abc.abstractmethod
    def _get(self, position: int) -> Pair: ...


def _read_bytes(path: Path, key: str, origin: str) -> bytes | Pair:
    """A file's bytes, or a failed pair saying why it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return _failed(key, origin, "missing_file", str(path))
    except OSError as err:
        return _failed(key, origin, "read_error", f"{path}: {err}")


# JSONL manifests and the bundled samples ------------------------------------------------------


class JsonlSource(IndexedSource):
    """Rows {"image": path, "caption": text} (paths relative to the manifest's folder), or the
    samples format {"source": locator, "caption": text}; the key is the row's "id" or "key",
    else its line number."""

    def __init__(
        self, path: str | os.PathLike[str], *, image_field: str | None = None, caption_field: str = "caption", **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"JSONL manifest not found: {self.path}")
        self.image_field, self.caption_field = image_field, caption_field
        # Bytes per line: one line that is not UTF-8 rejects that row, not the manifest.
        raw = self.path.read_bytes().removeprefix(codecs.BOM_UTF8)  # editors on Windows write a BOM
        self._lines = [(n, line) for n, line in enumerate(raw.splitlines(), 1) if line.strip()]

    def _count(self) -> int:
        return len(self._lines)

    def _get(self, position: int) -> Pair:
        number, line = self._lines[position]
        key = str(number)
        origin = f"jsonl:{self.path.name}/{key}"
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            return _failed(key, origin, "read_error", f"line {number} is not UTF-8 text")
        except json.JSONDecodeError as err:
            return _failed(key, origin, "read_error", f"line {number} is not JSON: {err}")
        if not isinstance(row, dict):
            return _failed(key, origin, "read_error", f"line {number} is not a JSON object")
        key = str(row.get("id", row.get("key", key)))
        origin = f"jsonl:{self.path.name}/{key}"
        caption = row.get(self.caption_field)
        if self.image_field is not None or "image" in row:
            location = row.get(self.image_field or "image")
            if not isinstance(location, str) or not location:
                named = "names no image" if not location else f"has an image field of type {type(location).__name__}"
                return _failed(key, origin, "missing_image", f"line {number} {named}")
            image = _read_bytes(self.path.parent / location, key, origin)
            return image if isinstance(image, Pair) else Pair(key, image, caption, origin)
        locator = row.get("source")
        if not isinstance(locator, str) or not locator:
            return _failed(key, origin, "missing_image", f"line {number} has no 'image' or 'source'")
        return self._load_locator(locator, key, caption, origin)

    def _load_locator(self, locator: str, key: str, caption: Any, origin: str) -> Pair:
        from regionedit_jax.data.samples import load_image

        try:
            return Pair(key, load_image(locator, root=self.path.parent), caption, origin)
        except FileNotFoundError as err:
            return _failed(key, origin, "missing_file", str(err))
        except (ValueError, OSError, ImportError) as err:
            return _failed(key, origin, "read_error", f"{locator}: {err}")


# A folder of images with .txt captions --------------------------------------------------------


class FolderSource(IndexedSource):
    """Image files under a folder (recursively, sorted), each captioned by a same-stem .txt."""

    def __init__(self, root: str | os.PathLike[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.root = Path(root)
        if not self.root.is_dir():
            raise NotADirectoryError(f"image folder not found: {self.root}")
        self._files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    def _count(self) -> int:
        return len(self._files)

    def _get(self, position: int) -> Pair:
        path = self._files[position]
        key = path.relative_to(self.root).with_suffix("").as_posix()
        origin = f"folder:{self.root.name}/{key}"
        image = _read_bytes(path, key, origin)
        if isinstance(image, Pair):
            return image
        caption_path = path.with_suffix(".txt")
        caption = caption_path.read_bytes() if caption_path.is_file() else None
        return Pair(key, image, caption, origin)


# img2dataset WebDataset tars, streamed ---------------------------------------------------------


def expand_braces(pattern: str) -> list[str]:
    """Expand {a..b} numeric ranges (zero padding kept) and {x,y} lists, left to right."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        first, last = numeric.groups()
        width = len(first) if first.startswith("0") else 0
        options = [str(n).zfill(width) for n in range(int(first), int(last) + 1)]
    elif "," in body:
        options = body.split(",")
    else:
        options = ["{" + body + "}"]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [head + option + rest for option in options for rest in expand_braces(tail)]


class WebDatasetSource(Source):
    """img2dataset tar shards read as one stream; members are grouped by key (the member name up
    to the first dot of its base name); a key's image is its first .jpg/.jpeg/.png/.webp member,
    its caption the .txt member (else "caption" in the .json member)."""

    def __init__(self, pattern: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.pattern = pattern
        self.paths: list[str] = []
        for part in expand_braces(pattern):
            matches = sorted(glob.glob(part)) if glob.has_magic(part) else [part]
            self.paths.extend(p for p in matches if p not in self.paths)
        missing = [p for p in self.paths if not os.path.isfile(p)]
        if not self.paths or missing:
            raise FileNotFoundError(f"no WebDataset tar files at {missing or pattern!r}")

    def iter_local(self, want=None, stop=None):
        n, i = self.num_shards, self.shard_index
        end = None if stop is None else stop * n  # the first position past the last wanted one

        def wanted(position: int) -> bool:
            return position % n == i and (want is None or want(position // n))

        position = 0
        for path in self.paths:
            for pair in self._read_tar(path, position, end, wanted):
                if pair is not None:
                    yield position // n, pair
                position += 1
            if end is not None and position >= end:
                return

    def _read_tar(self, path: str, first: int, end: int | None, wanted: Callable[[int], bool]) -> Iterator[Pair | None]:
        """One pair (None when not wanted) per key from position `first` on, in archive order,
        stopping before position `end`."""
        name = os.path.basename(path)
        position, key, members = first - 1, None, {}
        try:
            with tarfile.open(path, mode="r|*") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    folder, base = os.path.split(member.name)
                    stem, _, ext = base.partition(".")
                    member_key = f"{folder}/{stem}" if folder else stem
                    if member_key != key:
                        if key is not None:
                            yield self._pair(name, key, members) if wanted(position) else None
                        position, key, members = position + 1, member_key, {}
                        if end is not None and position >= end:
                            return
                    if wanted(position):
                        handle = archive.extractfile(member)
                        members[ext.lower()] = handle.read() if handle is not None else b""
        except (tarfile.TarError, EOFError, OSError) as err:
            if key is not None:
                yield self._pair(name, key, members) if wanted(position) else None
            if end is None or position + 1 < end:
                bad = f"{name}:broken"
                yield (
                    _failed(bad, f"webdataset:{bad}", "read_error", f"{path}: {err}") if wanted(position + 1) else None
                )
            return
        if key is not None:
            yield self._pair(name, key, members) if wanted(position) else None

    @staticmethod
    def _pair(name: str, key: str, members: dict[str, bytes]) -> Pair:
        origin = f"webdataset:{name}/{key}"
        image = next((members[e] for e in _WDS_IMAGE_EXTS if e in members), None)
        caption: str | bytes | None = members.get("txt")
        if caption is None and "json" in members:
            try:
                meta = json.loads(members["json"])
            except (json.JSONDecodeError, UnicodeDecodeError):
                meta = None
            if isinstance(meta, dict) and isinstance(meta.get("caption"), str):
                caption = meta["caption"]
        if image is None:
            return _failed(key, origin, "missing_image", f"no {'/'.join(_WDS_IMAGE_EXTS)} member for key {key!r}")
        if caption is None:
            return Pair(key, image, None, origin, "missing_caption: no .txt member")
        return Pair(key, image, caption, origin)


# tensorflow-datasets (ArrayRecord, no TensorFlow) ----------------------------------------------


def _feature_path(features: Any, path: str) -> Any:
    node = features
    for part in path.split("/"):
        node = node[part]
    return node


def _pick_feature(features: Any, kind: type, prefer: str) -> str | None:
    """The '/'-joined name of a feature of `kind` in a FeaturesDict (nested dicts included):
    names matching `prefer` first, then by name (a stored dataset's feature order is not fixed)."""
    import tensorflow_datasets as tfds

    found: list[str] = []

    def visit(node: Any, prefix: str) -> None:
        for name, feature in node.items():
            if isinstance(feature, kind):
                found.append(prefix + name)
            elif isinstance(feature, tfds.features.FeaturesDict):
                visit(feature, f"{prefix}{name}/")

    visit(features, "")
    found.sort(key=lambda name: (re.search(prefer, name, re.IGNORECASE) is None, name))
    return found[0] if found else None


def _nested(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition("/")
    return {head: _nested(rest, value) if rest else value}


class TfdsSource(IndexedSource):
    """A prepared tensorflow-datasets dataset read through `as_data_source` (ArrayRecord files),
    with Image features left encoded, so no TensorFlow is needed. Default features: the Image
    named like "image", else the first by name; the Text named like caption/text, else the first
    by name ("a/b" names a nested feature)."""

    def __init__(
        self,
        name: str,
        split: str = "train",
        *,
        data_dir: str | None = None,
        image_feature: str | None = None,
        caption_feature: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        import tensorflow_datasets as tfds

        if os.path.isdir(name):
            builder = tfds.builder_from_directory(name)
        else:
            try:
                builder = tfds.builder(name, data_dir=data_dir)
            except tfds.core.registered.DatasetNotFoundError:
                builder = None
            if builder is None or not builder.is_prepared():
                raise FileNotFoundError(
                    f"tfds dataset {name!r} is not prepared under data_dir={data_dir!r}; prepare "
                    "it there (or pass its version folder as tfds:DIR)"
                )
        features = builder.info.features
        self.image_feature = image_feature or _pick_feature(features, tfds.features.Image, "image")
        self.caption_feature = caption_feature or _pick_feature(features, tfds.features.Text, "caption|text")
        if not self.image_feature or not self.caption_feature:
            raise ValueError(
                f"cannot tell the image and caption features of {builder.info.name}"
                f" ({features}); pass image_feature= and caption_feature="
            )
        decoders = None
        if isinstance(_feature_path(features, self.image_feature), tfds.features.Image):
            decoders = _nested(self.image_feature, tfds.decode.SkipDecoding())
        try:
            self._data = builder.as_data_source(split, decoders=decoders)
        except (ValueError, KeyError) as err:
            raise ValueError(f"tfds dataset {builder.info.name}: {err}") from None
        except NotImplementedError as err:  # prepared as TFRecord: no random access
            raise ValueError(
                f"tfds dataset {builder.info.name} is not stored as ArrayRecord; "
                "prepare it with file_format='array_record'"
            ) from err
        self.tag = f"tfds:{builder.info.name}/{split}"

    def _count(self) -> int:
        return len(self._data)

    def _get(self, position: int) -> Pair:
        key = str(position)
        origin = f"{self.tag}/{key}"
        try:
            example = self._data[position]
        except (ValueError, OSError, RuntimeError, KeyError) as err:
            return _failed(key, origin, "read_error", f"record {position}: {err}")
        image = _feature_path(example, self.image_feature)
        caption = _feature_path(example, self.caption_feature)
        if isinstance(caption, np.ndarray) and caption.dtype == object and caption.size:
            caption = caption.flat[0]
        return Pair(key, image, caption, origin)


# Hugging Face datasets -------------------------------------------------------------------------


def saved_split(root: Path, split: str, what: str):
    """``split`` of a ``save_to_disk`` folder, or None when ``root`` is not one."""
    import datasets

    if not ((root / "dataset_dict.json").is_file() or (root / "state.json").is_file()):
        return None
    data = datasets.load_from_disk(str(root))
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise ValueError(f"{what} at {root} has splits {sorted(data)}, not {split!r}.")
        data = data[split]
    return data


def parquet_split_files(root: Path, split: str) -> list[str]:
    """Parquet files of `split` under a folder: '<split>-*.parquet' files or a <split>/ folder."""
    files = sorted(root.rglob("*.parquet"))
    mine = [p for p in files if p.name.split("-")[0].split(".")[0] == split or split in p.relative_to(root).parts[:-1]]
    if not mine:
        found = sorted({p.name.split("-")[0].split(".")[0] for p in files})
        raise FileNotFoundError(
            f"no parquet files for split {split!r} under {root} (the files there name "
            f"the splits {found}); the hub layout is data/{split}-00000-of-00001.parquet."
        )
    return [str(p) for p in mine]


class HfSource(IndexedSource):
    """A Hugging Face dataset: a save_to_disk folder, a folder of parquet files (the hub layout
    data/<split>-00000-of-00001.parquet), or a hub id read offline from the local cache."""

    def __init__(
        self,
        path: str,
        split: str = "train",
        *,
        image_column: str | None = None,
        caption_column: str | None = None,
        cache_dir: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        import datasets

        root = Path(path)
        data = saved_split(root, split, "the dataset")
        if data is None and root.is_dir():
            data = datasets.load_dataset(
                "parquet", data_files={split: parquet_split_files(root, split)}, split=split, cache_dir=cache_dir
            )
        elif data is None:
            data = datasets.load_dataset(path, split=split, cache_dir=cache_dir)
        self.image_column = image_column or next(
            (name for name, f in data.features.items() if isinstance(f, datasets.Image)), None
        )
        self.caption_column = caption_column or next(
            (
                name
                for name, f in data.features.items()
                if isinstance(f, datasets.Value)
                and f.dtype in ("string", "large_string")
                and re.search("caption|text", name, re.IGNORECASE)
            ),
            None,
        )
        for what, column in (("image", self.image_column), ("caption", self.caption_column)):
            if column is None or column not in data.features:
                raise ValueError(
                    f"cannot find the {what} column of {path} (columns "
                    f"{list(data.features)}); pass {what}_column= (--{what}_field)"
                )
        data = data.select_columns([self.image_column, self.caption_column])
        if isinstance(data.features[self.image_column], datasets.Image):
            data = data.cast_column(self.image_column, datasets.Image(decode=False))
        self._data, self._root = data, root
        self.tag = f"hf:{root.name if root.exists() else path}/{split}"

    def _count(self) -> int:
        return len(self._data)

    def _get(self, position: int) -> Pair:
        key = str(position)
        origin = f"{self.tag}/{key}"
        row = self._data[position]
        image, caption = row[self.image_column], row[self.caption_column]
        if isinstance(image, dict):  # an Image feature, not decoded: {"bytes", "path"}
            if image.get("bytes") is not None:
                image = image["bytes"]
            elif image.get("path"):
                image = _read_bytes(self._root / image["path"], key, origin)
                if isinstance(image, Pair):
                    return image
            else:
                image = None
        elif isinstance(image, str):
            image = _read_bytes(self._root / image, key, origin)
            if isinstance(image, Pair):
                return image
        elif isinstance(image, list):
            image = np.asarray(image)
        return Pair(key, image, caption, origin)


# The shapes world ------------------------------------------------------------------------------


class ShapesSource(IndexedSource):
    """The first `count` edits of a split of the shapes world (`worlds.examples`, seed 0): the
    image is a PNG of the source scene rendered with a texture key from its index, the caption
    the source caption, and `edit` the world's instruction, target caption and kind. Options
    `image_size`, `grid` and `max_objects` choose the world (`worlds.scenes.WorldConfig`)."""

    def __init__(
        self,
        count: int,
        split: str = "train",
        *,
        image_size: int = 64,
        grid: int = 3,
        max_objects: int = 4,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        from regionedit_jax.worlds.edits import SPLITS
        from regionedit_jax.worlds.scenes import WorldConfig

        if count < 0 or split not in SPLITS:
            raise ValueError(f"expected shapes:N[:split] with N >= 0 and split in {SPLITS}, got {count}:{split}")
        self.count, self.split = count, split
        self.world = WorldConfig(image_size=int(image_size), grid=int(grid), max_objects=int(max_objects))

    def _count(self) -> int:
        return self.count

    def _get(self, position: int) -> Pair:
        import jax

        from regionedit_jax.describe.base import Edit
        from regionedit_jax.worlds import edits, render

        edit = edits.example(self.split, position, cfg=self.world)
        key = jax.random.fold_in(jax.random.PRNGKey(edits.SPLITS.index(self.split)), position)
        buffer = io.BytesIO()
        Image.fromarray(render.render_scene(edit.source, key, self.world)).save(buffer, format="PNG")
        return Pair(
            str(position),
            buffer.getvalue(),
            edit.source_caption,
            f"shapes:{self.split}/{position}",
            edit=Edit(edit.instruction, edit.target_caption, edit.kind),
        )


# Specs ----------------------------------------------------------------------------------------

_TFDS_SPEC = re.compile(r"^(?P<name>[^:\[]+?(?::\d+\.\d+\.\d+)?)(?::(?P<split>.+))?$")


def _name_and_split(rest: str, split: str | None) -> tuple[str, str]:
    """'NAME[:VERSION][:split]' -> (name, split); a split given by keyword wins."""
    match = _TFDS_SPEC.match(rest)
    if match is None or not match.group("name"):
        raise ValueError(f"expected NAME[:split], got {rest!r}")
    return match.group("name"), split or match.group("split") or "train"


def _hf_name_and_split(rest: str, split: str | None) -> tuple[str, str]:
    """'ID_OR_PATH[:split]'; an existing path is taken whole, even with a colon in it."""
    if os.path.exists(rest) or ":" not in rest:
        return rest, split or "train"
    name, _, named = rest.rpartition(":")
    return name, split or named


def open_source(
    spec: str,
    *,
    shard_index: int = 0,
    num_shards: int = 1,
    image_field: str | None = None,
    caption_field: str | None = None,
    split: str | None = None,
    **kw: Any,
) -> Source:
    """Open the pair source a spec names (module docstring). `image_field`/`caption_field` name
    the JSONL keys, tfds features or HF columns; other options (data_dir=, cache_dir=) go to the
    source."""
    shard = {"shard_index": shard_index, "num_shards": num_shards}
    scheme, sep, rest = spec.partition(":")
    if not sep or len(scheme) < 2 or "/" in scheme:  # no scheme (a Windows drive is a path)
        scheme, rest = "", spec

    def fields(image_key: str, caption_key: str) -> dict[str, Any]:
        named = {image_key: image_field, caption_key: caption_field}
        return {k: v for k, v in named.items() if v is not None}

    def no_options(kind: str) -> None:
        if kw:
            raise TypeError(f"{kind} sources take no options {sorted(kw)}")

    if spec == "samples":
        from regionedit_jax.data.samples import DEFAULT_MANIFEST

        no_options("samples")
        return JsonlSource(DEFAULT_MANIFEST, **shard)
    if scheme == "jsonl" or (not scheme and spec.endswith(".jsonl")):
        no_options("jsonl")
        return JsonlSource(rest, **fields("image_field", "caption_field"), **shard)
    if scheme == "folder":
        no_options("folder")
        return FolderSource(rest, **shard)
    if scheme == "webdataset" or (not scheme and spec.endswith(".tar")):
        no_options("webdataset")
        return WebDatasetSource(rest, **shard)
    if scheme == "tfds":
        name, split = _name_and_split(rest, split)
        return TfdsSource(name, split, **fields("image_feature", "caption_feature"), **kw, **shard)
    if scheme == "hf":
        name, split = _hf_name_and_split(rest, split)
        return HfSource(name, split, **fields("image_column", "caption_column"), **kw, **shard)
    if scheme == "shapes":
        unknown = sorted(set(kw) - {"image_size", "grid", "max_objects"})
        if unknown:
            raise TypeError(f"shapes sources take only the options image_size, grid and max_objects, not {unknown}")
        count, _, named = rest.partition(":")
        if not count.isdigit():
            raise ValueError(f"expected shapes:N[:split], got {spec!r}")
        return ShapesSource(int(count), split or named or "train", **kw, **shard)
    raise ValueError(f"unknown source spec {spec!r}; expected one of: {_SPEC_HELP}")
