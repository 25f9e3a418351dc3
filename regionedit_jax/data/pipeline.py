"""The training input pipeline: grain over the ArrayRecord shards, one slice per host.

Per host, ``make_dataset`` builds::

  ArrayRecord source -> [process_index::process_count] -> shuffle(seed), reshuffled per epoch
    -> repeat(num_epochs) -> decode + image to RGB + resize (threads)
    -> drop bad records (tallied) + tokenize + batch -> [mp_prefetch workers] -> count skips

Each batch is a dict of numpy arrays, ``b = global_batch_size // process_count`` rows:

  image              [b, S, S, 3] uint8   RGB, 0..255; a quarter of float32's host->device
                                          bytes; ``images.standardize`` divides by 255 on device
  clip_caption_ids   [b, clip_max_length] int32  CLIP tokens of the source caption c_src
  clip_caption_mask  [b, clip_max_length] int32
  clip_target_ids    [b, clip_max_length] int32  CLIP tokens of the target caption c_tgt
  clip_target_mask   [b, clip_max_length] int32
  t5_ids, t5_mask    [b, t5_max_length] int32    T5 tokens of the instruction y
  prompt_ids         [b, L] int32         the target caption in the generator's own tokens
                                          (``generator.prompt_tokenizer``), when one is given
  valid              [b] bool             False only for the zero rows that pad the last batch
                                          when ``drop_remainder=False``

Bad data never stops a run: a record that fails ``records.decode``, an image that does not
decode (corrupt, truncated), a zero-size, too small or extreme-aspect image, an empty or
non-string caption, target caption or instruction is dropped and tallied under one of
``REASONS``. The tally travels inside each batch from the worker that made it (worker
processes have their own memory) and the main-process iterator adds it up:
``iterator.skipped`` is a dict of counts for the metrics, saved with the iterator state
(skips in a final partial batch that ``drop_remainder`` drops are not counted).

``iter(dataset)`` is a grain ``DatasetIterator``: ``get_state()``/``set_state()`` resume
exactly, with or without workers (grain's orbax handlers save it). With workers, each
process decodes and batches its own records, so the batch order depends on
``worker_count`` (deterministic for a fixed one), and with ``drop_remainder=False`` each
worker pads its own last batch.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import grain
import jax
import msgpack
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from regionedit_jax import images as image_ops
from regionedit_jax.data import records
from regionedit_jax.towers.text import TextEncoder

REASONS = ("bad_record", "bad_image", "bad_size", "extreme_aspect", "bad_text")
CROPS = ("center", "pad")
_SKIPPED = "_skipped"  # the per-batch tally of skipped records, [len(REASONS)] int64
_RECORD_ERRORS = (
    records.RecordError,
    msgpack.exceptions.UnpackException,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
)


class BadData(ValueError):
    """A record the pipeline skips; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


# --------------------------------------------------------------------------- images


