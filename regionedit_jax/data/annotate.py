"""Turn (image, caption) pairs into training records: validate, re-encode, describe, shard.

  annotate(Settings(source="webdataset:laion/{00000..00099}.tar", out="data/laion",
                    shard_index=i, num_shards=n))

Process `shard_index` of `num_shards` reads every `num_shards`-th pair of the source (see
`sources.py`) and writes ``part-{shard_index:05d}-{k:05d}.array_record``: shard k holds the accepted
pairs among its local pairs ``[k * records_per_shard, (k + 1) * records_per_shard)``, so the
assignment of pairs to shards never depends on what was rejected, and a rerun rewrites exactly the
shards that do not exist yet (a shard appears under its final name only when complete). Rejects are
counted by reason (`REJECTS`), never raised. Each process keeps ``manifest-{shard_index:05d}.json``
(settings, per-shard counts, reject reasons with example keys, timing) up to date after every
shard; `merge` sums them into ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from regionedit_jax import describe, outputs
from regionedit_jax import images as image_ops
from regionedit_jax.data import records, sources

REJECTS: dict[str, str] = {
    **sources.SOURCE_ERRORS,
    "corrupt_image": "the image bytes do not decode",
    "truncated_image": "the image file ends early",
    "zero_size": "the image is empty (0 bytes or a 0-pixel side)",
    "too_small": "the shorter side is under min_side pixels",
    "too_large": "the image has more pixels than PIL's decompression-bomb limit",
    "extreme_aspect": "the longer side is over max_aspect times the shorter",
    "bad_caption": "the caption is not text",
    "non_utf8_caption": "the caption bytes are not UTF-8, or the text holds lone surrogates",
    "empty_caption": "the caption is empty after cleaning",
    **{f"describe:{code}": text for code, text in describe.REASONS.items()},
}
EXAMPLES_PER_REASON = 5
_BATCH = 64  # pairs validated (in threads) and described together


@dataclass(frozen=True)
class Settings:
    """What to annotate and how; everything that shapes the output is in the manifest."""

    source: str
    out: str
    shard_index: int = 0
    num_shards: int = 1
    records_per_shard: int = 1000  # local input pairs per output shard
    max_side: int = 512
    min_side: int = 32
    max_aspect: float = 8.0
    describe: str = "rules"  # a backend name, or a JSON object for describe.make
    seed: int = 0
    limit: int | None = None  # read at most this many of this process's pairs
    quality: int = 95
    source_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        def integer(v):
            return isinstance(v, int) and not isinstance(v, bool)

        checks = [
            ("records_per_shard", integer(self.records_per_shard) and self.records_per_shard >= 1, "an integer >= 1"),
            ("max_side", integer(self.max_side) and self.max_side >= 8, "an integer >= 8"),
            ("min_side", integer(self.min_side) and 1 <= self.min_side <= self.max_side, "an integer in [1, max_side]"),
            ("max_aspect", isinstance(self.max_aspect, int | float) and 1 <= self.max_aspect < 1e6, "a number >= 1"),
            ("seed", integer(self.seed) and 0 <= self.seed < 2**31, "an integer in [0, 2**31)"),
            ("limit", self.limit is None or (integer(self.limit) and self.limit >= 1), "an integer >= 1, or unset"),
            ("quality", integer(self.quality) and 1 <= self.quality <= 100, "an integer in [1, 100]"),
        ]
        for name, ok, accepted in checks:
            if not ok:
                raise ValueError(f"--{name} {getattr(self, name)!r}: must be {accepted}.")

    def output_key(self) -> dict[str, Any]:
        """The settings a rerun must share to resume into the same folder."""
        skip = {"out", "shard_index"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


class Reject(Exception):
    """A pair that cannot become a record; `reason` is a key of REJECTS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def part_path(out: str, shard_index: int, k: int) -> str:
    return os.path.join(out, f"part-{shard_index:05d}-{k:05d}.array_record")


def manifest_path(out: str, shard_index: int | None = None) -> str:
    name = "manifest.json" if shard_index is None else f"manifest-{shard_index:05d}.json"
    return os.path.join(out, name)


