"""What every benchmark evaluator shares: options, metric towers, the resumable batch loop, reports.

An evaluator is built from its options (``config.evals.<name>``, checked against ``OPTIONS``)
and run with ``evaluate(editor, workdir=..., predictions=..., limit=...) -> Report`` or
``run(...) -> dict[str, float]``. Rows are processed in fixed batches of ``batch_size`` over
the dataset's order (the last one padded), each batch with its own seed, so a row's result does
not depend on which rows an interrupted run had finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import numpy as np

from regionedit_jax.evaluators.cache import RowCache
from regionedit_jax.evaluators.metrics import Scorer

COMMON_OPTIONS: dict[str, Any] = dict(
    dataset="",  # hub id (offline cache) or a local copy in the hub schema
    split="test",
    batch_size=8,  # rows per edit call and per metric call
    seed=0,  # the generator's base seed; each batch derives its own
    limit=0,  # score only the first N rows (0: all)
    clip="openai/clip-vit-large-patch14",  # CLIP for the metrics: a hub id or a local folder
    dino="facebook/dino-vits16",  # DINO ViT-S/16 for the DINO metric
    dtype="float32",  # of the metric towers
    examples=6,  # rows drawn in examples.png
)


@dataclasses.dataclass
class Example:
    """One row of the example grid."""

    source: np.ndarray  # [H, W, 3] uint8, the image the edit started from
    region: np.ndarray | None  # [H, W] bool: the repainted region (or the changed pixels)
    edited: np.ndarray  # [h, w, 3] uint8
    text: str  # the instruction(s)
    target: np.ndarray | None = None  # [h', w', 3] uint8 ground truth, when the benchmark has one
    region_label: str = "region"
    source_label: str = "source"
    # Labelled [h, w, 3] uint8 pictures drawn instead of the default panels, when given.
    panels: list[tuple[str, np.ndarray]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Report:
    """The result of one evaluation."""

    name: str  # the key in config.evals
    title: str  # e.g. "Emu Edit test"
    metrics: dict[str, float]  # overall means
    rows: int  # rows scored
    columns: list[tuple[str, str, str]]  # (metric key, paper's column name, "↑" or "↓")
    paper: dict[str, float]  # the paper's published numbers for this table
    groups: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # per task, with "rows"
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # settings, captions, timing, ...
    examples: list[Example] = dataclasses.field(default_factory=list)

    def flat(self) -> dict[str, float]:
        """{"clip_dir": ..., "rows": N, "<task>/clip_dir": ..., "<task>/rows": n}."""
        out = {**self.metrics, "rows": float(self.rows)}
        for group, values in self.groups.items():
            out.update({f"{group}/{k}": v for k, v in values.items()})
        return out


def check_options(cls: type, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` over ``cls.OPTIONS``' defaults; unknown keys and wrong types fail naming the key."""
    out = dict(cls.OPTIONS)
    for key, value in options.items():
        if key not in out:
            raise ValueError(
                f"config.evals.{name}: unknown option {key!r} for type {cls.type!r}; the options are {sorted(out)}."
            )
        default = out[key]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            raise ValueError(
                f"config.evals.{name}.{key} must be a {type(default).__name__} (like {default!r}); got {value!r}."
            )
        out[key] = value
    if out["batch_size"] < 1 or out["limit"] < 0 or out["examples"] < 0:
        raise ValueError(f"config.evals.{name}: batch_size must be positive and limit, examples >= 0.")
    if out["dtype"] not in ("float32", "bfloat16"):
        raise ValueError(f"config.evals.{name}.dtype must be 'float32' or 'bfloat16'; got {out['dtype']!r}.")
    return out


def params_digest(params: Any) -> str:
    """A short hash of a parameter tree, so cached rows are tied to the weights that made them."""
    digest = hashlib.sha1()
    for leaf in jax.tree_util.tree_leaves(params):
        array = np.asarray(jax.device_get(leaf))
        digest.update(str((array.shape, array.dtype)).encode() + array.tobytes())
    return digest.hexdigest()[:16]


def editor_settings(editor) -> dict[str, Any]:
    """What decides an Editor's outputs besides the inputs: weights, towers, resolution, generator, describers."""
    c = editor.config
    return {
        "params": params_digest(editor.params),
        "towers": c.towers.to_dict(),
        "edit": c.edit.to_dict(),
        "generator": c.generator.to_dict(),
        "region": c.region.to_dict(),
        "describe": {"captioner": c.describe.captioner, "rewriter": c.describe.rewriter},
    }


def batch_seed(seed: int, batch: int, turn: int = 0) -> int:
    """The generator seed of one batch (and turn), derived from the base seed."""
    return (seed * 1_000_003 + batch * 101 + turn) % 2**31


def edit_padded(
    editor,
    images: Sequence[np.ndarray],
    instructions: Sequence[str],
    sources: Sequence[str],
    targets: Sequence[str],
    seed: int,
    size: int,
    *,
    masks: Sequence[np.ndarray] | None = None,
    threshold: float | None = None,
) -> list:
    """``editor.edit_batch`` on rows padded to ``size`` (repeating the last), so one shape compiles.

    ``masks`` ([H, W] bool per row) repaint those regions instead of the predicted ones.
    """
    pad = size - len(images)
    fill = lambda xs: list(xs) + [xs[-1]] * pad
    results = editor.edit_batch(
        fill(images),
        fill(instructions),
        seed=seed,
        threshold=threshold,
        source_captions=fill(sources),
        target_captions=fill(targets),
        masks=None if masks is None else fill(masks),
    )
    return results[: len(images)]


