"""MagicBrush (``osunlp/MagicBrush`` schema): L1, L2, CLIP-I, DINO against the ground-truth targets.

Schema: img_id, turn_index, source_img, mask_img, instruction, target_img; a session is the rows
of one img_id ordered by turn_index (consecutive). Protocols (DESIGN §2):

  single  every turn starts from the ground-truth previous image (that row's source_img) and is scored;
  multi   each session chains our own outputs from its first source_img; only the final turn is scored.

Outputs are resized to the target's size (PIL bicubic) before scoring, as MagicBrush's script does.
MagicBrush has no captions: the Editor's describers write them (source: the captioner on the
image; target: the rewriter on (source description, instruction); in multi-turn the previous
target description is the next source description). Where the rewriter rejects an instruction
the target description is "<source description>, <instruction>", counted in ``caption_fallbacks``
(and in multi-turn the next turn keeps the previous source description).

Note: the hub copy has splits train and dev only; the test set is a separate download, to be
converted into this schema before it can be read here.

Another system's outputs are keyed ``<img_id>_<turn_index>`` (the scored turn; for multi, the
session's final turn, made from its own earlier outputs), or use MagicBrush's own layout:
``<img_id>/<img_id>_1.png`` (first turn), ``<img_id>/<img_id>_inde_<t>.png`` (single) and
``<img_id>/<img_id>_iter_<t>.png`` (multi).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np

from regionedit_jax import describe
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
from regionedit_jax.evaluators.predictions import PredictionFolder

COLUMNS = ("img_id", "turn_index", "source_img", "mask_img", "instruction", "target_img")
PROTOCOLS = ("single", "multi")
METRICS = [("l1", "L1", "↓"), ("l2", "L2", "↓"), ("clip_i", "CLIP-I", "↑"), ("dino", "DINO", "↑")]
# DESIGN §2: the paper's MagicBrush test numbers.
PAPER = {
    "single": {"l1": 0.0657, "l2": 0.0212, "clip_i": 0.9383, "dino": 0.8589},
    "multi": {"l1": 0.0972, "l2": 0.0332, "clip_i": 0.8985, "dino": 0.7962},
}


class MagicBrushTable:
    """The rows of a MagicBrush split grouped into sessions; images decoded on demand."""

    def __init__(self, source: str, split: str):
        self.source = source
        self._data = tables.load(
            source, split, what="MagicBrush", columns=COLUMNS, image_columns=["source_img", "mask_img", "target_img"]
        )
        texts = self._data.select_columns(["img_id", "turn_index", "instruction"])[:]
        self.img_ids = [str(i) for i in texts["img_id"]]
        self.turns = [int(t) for t in texts["turn_index"]]
        self.instructions = list(texts["instruction"])
        self.ids = [check_id(f"{i}_{t}") for i, t in zip(self.img_ids, self.turns, strict=True)]
        self.sessions: dict[str, list[int]] = {}  # img_id -> row positions by turn, in order of appearance
        for position, img_id in enumerate(self.img_ids):
            self.sessions.setdefault(img_id, []).append(position)
        for img_id, rows in self.sessions.items():
            rows.sort(key=lambda p: self.turns[p])
            turns = [self.turns[p] for p in rows]
            if turns != list(range(turns[0], turns[0] + len(turns))):
                raise ValueError(
                    f"MagicBrush session img_id={img_id} has turns {turns}; a session's "
                    "turn_index values must be consecutive and unique."
                )
        for row_id, text in zip(self.ids, self.instructions, strict=True):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"MagicBrush row {row_id}: the instruction is empty.")
        self.positions = {row_id: p for p, row_id in enumerate(self.ids)}

    def image(self, position: int, column: str) -> np.ndarray:
        """One image of a row -> [H, W, 3] uint8."""
        value = self._data[position][column]
        return tables.decode_image(value, f"MagicBrush row {self.ids[position]}, column {column!r}", self.source)

    def belongs(self, name: str) -> bool:
        """Whether a predictions file name names a turn of this dataset (either layout)."""
        if name in self.positions:
            return True
        native = re.fullmatch(r"([^/]+)/\1_(?:1|inde_\d+|iter_\d+)", name)
        return native is not None and native.group(1) in self.sessions


def describe_rows(
    editor, images: list[np.ndarray], instructions: list[str], sources: list[str] | None = None
) -> tuple[list[str], list[str], list[bool]]:
    """Source and target descriptions by the Editor's describers -> (sources, targets, fell back)."""
    if sources is None:
        if editor.captioner is None:
            raise ValueError(
                "MagicBrush has no captions and config.describe.captioner is 'none'; "
                "set a captioner (e.g. 'clip') to describe the source images."
            )
        sources = editor.captioner.caption(editor.working_images(images))  # what the Editor itself captions
    targets = editor.rewriter.rewrite(sources, instructions, on_error="return")
    fell_back = [isinstance(t, describe.DescribeError) for t in targets]
    targets = [f"{s}, {i}" if f else t for s, i, t, f in zip(sources, instructions, targets, fell_back, strict=True)]
    return list(sources), targets, fell_back


