"""The shapes world's held-out test edits (``regionedit_jax.worlds``): does the method edit where it should?

Every test edit (``worlds.edits.examples("test", n, world_seed)``, kinds round-robin, so n = 350 is 50
per kind) is edited with the world's own source and target captions, its source rendered exactly as
the training records render it (``data.sources.ShapesSource``). Besides the method's predicted region,
four baselines repaint a given mask through the same Editor path and seed (``edit_batch(masks=...)``),
so they differ from the method only by the mask:

  whole         the whole image
  random_box    a square of the mean true area of the row's kind (over the n test edits) at a position
                drawn from (seed, row)
  clip_patches  the metric CLIP's source patch tokens closest to the instruction's object phrase
                (``clip_phrase``), cut at the midpoint between the image's least and greatest cosine
  truth         the first true mask: the upper bound

Each method is scored per row by IoU with the true mask (``edits.score_iou``: an open-place add
accepts any free cell and scores its best alternative), its mask area, and CLIPdir, CLIPout, CLIPimg
and L1 against the source with the metric CLIP (DESIGN §2). ``Report.metrics`` and ``groups`` (per
kind) are the method's; ``info["comparison"]`` holds every method, overall and per kind.
"""

from __future__ import annotations

import functools
import re
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax.edit_cli import overlay
from regionedit_jax.evaluators.base import (
    COMMON_OPTIONS,
    Evaluator,
    Example,
    Report,
    Row,
    batch_seed,
    edit_padded,
    means,
)
from regionedit_jax.worlds import edits, render, scenes

METRICS = [
    ("iou", "IoU", "↑"),
    ("clip_dir", "CLIPdir", "↑"),
    ("clip_out", "CLIPout", "↑"),
    ("clip_img", "CLIPimg", "↑"),
    ("l1", "L1", "↓"),
    ("mask_area", "mask area", ""),
]
KEYS = [key for key, _, _ in METRICS]
LOCAL_KINDS = ("local", "texture", "add", "remove")  # edits of one object
LOCAL_GROUP = "local kinds"
METHODS = [
    ("ours", "ours (predicted region)"),
    ("whole", "whole image"),
    ("random_box", "random box"),
    ("clip_patches", "CLIP patches"),
    ("truth", "true mask (upper bound)"),
]
BASELINES = tuple(key for key, _ in METHODS[1:])
NOTES = [
    "IoU: the repainted mask against the edit's true mask (the pixels an ideal editor repaints); an "
    'open-place add ("add a red star") accepts any free cell and scores its best alternative.',
    "Baselines repaint their mask through the same Editor path and seed as ours "
    "(`edit_batch(masks=...)`): they differ from ours only by the mask.",
    "random box: a square of the mean true area of the row's kind over the n test edits, at a "
    "uniformly random position drawn from (seed, row).",
    'CLIP patches: the instruction\'s object phrase ("the striped red circle" -> "a striped red '
    'circle"; background edits: "a <source colour> background"; no object (global, style): the whole '
    "image), embedded by the metric CLIP's text tower, against the source's CLIP patch tokens by cosine; "
    "the patches at or above the midpoint of the image's least and greatest cosine, upsampled to pixels "
    "(nearest).",
    "true mask: the first acceptable true mask (the upper bound).",
    f"{LOCAL_GROUP}: the mean over the rows of {', '.join(LOCAL_KINDS)}.",
]


def world_of(editor) -> scenes.WorldConfig:
    """The world of the editor's ``config.generator.oracle`` options (any generator), else the default."""
    from regionedit_jax.generators import oracle

    return oracle.world(editor.config.generator.get("oracle", None))


def source_image(edit: edits.Edit, position: int, world: scenes.WorldConfig, split: str = "test") -> np.ndarray:
    """The edit's source as the records render it (``ShapesSource``) -> [S, S, 3] uint8."""
    key = jax.random.fold_in(jax.random.PRNGKey(edits.SPLITS.index(split)), position)
    return render.render_scene(edit.source, key, world)