def _target_size(width: int, height: int, size: int, crop: str) -> tuple[int, int]:
    """The resized (w, h) before cropping or padding: shorter side (center) or longer side (pad) = size."""
    scale = size / (min(width, height) if crop == "center" else max(width, height))
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def fit(image: Image.Image, size: int, crop: str = "center", fill: int = 0) -> Image.Image:
    """RGB image -> [size, size] RGB: shorter side to ``size`` and a centre crop ("center"),
    or longer side to ``size`` and centred on a ``fill``-grey canvas ("pad"). Bicubic,
    antialiased when shrinking."""
    w, h = image.size
    if crop == "center":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return image.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side))
    scale = size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = Image.new("RGB", (size, size), (fill, fill, fill))
    canvas.paste(image.resize((new_w, new_h), Image.BICUBIC), ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def load_rgb(
    data: bytes, size: int, crop: str = "center", fill: int = 0, min_side: int = 1, max_aspect: float = float("inf")
) -> np.ndarray:
    """Encoded image bytes -> [size, size, 3] uint8 RGB; raises ``BadData`` for images to skip.

    Decoding is ``images.decode`` (the project's one decoder); the size checks read only the
    header, and JPEGs decode at a reduced DCT scale when that still covers the resized size.
    """
    try:
        image = image_ops.open_image(data)
    except image_ops.ImageReadError as e:
        raise BadData("bad_image", str(e)) from None
    w, h = image.size
    if max(w, h) / min(w, h) > max_aspect:
        raise BadData("extreme_aspect", f"{w}x{h} is longer than {max_aspect}:1")
    if min(w, h) < min_side:
        raise BadData("bad_size", f"{w}x{h} is smaller than {min_side} pixels")
    try:
        pixels = image_ops.decode(image, reduce_to=_target_size(w, h, size, crop))
    except image_ops.ImageReadError as e:
        raise BadData("bad_image", str(e)) from None
    return np.asarray(fit(Image.fromarray(pixels), size, crop, fill), dtype=np.uint8)


def _clean_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadData("bad_text", f"{field} is {value!r}")
    return value.strip()


# --------------------------------------------------------------------------- per record


class _Skip(NamedTuple):
    """What the decode step returns for a bad record; dropped before batching."""

    reason: str
    id: str
    message: str


class _TolerantSource:
    """A record source whose damaged records (a chunk failing its hash) read as empty bytes, which
    ``_Prepare`` skips as ``bad_record``: one bad record never ends a run."""

    def __init__(self, source):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> bytes:
        try:
            return self._source[index]
        except RuntimeError:  # riegeli: "Corrupted Riegeli/records file: chunk data hash mismatch"
            return b""


class _Prepare(grain.transforms.Map):
    """Serialized record -> {"image": [S, S, 3] uint8, "caption", "target", "instruction": str} or _Skip."""

    def __init__(self, size: int, crop: str, fill: int, min_side: int, max_aspect: float):
        self.size, self.crop, self.fill = size, crop, fill
        self.min_side, self.max_aspect = min_side, max_aspect

    def map(self, data: bytes):
        try:
            record = records.decode(data)
        except _RECORD_ERRORS as e:
            return _Skip("bad_record", "?", f"{type(e).__name__}: {e}")
        try:
            if not isinstance(record.image, bytes):
                raise BadData("bad_record", f"image field is {type(record.image).__name__}, not bytes")
            texts = {f: _clean_text(getattr(record, f), f) for f in ("caption", "target_caption", "instruction")}
            image = load_rgb(record.image, self.size, self.crop, self.fill, self.min_side, self.max_aspect)
        except BadData as e:
            return _Skip(e.reason, str(record.id), str(e))
        return {
            "image": image,
            "caption": texts["caption"],
            "target": texts["target_caption"],
            "instruction": texts["instruction"],
        }


# --------------------------------------------------------------------------- batching


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    if x.shape[0] == rows:
        return x
    return np.concatenate([x, np.zeros((rows - x.shape[0],) + x.shape[1:], x.dtype)])


class _BatchIterator(grain.DatasetIterator):
    """Drops and tallies skipped records, tokenizes the texts, stacks ``batch_size`` examples."""

    def __init__(
        self,
        parent,
        batch_size: int,
        drop_remainder: bool,
        clip: TextEncoder,
        t5: TextEncoder,
        prompt: Callable[[Sequence[str]], np.ndarray] | None,
    ):
        super().__init__(parent)
        self._batch_size, self._drop_remainder = batch_size, drop_remainder
        self._clip, self._t5, self._prompt = clip, t5, prompt
        self._empty: dict[str, np.ndarray] | None = None  # an all-padding batch, once shapes are known

    def __next__(self) -> dict[str, np.ndarray]:
        examples, tally = [], np.zeros(len(REASONS), np.int64)
        while len(examples) < self._batch_size:
            try:
                item = next(self._parent)
            except StopIteration:
                if examples and not self._drop_remainder:
                    break
                if tally.any() and not self._drop_remainder and self._empty is not None:
                    return {**self._empty, _SKIPPED: tally}  # the last skips still reach the counts
                raise
            if isinstance(item, _Skip):
                tally[REASONS.index(item.reason)] += 1
                logging.log_every_n_seconds(logging.WARNING, "skipping record %s (%s)", 60, item.id, item.message)
                continue
            examples.append(item)
        return self._collate(examples, tally)

    def _collate(self, examples: list[dict[str, Any]], tally: np.ndarray) -> dict[str, np.ndarray]:
        clip_c = self._clip([e["caption"] for e in examples])
        clip_t = self._clip([e["target"] for e in examples])
        t5 = self._t5([e["instruction"] for e in examples])
        batch = {
            "image": np.stack([e["image"] for e in examples]),
            "clip_caption_ids": clip_c[0],
            "clip_caption_mask": clip_c[1],
            "clip_target_ids": clip_t[0],
            "clip_target_mask": clip_t[1],
            "t5_ids": t5[0],
            "t5_mask": t5[1],
            "valid": np.ones(len(examples), bool),
        }
        if self._prompt is not None:
            batch["prompt_ids"] = np.asarray(self._prompt([e["target"] for e in examples]), np.int32)
        batch = {k: _pad_rows(v, self._batch_size) for k, v in batch.items()}
        self._empty = {k: np.zeros_like(v) for k, v in batch.items()}  # "valid" all False
        batch[_SKIPPED] = tally
        return batch

    def get_state(self):
        return self._parent.get_state()  # no examples are held between batches

    def set_state(self, state):
        self._parent.set_state(state)


class _BatchDataset(grain.IterDataset):
    def __init__(
        self,
        parent: grain.IterDataset,
        batch_size: int,
        drop_remainder: bool,
        clip: TextEncoder,
        t5: TextEncoder,
        prompt: Callable[[Sequence[str]], np.ndarray] | None,
    ):
        super().__init__(parent)
        self._args = (batch_size, drop_remainder, clip, t5, prompt)

    def __iter__(self) -> _BatchIterator:
        return _BatchIterator(self._parent.__iter__(), *self._args)


class PipelineIterator(grain.DatasetIterator):
    """The batch iterator handed to the training loop; ``skipped`` counts records dropped so far."""

    def __init__(self, parent):
        super().__init__(parent)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(REASONS, 0)

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._parent)
        tally = batch.pop(_SKIPPED)
        with self._lock:
            for reason, n in zip(REASONS, tally):
                self._counts[reason] += int(n)
        return {k: np.asarray(v) for k, v in batch.items()}

    @property
    def skipped(self) -> dict[str, int]:
        """Records dropped so far by reason (thread-safe copy), for the metrics."""
        with self._lock:
            return dict(self._counts)

    def get_state(self) -> dict[str, Any]:
        return {"pipeline": self._parent.get_state(), "skipped": self.skipped}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["pipeline"])
        with self._lock:
            self._counts = {r: int(state["skipped"].get(r, 0)) for r in REASONS}