def record_id(origin: str) -> str:
    """A stable id from where the pair came from (source and key)."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()[:20]


# Cleaning and validation ----------------------------------------------------------------------


def clean_caption(caption: Any) -> str:
    """UTF-8 text with whitespace collapsed, or Reject."""
    if caption is None:
        raise Reject("missing_caption")
    if isinstance(caption, np.generic):
        caption = caption.item()
    if isinstance(caption, bytes | bytearray | memoryview):
        try:
            caption = bytes(caption).decode("utf-8")
        except UnicodeDecodeError as err:
            raise Reject("non_utf8_caption", str(err)) from None
    if not isinstance(caption, str):
        raise Reject("bad_caption", type(caption).__name__)
    try:
        caption.encode("utf-8")
    except UnicodeEncodeError as err:  # e.g. "\ud800" from a JSON escape: not encodable text
        raise Reject("non_utf8_caption", str(err)) from None
    text = " ".join(caption.split())
    if not text:
        raise Reject("empty_caption")
    return text


def _check_size(width: int, height: int, settings: Settings) -> None:
    if width <= 0 or height <= 0:
        raise Reject("zero_size", f"{width}x{height}")
    if min(width, height) < settings.min_side:
        raise Reject("too_small", f"{width}x{height}")
    if max(width, height) > settings.max_aspect * min(width, height):
        raise Reject("extreme_aspect", f"{width}x{height}")


_REASONS = {
    "missing": "missing_image",
    "empty": "zero_size",
    "corrupt": "corrupt_image",
    "truncated": "truncated_image",
    "too_large": "too_large",
}


def load_image(image: sources.ImageData, settings: Settings) -> np.ndarray:
    """A validated image decoded by ``images.decode`` -> [H, W, 3] uint8 RGB (upright), or Reject.

    JPEGs larger than ``max_side`` decode at a reduced DCT scale (much faster).
    """
    if image is None:
        raise Reject("missing_image")
    try:
        if isinstance(image, np.ndarray):
            pixels = image_ops.decode(image)
            _check_size(pixels.shape[1], pixels.shape[0], settings)
            return pixels
        if not isinstance(image, bytes | bytearray | memoryview | Image.Image):
            raise Reject("corrupt_image", f"unsupported image type {type(image).__name__}")
        opened = image_ops.open_image(image)
        _check_size(opened.width, opened.height, settings)
        scale = settings.max_side / max(opened.size)
        reduce_to = (int(opened.width * scale), int(opened.height * scale)) if scale < 1 else None
        return image_ops.decode(opened, reduce_to=reduce_to)
    except image_ops.ImageReadError as err:
        raise Reject(_REASONS[err.reason], str(err)) from None


@dataclass
class _Prepared:
    local: int
    pair: sources.Pair
    caption: str = ""
    image: bytes = b""
    reject: Reject | None = None
    edit: describe.Edit | None = None


def _prepare(item: tuple[int, sources.Pair], settings: Settings) -> _Prepared:
    local, pair = item
    out = _Prepared(local, pair)
    try:
        if pair.error is not None:
            raise Reject(pair.reason if pair.reason in REJECTS else "read_error", pair.error)
        out.caption = clean_caption(pair.caption)
        pixels = load_image(pair.image, settings)
        if (
            pair.edit is not None
            and isinstance(pair.image, bytes)
            and pair.image.startswith(b"\x89PNG")
            and max(pixels.shape[:2]) <= settings.max_side
        ):
            out.image = bytes(pair.image)  # a rendered world keeps its lossless pixels
            return out
        out.image = records.encode_image(pixels, settings.max_side, settings.quality)
    except Reject as reject:
        out.reject = reject
    return out


# Bookkeeping ----------------------------------------------------------------------------------


@dataclass
class _ShardStats:
    inputs: int = 0
    records: int = 0
    rejects: Counter = dataclasses.field(default_factory=Counter)
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def reject(self, reason: str, key: str) -> None:
        self.rejects[reason] += 1
        keys = self.examples.setdefault(reason, [])
        if len(keys) < EXAMPLES_PER_REASON:
            keys.append(key)

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "records": self.records,
            "rejects": dict(sorted(self.rejects.items())),
            "examples": self.examples,
        }


def summarize(shards: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Totals over per-shard counts: inputs, records, rejects by reason, a few example keys."""
    total = _ShardStats()
    for shard in shards:
        total.inputs += shard["inputs"]
        total.records += shard["records"]
        for reason, count in shard["rejects"].items():
            total.rejects[reason] += count
        for reason, keys in shard["examples"].items():
            kept = total.examples.setdefault(reason, [])
            kept.extend(keys[: EXAMPLES_PER_REASON - len(kept)])
    totals = total.as_dict()
    totals["rejected"] = sum(total.rejects.values())
    totals["examples"] = dict(sorted(total.examples.items()))
    return totals