@functools.lru_cache(maxsize=8)
def _object_pattern(world: scenes.WorldConfig) -> re.Pattern[str]:
    def words(names):
        return "|".join(re.escape(w) for w in sorted(names, key=len, reverse=True))

    return re.compile(
        rf"\b(?:the|an?) ((?:(?:{words(world.size_names)}) )?(?:(?:{words(world.patterns)}) )?"
        rf"(?:(?:{words(world.colour_names)}) )?(?:{words(world.shapes)})\b"
        rf"(?: (?:{words(scenes.cell_phrases(world.grid))}))?)"
    )


def clip_phrase(instruction: str, source_caption: str, world: scenes.WorldConfig) -> str | None:
    """What ``clip_patches`` looks for: the instruction's first object phrase with an indefinite article
    ("make the striped red circle blue" -> "a striped red circle"), "a <colour> background" with the
    source's background colour for background edits, None without an object (global and style edits)."""
    text = " ".join(instruction.lower().split())
    if re.search(r"\bbackground\b", text):
        colour = scenes.parse(source_caption, world).background
        return f"{scenes.article(colour)} {colour} background"
    match = _object_pattern(world).search(text)
    return None if match is None else f"{scenes.article(match[1])} {match[1]}"


def random_box(area: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """A square of about ``area`` (a fraction of the image) at a random position -> bool [size, size]."""
    side = int(np.clip(round(np.sqrt(area) * size), 1, size))
    top, left = rng.integers(0, size - side + 1, 2)
    mask = np.zeros((size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


@functools.partial(jax.jit, static_argnums=0)
def _patch_cosines(clip: Any, params: Any, images: jax.Array, texts: jax.Array) -> jax.Array:
    """[B, S, S, 3] uint8 and [B, d] normalised texts -> [B, N] cosine of every CLIP patch token."""
    patches = clip.encode_image(params, images).patches
    patches = patches / jnp.maximum(jnp.linalg.norm(patches, axis=-1, keepdims=True), 1e-8)
    return jnp.einsum("bnd,bd->bn", patches, texts)


def patch_masks(cosines: np.ndarray, grid: int, size: int) -> np.ndarray:
    """[B, grid * grid] cosines -> bool [B, size, size]: the patches at or above the midpoint of each
    image's least and greatest cosine, upsampled to pixels (nearest)."""
    middle = (cosines.min(1, keepdims=True) + cosines.max(1, keepdims=True)) / 2
    chosen = (cosines >= middle).reshape(-1, grid, grid)
    index = (np.arange(size) * grid) // size
    return chosen[:, index][:, :, index]


def colour_map(probs: np.ndarray) -> np.ndarray:
    """[H, W] values in [0, 1] -> [H, W, 3] uint8 (viridis)."""
    from matplotlib import colormaps

    return (colormaps["viridis"](np.clip(probs, 0, 1))[..., :3] * 255).round().astype(np.uint8)


class Shapes(Evaluator):
    """The shapes world's test edits (``config.evals.<name>.type = "shapes"``); ``examples`` is rows per kind."""

    type: ClassVar[str] = "shapes"
    OPTIONS: ClassVar[dict[str, Any]] = {
        **{k: v for k, v in COMMON_OPTIONS.items() if k != "dataset"},  # split "train" measures fitting
        "examples": 2,
        "n": 350,  # held-out test edits, kinds round-robin (350: 50 per kind)
        "world_seed": 0,  # which test edits
        "threshold": 0.0,  # the method's mask threshold (0: the Editor's config.region.threshold)
        "baselines": True,  # also run whole, random_box, clip_patches and truth
    }

    def __init__(self, name: str | None = None, towers: dict[str, Any] | None = None, **options):
        super().__init__(name, towers, **options)
        o = self.options
        if o["split"] not in edits.SPLITS:
            raise ValueError(f"config.evals.{self.name}.split must be one of {edits.SPLITS}; got {o['split']!r}.")
        if o["n"] < 1 or o["world_seed"] < 0 or not 0 <= o["threshold"] < 1:
            raise ValueError(
                f"config.evals.{self.name}: n must be positive, world_seed >= 0 and threshold in "
                f"[0, 1) (0: the Editor's); got n={o['n']}, world_seed={o['world_seed']}, "
                f"threshold={o['threshold']}."
            )
        self._edits: dict[scenes.WorldConfig, list[edits.Edit]] = {}

    def test_edits(self, world: scenes.WorldConfig) -> list[edits.Edit]:
        """The n test edits of a world (made once)."""
        if world not in self._edits:
            self._edits[world] = edits.examples(
                self.options["split"], self.options["n"], self.options["world_seed"], world
            )
        return self._edits[world]

    def evaluate(self, editor=None, *, workdir=None, predictions=None, limit=None, progress=False) -> Report:
        if predictions is not None or editor is None:
            raise ValueError(
                f"{self.name}: the shapes evaluator edits with an Editor (its baselines repaint "
                "through it); it cannot score a predictions folder."
            )
        world, o = world_of(editor), self.options
        cache = self._cache(workdir, editor, None)
        test = self.test_edits(world)
        count = self._limit(limit, len(test))
        ids = [f"{i:05d}" for i in range(count)]
        areas = {
            kind: float(np.mean([e.truth.mean() for e in test if e.kind == kind]))
            for kind in edits.KINDS
            if any(e.kind == kind for e in test)
        }
        methods = ["ours"] + (list(BASELINES) if o["baselines"] else [])
        threshold = o["threshold"] or None
        scorer, size = self.scorer(), o["batch_size"]

        def compute(batch: int, positions: list[int]) -> list[Row]:
            rows = [test[p] for p in positions]
            sources = [source_image(e, p, world, self.options["split"]) for e, p in zip(rows, positions, strict=True)]
            texts = ([e.instruction for e in rows], [e.source_caption for e in rows], [e.target_caption for e in rows])
            seed = batch_seed(o["seed"], batch)
            ours = edit_padded(editor, sources, *texts, seed, size, threshold=threshold)
            masks, edited = {"ours": [r.mask for r in ours]}, {"ours": [r.image for r in ours]}
            phrases = [clip_phrase(e.instruction, e.source_caption, world) for e in rows]
            if o["baselines"]:
                for name, given in self._baseline_masks(rows, positions, sources, phrases, areas, world).items():
                    masks[name] = given
                    edited[name] = [r.image for r in edit_padded(editor, sources, *texts, seed, size, masks=given)]
            k = len(methods)
            scores = scorer.emu_edit(sources * k, [x for m in methods for x in edited[m]], texts[1] * k, texts[2] * k)
            out = []
            for i, (p, e) in enumerate(zip(positions, rows, strict=True)):
                per = {}
                for j, m in enumerate(methods):
                    per[m] = {
                        "iou": edits.score_iou(masks[m][i], e),
                        "mask_area": float(masks[m][i].mean()),
                        **{key: float(scores[key][j * len(rows) + i]) for key in KEYS[1:5]},
                    }
                record = {
                    "index": p,
                    "kind": e.kind,
                    "instruction": e.instruction,
                    "source_caption": e.source_caption,
                    "target_caption": e.target_caption,
                    "open_place": e.open_place,
                    "alternatives": int(e.truth.shape[0]),
                    "true_area": float(e.truth.mean()),
                    "clip_phrase": phrases[i],
                    "scores": per,
                }
                probs = (np.clip(ours[i].probs, 0, 1) * 255).round().astype(np.uint8)
                out.append((ids[p], record, {"": ours[i].image, "mask": ours[i].mask, "probs": probs}))
            return out

        records, timing = self._loop(ids, cache, compute, progress)
        values = summarise(records, methods)
        groups = {
            kind: {**values["ours"][kind], "rows": float(sum(r["kind"] == kind for r in records))}
            for kind in edits.KINDS
            if kind in values["ours"]
        }
        comparison = {
            "methods": [[key, label] for key, label in METHODS if key in methods],
            "values": values,
            "tables": [
                {
                    "title": "IoU with the true edit mask ↑, per kind",
                    "metric": "iou",
                    "groups": [*edits.KINDS, LOCAL_GROUP, "overall"],
                },
                {
                    "title": "Edit metrics against the source, overall",
                    "group": "overall",
                    "metrics": [
                        ["clip_dir", "CLIPdir ↑"],
                        ["clip_out", "CLIPout ↑"],
                        ["clip_img", "CLIPimg ↑"],
                        ["l1", "L1 ↓"],
                        ["mask_area", "mask area"],
                    ],
                },
            ],
            "notes": NOTES if o["baselines"] else NOTES[:1],
        }
        info = {
            **self._metric_info(),
            **timing,
            "system": "ours",
            "comparison": comparison,
            "world": {"image_size": world.image_size, "grid": world.grid, "max_objects": world.max_objects},
            "n": o["n"],
            "world_seed": o["world_seed"],
            "generator": editor.config.generator.name,
            "threshold": o["threshold"] or float(editor.config.region.threshold),
            "captions": "the world's source and target captions (no describer runs)",
            "mean_true_area": {kind: round(area, 4) for kind, area in areas.items()},
        }
        examples = self._examples(test, ids, cache, world)
        return Report(
            self.name,
            f"Shapes world test ({world.image_size}px, {world.grid}x{world.grid} grid)",
            values["ours"]["overall"],
            len(records),
            METRICS,
            {},
            groups,
            info,
            examples,
        )

    # ----------------------------------------------------------------------------- helpers

    def _baseline_masks(self, rows, positions, sources, phrases, areas, world) -> dict[str, list[np.ndarray]]:
        """Every baseline's mask of each row (module docstring) -> name -> [bool [S, S]]."""
        s = world.image_size
        boxes = [
            random_box(areas[e.kind], s, np.random.default_rng([self.options["seed"], p]))
            for e, p in zip(rows, positions, strict=True)
        ]
        return {
            "whole": [np.ones((s, s), bool) for _ in rows],
            "random_box": boxes,
            "clip_patches": self._clip_patches(sources, phrases, s),
            "truth": [e.truth[0] for e in rows],
        }

    def _clip_patches(self, sources: list[np.ndarray], phrases: list[str | None], size: int) -> list[np.ndarray]:
        clip, n = self.scorer().clip, len(sources)
        texts = self.scorer().text_features([p or "" for p in phrases])
        pad = self.options["batch_size"] - n
        cosines = np.asarray(
            _patch_cosines(
                clip,
                clip.params,
                np.stack(sources + sources[-1:] * pad),
                np.concatenate([texts, texts[-1:].repeat(pad, 0)]),
            )
        )[:n]
        found = patch_masks(cosines, clip.grid, size)
        return [found[i] if phrases[i] else np.ones((size, size), bool) for i in range(n)]

    def _examples(self, test, ids, cache, world) -> list[Example]:
        """``examples`` rows per kind: source | true mask | probability | predicted mask | edited."""
        out = []
        for kind in edits.KINDS:
            for p in [p for p in range(len(ids)) if test[p].kind == kind][: self.options["examples"]]:
                edited, mask, probs = (cache.image(ids[p], name) for name in ("", "mask", "probs"))
                if edited is None:  # no workdir: nothing on disk to draw
                    return out
                source, record = source_image(test[p], p, world, self.options["split"]), cache.record(ids[p])
                panels = [
                    ("source", source),
                    ("true mask", overlay(source, test[p].truth.any(0))),
                    ("probability", colour_map(probs[..., 0] / 255.0)),
                    ("predicted mask", overlay(source, mask)),
                    ("edited", edited),
                ]
                text = f"[{kind}] {record['instruction']} (IoU {record['scores']['ours']['iou']:.2f})"
                out.append(Example(source, mask, edited, text, region_label="predicted mask", panels=panels))
        return out


def summarise(records: list[dict[str, Any]], methods: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean scores -> method -> group ("overall", each kind present, ``LOCAL_GROUP``) -> metric."""
    groups = {"overall": records}
    for kind in edits.KINDS:
        if any(r["kind"] == kind for r in records):
            groups[kind] = [r for r in records if r["kind"] == kind]
    local = [r for r in records if r["kind"] in LOCAL_KINDS]
    if local:
        groups[LOCAL_GROUP] = local
    return {m: {g: means([r["scores"][m] for r in rows], KEYS) for g, rows in groups.items()} for m in methods}