class _PipelineDataset(grain.IterDataset):
    def __iter__(self) -> PipelineIterator:
        return PipelineIterator(self._parent.__iter__())


# --------------------------------------------------------------------------- the dataset


def make_dataset(
    data_dir_or_paths: str | Sequence[str],
    *,
    image_size: int,
    global_batch_size: int,
    clip_tokenizer: Any,
    t5_tokenizer: Any,
    seed: int,
    prompt_tokenizer: Callable[[Sequence[str]], np.ndarray] | None = None,
    clip_max_length: int = 77,
    t5_max_length: int = 77,
    shuffle: bool = True,
    num_epochs: int | None = None,
    crop: str = "center",
    fill: int = 0,
    min_side: int = 32,
    max_aspect: float = 4.0,
    drop_remainder: bool = True,
    worker_count: int = 0,
    worker_buffer_size: int = 2,
    read_threads: int = 8,
    read_buffer_size: int = 64,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """This host's batches (see the module docstring); iterate it for a ``PipelineIterator``.

    ``data_dir_or_paths``: a folder of ``*.array_record`` shards or a list of shard files.
    Tokenizers: the towers' ``text.Tokenizer`` (``clip.tokenizer``, ``t5.tokenizer``);
    ``prompt_tokenizer`` (picklable, texts -> [B, L] int32) adds ``prompt_ids`` for the generator.
    ``num_epochs=None`` repeats forever; each epoch is shuffled differently (from ``seed``).
    ``crop``: "center" (shorter side to ``image_size``, centre crop) or "pad" (longer side,
    ``fill``-grey borders). Images with a shorter side under ``min_side`` or a longer/shorter
    ratio over ``max_aspect`` are skipped. ``worker_count`` > 0 decodes in that many spawned
    processes (absl flags must be parsed), each holding ``worker_buffer_size`` batches;
    ``read_threads`` decode in each process ahead of the batcher (``read_buffer_size`` records).
    """
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}; got {crop!r}")
    if image_size <= 0 or worker_count < 0:
        raise ValueError(
            f"image_size must be positive and worker_count non-negative; got {image_size} and {worker_count}"
        )
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} must be a positive multiple of the "
            f"process count {process_count}: each host loads an equal share"
        )
    paths = records.shard_paths(data_dir_or_paths) if isinstance(data_dir_or_paths, str) else list(data_dir_or_paths)
    if not paths:
        raise FileNotFoundError("no shard paths given")

    ds = grain.MapDataset.source(_TolerantSource(grain.sources.ArrayRecordDataSource(paths)))
    ds = ds[process_index::process_count]
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)
    ds = ds.map(_Prepare(image_size, crop, fill, min_side, max_aspect))
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=read_buffer_size))
    it = _BatchDataset(
        it,
        global_batch_size // process_count,
        drop_remainder,
        TextEncoder(clip_tokenizer, clip_max_length),
        TextEncoder(t5_tokenizer, t5_max_length),
        prompt_tokenizer,
    )
    if worker_count:
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=worker_count, per_worker_buffer_size=worker_buffer_size)
        )
    return _PipelineDataset(it)