def _write_json(path: str, data: dict[str, Any]) -> None:
    outputs.write_json(path, data, indent=1)


def _previous_shards(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per-shard counts of a previous run into the same folder, checking it used these settings."""
    path = manifest_path(settings.out, settings.shard_index)
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
        if not isinstance(previous, dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as err:
        raise ValueError(
            f"{path} is not a manifest this command wrote ({type(err).__name__}: {err}); "
            "name a new --out folder, or remove that file to rewrite this process's shards"
        ) from None
    if previous.get("settings") != settings.output_key():
        changed = sorted(k for k, v in settings.output_key().items() if previous.get("settings", {}).get(k) != v)
        raise ValueError(
            f"{settings.out} was written with other settings (differing: {changed}); "
            "rerun with the same settings to resume, or write to a new --out folder"
        )
    return previous.get("shards", {})


# The run --------------------------------------------------------------------------------------


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _make_describer(settings: Settings) -> describe.Describer:
    spec = settings.describe.strip()
    try:
        config = json.loads(spec) if spec.startswith("{") else spec
    except json.JSONDecodeError as err:
        raise ValueError(
            f"--describe {spec!r} is not a JSON object ({err.msg} at character {err.pos}); give a backend "
            'name such as rules, or e.g. {"backend": "openai", "base_url": "...", "model": "..."}.'
        ) from None
    return describe.make(config, seed=settings.seed)


def _describe(describer: describe.Describer, prepared: list[_Prepared]) -> None:
    """Ask for an edit of every still-accepted caption whose pair carries none; a describe reject
    becomes a Reject."""
    for p in prepared:
        if p.reject is None and p.pair.edit is not None:
            p.edit = p.pair.edit
    good = [p for p in prepared if p.reject is None and p.edit is None]
    edits = describer.write_instructions([p.caption for p in good], on_error="return")
    for p, edit in zip(good, edits, strict=True):
        if isinstance(edit, describe.DescribeError):
            p.reject = Reject(f"describe:{edit.reason}", edit.message)
        else:
            p.edit = edit


class _Output:
    """This process's shards and manifest: one open shard at a time; its counts are saved to the
    manifest before it gets its final name, so a finished shard always has them."""

    def __init__(self, settings: Settings, done: dict[str, dict[str, Any]]) -> None:
        self.settings = settings
        self.shards = dict(done)
        self.manifest: dict[str, Any] = {
            "settings": settings.output_key(),
            "shard_index": settings.shard_index,
            "complete": False,
        }
        self.writer: records.ShardWriter | None = None
        self.stats = _ShardStats()
        self.current = -1
        self.counts: Counter = Counter()

    def save(self, **extra: Any) -> None:
        self.manifest.update(extra, shards=dict(sorted(self.shards.items())), totals=summarize(self.shards.values()))
        _write_json(manifest_path(self.settings.out, self.settings.shard_index), self.manifest)

    def add(self, p: _Prepared) -> None:
        k = p.local // self.settings.records_per_shard
        if k != self.current:
            self.close_shard()
            self.current, self.stats = k, _ShardStats()
            self.writer = records.ShardWriter(part_path(self.settings.out, self.settings.shard_index, k))
        self.stats.inputs += 1
        if p.reject is not None:
            self.stats.reject(p.reject.reason, p.pair.key)
            self.counts["rejected"] += 1
            return
        self.writer.write(
            records.Record(
                id=record_id(p.pair.origin),
                image=p.image,
                caption=p.caption,
                instruction=p.edit.instruction,
                target_caption=p.edit.target_caption,
                source=p.pair.origin,
                edit_kind=p.edit.kind,
            )
        )
        self.stats.records += 1
        self.counts["records"] += 1

    def close_shard(self) -> None:
        if self.writer is not None:
            self.shards[os.path.basename(self.writer.path)] = self.stats.as_dict()
            self.save()
            self.writer.close()
            self.counts["shards"] += 1
            self.writer = None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


def annotate(settings: Settings, *, workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Write this process's shards (skipping finished ones) and its manifest; returns the manifest.
    `workers` threads decode and re-encode images (default: the CPU count, at most 8)."""
    from tqdm import tqdm

    if settings.records_per_shard < 1:
        raise ValueError("records_per_shard must be at least 1")
    workers = workers or min(8, os.cpu_count() or 1)
    outputs.check_folder(settings.out, "--out")
    os.makedirs(settings.out, exist_ok=True)
    describer = _make_describer(settings)
    source = sources.open_source(
        settings.source, shard_index=settings.shard_index, num_shards=settings.num_shards, **settings.source_options
    )
    done = {
        name: stats
        for name, stats in _previous_shards(settings).items()
        if os.path.exists(os.path.join(settings.out, name))
    }
    finished = {int(name.rsplit("-", 1)[1].split(".")[0]) for name in done}
    per_shard = settings.records_per_shard
    pairs = source.iter_local(want=lambda j: j // per_shard not in finished, stop=settings.limit)
    total = source.size()
    if total is not None and settings.limit is not None:
        total = min(total, settings.limit)
    output = _Output(settings, done)
    output.save()
    start = time.time()
    bar = tqdm(
        total=total,
        initial=sum(s["inputs"] for s in done.values()),
        unit="pair",
        disable=not progress,
        desc=f"process {settings.shard_index}",
    )

    def finish(futures: list[Future]) -> None:
        prepared = [future.result() for future in futures]
        _describe(describer, prepared)
        for p in prepared:
            output.add(p)
        bar.update(len(prepared))
        bar.set_postfix(records=output.counts["records"], rejected=output.counts["rejected"])

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: list[Future] = []
            for batch in _batches(pairs, _BATCH):  # images of one batch decode while the
                submitted = [pool.submit(_prepare, item, settings) for item in batch]
                finish(pending)  # previous one is described and written
                pending = submitted
            finish(pending)
        output.close_shard()
    except BaseException:
        output.abort()
        raise
    finally:
        bar.close()
    seconds = time.time() - start
    handled = output.counts["records"] + output.counts["rejected"]
    output.save(
        complete=True,
        run={
            "seconds": round(seconds, 3),
            "pairs": handled,
            "records": output.counts["records"],
            "shards_written": output.counts["shards"],
            "shards_skipped": len(done),
            "pairs_per_second": round(handled / seconds, 2) if seconds > 0 else None,
            "workers": workers,
        },
    )
    if settings.num_shards == 1:
        merge(settings.out)
    return output.manifest


def merge(out: str) -> dict[str, Any]:
    """Sum the per-process manifests of a folder into manifest.json; every process must be done."""
    paths = sorted(glob.glob(os.path.join(out, "manifest-*.json")))
    if not paths:
        raise FileNotFoundError(f"no manifest-*.json in {out}; run prepare_data first")
    parts = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            parts.append(json.load(f))
    settings = parts[0]["settings"]
    if any(p["settings"] != settings for p in parts):
        raise ValueError(f"the manifests in {out} were written with different settings")
    present = {p["shard_index"] for p in parts}
    missing = sorted(set(range(settings["num_shards"])) - present)
    unfinished = sorted(p["shard_index"] for p in parts if not p.get("complete"))
    if missing or unfinished:
        raise ValueError(
            f"cannot merge {out}: processes {missing} have no manifest and "
            f"{unfinished} have not finished; run them (reruns resume)"
        )
    shards = {name: stats for p in parts for name, stats in p["shards"].items()}
    merged = {
        "settings": settings,
        "processes": len(parts),
        "shards": dict(sorted(shards.items())),
        "totals": summarize(shards.values()),
        "seconds": round(sum(p.get("run", {}).get("seconds", 0.0) for p in parts), 3),
    }
    _write_json(manifest_path(out), merged)
    return merged
