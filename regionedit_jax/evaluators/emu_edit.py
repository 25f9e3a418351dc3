"""Emu Edit test set (``facebook/emu_edit_test_set``): CLIPdir, CLIPout, L1, CLIPimg, DINO, overall and per task.

Schema: instruction, image, task, split, idx, hash, input_caption, output_caption (test split,
3,589 rows, tasks background, global, style, remove, add, local, texture). Each row is edited
with the dataset's own captions as the source and target descriptions (no describer runs), and
scored against its source image at the source's size (DESIGN §2). Rows are keyed by ``idx``:
another system's outputs are ``<idx>.png`` in one folder (resized to the source size if needed).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from regionedit_jax.evaluators import tables
from regionedit_jax.evaluators.base import (
    COMMON_OPTIONS,
    Evaluator,
    Example,
    Report,
    Row,
    batch_seed,
    changed_pixels,
    edit_padded,
    means,
)
from regionedit_jax.evaluators.cache import check_id
from regionedit_jax.evaluators.metrics import resize_to
from regionedit_jax.evaluators.predictions import PredictionFolder

COLUMNS = ("idx", "image", "instruction", "task", "split", "hash", "input_caption", "output_caption")
TASKS = ("background", "global", "style", "remove", "add", "local", "texture")
METRICS = [
    ("clip_dir", "CLIPdir", "↑"),
    ("clip_out", "CLIPout", "↑"),
    ("l1", "L1", "↓"),
    ("clip_img", "CLIPimg", "↑"),
    ("dino", "DINO", "↑"),
]
# DESIGN §2: the paper's Emu Edit test numbers (5M training pairs).
PAPER = {"clip_dir": 0.1088, "clip_out": 0.2842, "l1": 0.0723, "clip_img": 0.8913, "dino": 0.8337}


class EmuEditTable:
    """The rows of an Emu Edit split: texts in memory, images decoded on demand."""

    def __init__(self, source: str, split: str):
        self.source = source
        self._data = tables.load(source, split, what="Emu Edit", columns=COLUMNS, image_columns=["image"])
        texts = self._data.select_columns([c for c in COLUMNS if c != "image"])[:]
        self.ids = [str(i) for i in texts["idx"]]
        seen: dict[str, int] = {}
        for position, row_id in enumerate(self.ids):
            check_id(row_id)
            if row_id in seen:
                raise ValueError(f"Emu Edit rows {seen[row_id]} and {position} share idx={row_id}; idx must be unique.")
            seen[row_id] = position
        self.positions = seen
        self.tasks = [str(t) for t in texts["task"]]
        self.instructions = list(texts["instruction"])
        for row_id, text in zip(self.ids, self.instructions, strict=True):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"Emu Edit row idx={row_id}: the instruction is empty.")
        # A missing caption reads as "" (counted in the results): the metrics still take its embedding.
        self.empty_captions = sum(not c for c in texts["input_caption"]) + sum(not c for c in texts["output_caption"])
        self.input_captions = [c or "" for c in texts["input_caption"]]
        self.output_captions = [c or "" for c in texts["output_caption"]]

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, position: int) -> np.ndarray:
        """The source image of a row -> [H, W, 3] uint8."""
        value = self._data[position]["image"]
        return tables.decode_image(value, f"Emu Edit row idx={self.ids[position]}, column 'image'", self.source)


class EmuEdit(Evaluator):
    """The Emu Edit benchmark (``config.evals.<name>.type = "emu_edit"``)."""

    type: ClassVar[str] = "emu_edit"
    OPTIONS: ClassVar[dict[str, Any]] = {**COMMON_OPTIONS, "dataset": "facebook/emu_edit_test_set"}

    def __init__(self, name: str | None = None, towers: dict[str, Any] | None = None, **options):
        super().__init__(name, towers, **options)
        self._table: EmuEditTable | None = None

    def check_inputs(self) -> None:
        self.table()

    def table(self) -> EmuEditTable:
        if self._table is None:
            self._table = EmuEditTable(self.options["dataset"], self.options["split"])
        return self._table

    def evaluate(self, editor=None, *, workdir=None, predictions=None, limit=None, progress=False) -> Report:
        cache = self._cache(workdir, editor, predictions)
        table = self.table()
        ids = table.ids[: self._limit(limit, len(table))]
        paths, extra = {}, []
        if predictions is not None:
            paths, extra = PredictionFolder(predictions).match(
                {i: [i] for i in ids}, lambda name: name in table.positions, "Emu Edit"
            )
        scorer, size = self.scorer(), self.options["batch_size"]

        def compute(batch: int, positions: list[int]) -> list[Row]:
            sources = [table.image(p) for p in positions]
            instructions = [table.instructions[p] for p in positions]
            src_caps = [table.input_captions[p] for p in positions]
            tgt_caps = [table.output_captions[p] for p in positions]
            if predictions is not None:
                edited = [
                    resize_to(PredictionFolder.read(paths[ids[p]], ids[p]), *s.shape[:2])
                    for p, s in zip(positions, sources, strict=True)
                ]
                masks = [None] * len(positions)
            else:
                results = edit_padded(
                    editor, sources, instructions, src_caps, tgt_caps, batch_seed(self.options["seed"], batch), size
                )
                edited, masks = [r.image for r in results], [r.mask for r in results]
            scores = scorer.emu_edit(sources, edited, src_caps, tgt_caps)
            rows = []
            for k, p in enumerate(positions):
                record = {
                    "idx": ids[p],
                    "task": table.tasks[p],
                    "instruction": instructions[k],
                    "input_caption": src_caps[k],
                    "output_caption": tgt_caps[k],
                    **{m: float(v[k]) for m, v in scores.items()},
                }
                images = {}
                if masks[k] is not None:
                    record["region_area"] = float(masks[k].mean())
                    images = {"": edited[k], "mask": masks[k]}
                rows.append((ids[p], record, images))
            return rows

        records, timing = self._loop(ids, cache, compute, progress)
        keys = [m for m, _, _ in METRICS]
        groups = {}
        for task in sorted({r["task"] for r in records}, key=lambda t: (TASKS.index(t) if t in TASKS else 99, t)):
            mine = [r for r in records if r["task"] == task]
            groups[task] = {**means(mine, keys), "rows": float(len(mine))}
        info = {
            **self._metric_info(),
            **timing,
            "system": "predictions" if predictions else "ours",
            "captions": "the dataset's input_caption (source) and output_caption (target)",
            "empty_captions": table.empty_captions,
        }
        if predictions is not None:
            info.update(predictions=predictions, extra_files=len(extra), extra_examples=extra[:10])
        examples = []
        for row_id in ids[: self.options["examples"]]:
            source = table.image(table.positions[row_id])
            if predictions is not None:
                edited = resize_to(PredictionFolder.read(paths[row_id], row_id), *source.shape[:2])
                region, label = changed_pixels(source, edited), "changed pixels"
            else:
                edited, region, label = cache.image(row_id), cache.image(row_id, "mask"), "region"
                if edited is None:  # no workdir: nothing on disk to draw
                    break
            record = cache.record(row_id)
            examples.append(
                Example(source, region, edited, f"[{record['task']}] {record['instruction']}", region_label=label)
            )
        return Report(
            self.name,
            f"Emu Edit {self.options['split']}",
            means(records, keys),
            len(records),
            METRICS,
            PAPER,
            groups,
            info,
            examples,
        )