def changed_pixels(source: np.ndarray, edited: np.ndarray, tolerance: int = 12) -> np.ndarray:
    """[H, W] bool: where an edited image (same size) differs from its source, for systems without a region."""
    return np.abs(edited.astype(np.int16) - source.astype(np.int16)).max(axis=-1) > tolerance


Row = tuple[str, dict[str, Any], dict[str, np.ndarray]]  # (row id, record, images to save)


def is_tiny_bundle(path: str) -> bool:
    """Whether a tower folder sits in a tiny random bundle (towers/tiny.py)."""
    return os.path.isfile(os.path.join(os.path.dirname(os.path.normpath(path)), "bundle.json"))


class Evaluator:
    """Base class: a benchmark's options, metric towers and resumable batch loop."""

    type: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, Any]] = COMMON_OPTIONS

    def __init__(self, name: str | None = None, towers: dict[str, Any] | None = None, **options):
        """``towers``: already loaded {"clip", "dino"} for the metrics (else loaded from the options)."""
        self.name = name or self.type
        self.options = check_options(type(self), self.name, options)
        self._towers = dict(towers or {})
        self._scorer: Scorer | None = None

    def check_inputs(self) -> None:
        """Opens what the evaluation reads (its dataset) so a missing input fails before any model loads."""

    def scorer(self) -> Scorer:
        """The metric towers (loaded on first use)."""
        if self._scorer is None:
            from regionedit_jax.towers import bundle, clip, dino

            dtype = bundle.dtype_of(self.options["dtype"])
            if "clip" not in self._towers:
                self._towers["clip"] = clip.load(self.options["clip"], dtype=dtype)
            if "dino" not in self._towers:
                self._towers["dino"] = dino.load(self.options["dino"], dtype=dtype)
            self._scorer = Scorer(self._towers["clip"], self._towers["dino"], self.options["batch_size"])
        return self._scorer

    def run(self, editor=None, **kwargs) -> dict[str, float]:
        """Evaluates and returns flat metrics (see ``Report.flat``); kwargs as ``evaluate``."""
        return self.evaluate(editor, **kwargs).flat()

    def evaluate(
        self,
        editor=None,
        *,
        workdir: str | None = None,
        predictions: str | None = None,
        limit: int | None = None,
        progress: bool = False,
    ) -> Report:
        """Edits (or reads ``predictions``) and scores the benchmark; rows cached under ``workdir``."""
        raise NotImplementedError

    # ------------------------------------------------------------------------- helpers

    def _limit(self, limit: int | None, total: int) -> int:
        limit = self.options["limit"] if limit is None else limit
        return min(total, limit) if limit else total

    def _cache(self, workdir: str | None, editor, predictions: str | None) -> RowCache:
        if editor is None and predictions is None:
            raise ValueError(f"{self.name}: give an Editor to evaluate, or a predictions folder to score.")
        if editor is not None and predictions is not None:
            raise ValueError(f"{self.name}: give an Editor or a predictions folder, not both.")
        settings = {"type": self.type, **{k: v for k, v in self.options.items() if k not in ("limit", "examples")}}
        if predictions is not None:
            settings["predictions"] = os.path.normpath(predictions)
        else:
            settings["editor"] = editor_settings(editor)
        return RowCache(None if workdir is None else os.path.join(workdir, "rows"), settings)

    def _loop(
        self, units: Sequence[str], cache: RowCache, compute: Callable[[int, list[int]], list[Row]], progress: bool
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Runs ``compute(batch_index, positions)`` on every batch with an unfinished unit and saves its rows.

        Each record gets ``seconds``: its share of its batch's wall time (compiling included).
        Returns (the records of ``units`` in order, timing).
        """
        from tqdm import tqdm

        size, computed, began, batches = self.options["batch_size"], 0, time.perf_counter(), []
        with tqdm(total=len(units), desc=self.name, unit="row", disable=not progress) as bar:
            for b, start in enumerate(range(0, len(units), size)):
                positions = list(range(start, min(start + size, len(units))))
                if not all(cache.done(units[p]) for p in positions):
                    batch_began = time.perf_counter()
                    rows = compute(b, positions)
                    batches.append((len(rows), time.perf_counter() - batch_began))
                    share = batches[-1][1] / len(rows)
                    for row_id, record, images in rows:
                        cache.save(row_id, {**record, "seconds": round(share, 4)}, images)
                    computed += len(rows)
                bar.update(len(positions))
        records = [cache.record(u) for u in units]
        seconds = sum(r["seconds"] for r in records)
        timing = {
            "rows_computed_now": computed,
            "rows_from_cache": len(units) - computed,
            "wall_seconds_now": round(time.perf_counter() - began, 3),
            "rows_per_second": round(len(records) / seconds, 3) if seconds else None,
        }
        if len(batches) > 1:  # this run without its first batch, which compiles
            timing["rows_per_second_now_after_first_batch"] = round(
                sum(n for n, _ in batches[1:]) / max(sum(t for _, t in batches[1:]), 1e-9), 3
            )
        return records, timing

    def _metric_info(self) -> dict[str, Any]:
        clip_path, dino_path = self.options["clip"], self.options["dino"]
        info = {
            "metrics_clip": clip_path,
            "metrics_dino": dino_path,
            "seed": self.options["seed"],
            "batch_size": self.options["batch_size"],
            **{k: self.options[k] for k in ("dataset", "split") if k in self.options},
        }
        if is_tiny_bundle(clip_path):
            info["note"] = (
                "tiny random towers: these numbers exercise the pipeline and are not comparable with the paper's."
            )
        return info


def means(records: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, float]:
    """Mean of each metric over rows (float64)."""
    return {k: float(np.mean([r[k] for r in records], dtype=np.float64)) for k in keys}