# --------------------------------------------------------------------------- device side


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes the batch dimension is split over: ``data`` and ``fsdp``, where present."""
    return tuple(a for a in mesh.axis_names if a in ("data", "fsdp"))


def to_global(batch: dict[str, np.ndarray], mesh: Mesh, partition: P | None = None) -> dict[str, jax.Array]:
    """Per-host batch -> global ``jax.Array``s, rows split over ``partition``
    (default: ``P(batch_axes(mesh))``; trailing dimensions replicated)."""
    partition = P(batch_axes(mesh)) if partition is None else partition
    sharding = NamedSharding(mesh, partition)
    axes = partition[0] if len(partition) else None
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    shards = math.prod(mesh.shape[a] for a in axes)
    rows = next(iter(batch.values())).shape[0] * jax.process_count()
    if rows % shards:
        raise ValueError(f"global batch {rows} does not split over mesh axes {axes} ({shards} shards)")
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def throughput(dataset: grain.IterDataset, num_batches: int = 20, warmup_batches: int = 2) -> dict[str, float]:
    """Iterates a fresh iterator; returns {"images_per_s", "batches_per_s", "seconds"} after warm-up."""
    iterator = iter(dataset)
    try:
        for _ in range(warmup_batches):
            next(iterator)
        start, images = time.perf_counter(), 0
        for _ in range(num_batches):
            images += int(next(iterator)["valid"].sum())
        seconds = time.perf_counter() - start
    finally:
        iterator.close()
    return {"images_per_s": images / seconds, "batches_per_s": num_batches / seconds, "seconds": seconds}