class MagicBrush(Evaluator):
    """The MagicBrush benchmark (``config.evals.<name>.type = "magicbrush"``), one protocol per evaluator."""

    type: ClassVar[str] = "magicbrush"
    OPTIONS: ClassVar[dict[str, Any]] = {
        **COMMON_OPTIONS,
        "dataset": "osunlp/MagicBrush",
        "clip": "openai/clip-vit-base-patch32",
        "protocol": "single",
    }

    def __init__(self, name: str | None = None, towers: dict[str, Any] | None = None, **options):
        super().__init__(name, towers, **options)
        if self.options["protocol"] not in PROTOCOLS:
            raise ValueError(
                f"config.evals.{self.name}.protocol must be one of {PROTOCOLS}; got {self.options['protocol']!r}."
            )
        self._table: MagicBrushTable | None = None

    def check_inputs(self) -> None:
        self.table()

    def table(self) -> MagicBrushTable:
        if self._table is None:
            self._table = MagicBrushTable(self.options["dataset"], self.options["split"])
        return self._table

    def _units(self, table: MagicBrushTable) -> list[list[int]]:
        """Scored rows as lists of row positions: one turn (single) or a whole session (multi)."""
        if self.options["protocol"] == "single":
            return [[p] for rows in table.sessions.values() for p in rows]
        return list(table.sessions.values())

    def _names(self, table: MagicBrushTable, rows: list[int]) -> list[str]:
        """Predictions file names that can hold the scored turn of ``rows``."""
        last, first = rows[-1], table.turns[table.sessions[table.img_ids[rows[0]]][0]]
        img_id, turn = table.img_ids[last], table.turns[last]
        kind = "inde" if self.options["protocol"] == "single" else "iter"
        native = [f"{img_id}/{img_id}_1"] if turn == first else [f"{img_id}/{img_id}_{kind}_{turn}"]
        return [table.ids[last], *native]

    def evaluate(self, editor=None, *, workdir=None, predictions=None, limit=None, progress=False) -> Report:
        cache = self._cache(workdir, editor, predictions)
        table, protocol = self.table(), self.options["protocol"]
        units = self._units(table)
        units = units[: self._limit(limit, len(units))]
        ids = [table.ids[rows[-1]] for rows in units]
        paths, extra = {}, []
        if predictions is not None:
            paths, extra = PredictionFolder(predictions).match(
                {i: self._names(table, rows) for i, rows in zip(ids, units, strict=True)},
                table.belongs,
                f"MagicBrush {protocol}-turn",
            )
        scorer, size, seed = self.scorer(), self.options["batch_size"], self.options["seed"]

        def compute(batch: int, positions: list[int]) -> list[Row]:
            chunk = [units[p] for p in positions]
            n = len(chunk)
            masks: list[np.ndarray | None] = [None] * n
            captions: list[list[tuple[str, str]]] = [[] for _ in range(n)]
            fallbacks, keep = [0] * n, [dict() for _ in range(n)]
            if predictions is not None:
                current = [PredictionFolder.read(paths[ids[p]], ids[p]) for p in positions]
            else:
                current = [table.image(rows[0], "source_img") for rows in chunk]  # each chain's start
                state: list[str | None] = [None] * n  # the next turn's source description
                for t in range(max(len(rows) for rows in chunk)):
                    active = [k for k in range(n) if len(chunk[k]) > t]
                    images = [current[k] for k in active]
                    instructions = [table.instructions[chunk[k][t]] for k in active]
                    srcs, tgts, fell = describe_rows(
                        editor, images, instructions, None if t == 0 else [state[k] for k in active]
                    )
                    results = edit_padded(editor, images, instructions, srcs, tgts, batch_seed(seed, batch, t), size)
                    for j, k in enumerate(active):
                        current[k], masks[k] = results[j].image, results[j].mask
                        state[k] = srcs[j] if fell[j] else tgts[j]
                        fallbacks[k] += fell[j]
                        captions[k].append((srcs[j], tgts[j]))
                        if t < len(chunk[k]) - 1:
                            keep[k][f"turn{table.turns[chunk[k][t]]}"] = results[j].image
            targets = [table.image(rows[-1], "target_img") for rows in chunk]
            scores = scorer.against_target(current, targets)
            out = []
            for k, p in enumerate(positions):
                rows = chunk[k]
                record = {
                    "id": ids[p],
                    "img_id": table.img_ids[rows[-1]],
                    "turn_index": table.turns[rows[-1]],
                    "turns": len(rows),
                    "instructions": [table.instructions[r] for r in rows],
                    **{m: float(v[k]) for m, v in scores.items()},
                }
                images = {}
                if predictions is None:
                    record.update(
                        captions=[list(c) for c in captions[k]],
                        caption_fallbacks=fallbacks[k],
                        region_area=float(masks[k].mean()),
                    )
                    images = {"": current[k], "mask": masks[k], **keep[k]}
                out.append((ids[p], record, images))
            return out

        records, timing = self._loop(ids, cache, compute, progress)
        keys = [m for m, _, _ in METRICS]
        info = {
            **self._metric_info(),
            **timing,
            "protocol": protocol,
            "system": "predictions" if predictions else "ours",
            "scored": "every turn" if protocol == "single" else "the final turn of each session",
            "sessions": len({r["img_id"] for r in records}),
        }
        if predictions is not None:
            info.update(
                predictions=predictions,
                extra_files=len(extra),
                extra_examples=extra[:10],
                captions="none: the metrics compare images only",
            )
        else:
            c = editor.config.describe
            info.update(
                captions=f"MagicBrush has no captions: written by the Editor's describers (captioner "
                f"{c.captioner!r}, rewriter {c.rewriter!r}); a rejected instruction gives the "
                "target description '<source description>, <instruction>'",
                caption_fallbacks=sum(r["caption_fallbacks"] for r in records),
                turns_edited=sum(r["turns"] if protocol == "multi" else 1 for r in records),
            )
        examples = [
            self._example(table, rows, row_id, cache, paths)
            for rows, row_id in zip(units[: self.options["examples"]], ids, strict=False)
        ]
        title = f"MagicBrush {self.options['split']} ({protocol}-turn)"
        return Report(
            self.name,
            title,
            means(records, keys),
            len(records),
            METRICS,
            PAPER[protocol],
            {},
            info,
            [e for e in examples if e is not None],
        )

    def _example(self, table, rows, row_id, cache, paths) -> Example | None:
        last = rows[-1]
        target = table.image(last, "target_img")
        text = " | ".join(f"{table.turns[r]}. {table.instructions[r]}" for r in rows)
        if row_id in paths:
            edited = PredictionFolder.read(paths[row_id], row_id)
            source = table.image(rows[0] if self.options["protocol"] == "multi" else last, "source_img")
            same = edited.shape == source.shape
            return Example(
                source, changed_pixels(source, edited) if same else None, edited, text, target, "changed pixels"
            )
        edited = cache.image(row_id)
        if edited is None:  # no workdir: nothing on disk to draw
            return None
        if len(rows) > 1:  # multi-turn: the final turn edited our previous output
            source = cache.image(row_id, f"turn{table.turns[rows[-2]]}")
            return Example(
                source,
                cache.image(row_id, "mask"),
                edited,
                text,
                target,
                source_label=f"our turn {table.turns[rows[-2]]}",
            )
        return Example(table.image(last, "source_img"), cache.image(row_id, "mask"), edited, text, target)
