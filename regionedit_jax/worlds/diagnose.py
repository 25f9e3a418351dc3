"""Which loss term pulls the region where: the straight-through gradient, measured against ground truth.

Through the straight-through composite the region gets, for every loss term L,

  dL/dm(x) = sum_c (G(x) - I_src(x))_c * dL/dI_edit(x)_c          (DESIGN §1)

so ``-dL/dm`` is how strongly L wants pixel x repainted (> 0: grow the region there, < 0:
shrink it). This module evaluates that map for each CLIP term (Eq.7-9) on held-out edits of
the shapes world, at two points: the empty mask (I_edit = I_src: where does each term want to
start?) and the full mask (I_edit = G: where does it want to stop?), and reports the mean pull
inside the true region and outside it, per edit kind. A term that points the region at the
truth pulls harder inside than outside; a term whose pull is negative everywhere only ever
shrinks the region (it rewards an empty mask).

A last table scores the objective itself, with no gradient: Eq.7 + Eq.8 + Eq.9 (and the area
prior), weighted as in ``config.loss``, of the oracle's G composited through fixed masks (empty,
the truth, the truth eroded or dilated, the whole image), averaged per kind. If the truth
scores best but training does not reach it, the optimiser is what fails, not the objective.

A mean can point the right way while single examples do not, so it also scores each factor of
the pull as a mask, by IoU with the truth: where the generator's image differs from the
source (|G - I_src| > 0.15, summed over channels), and where the total pull at the empty
mask is > 0. The first is what the oracle's fresh background sample leaves of the edit; the
second adds how precisely CLIP's pixel gradient points.

  python -m regionedit_jax.worlds.diagnose --config=configs/shapes.py [--n 70] [--out pulls.md] [--same_draw]
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax import generators, losses
from regionedit_jax.model import composite
from regionedit_jax.worlds import edits, render, scenes

TERMS = ("clip", "direction", "structure")
DIFFERS = 0.15  # |G - I_src| summed over channels above which a pixel counts as changed
MASKS = ("empty", "truth", "eroded 1 px", "eroded 2 px", "dilated 4 px", "whole image")


def _dilate(masks: np.ndarray, pixels: int, outside: bool = False) -> np.ndarray:
    """bool [B, S, S] grown by ``pixels`` steps of its 4-neighbourhood; ``outside``: the value beyond the border."""
    for _ in range(pixels):
        padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)), constant_values=outside)
        masks = masks | padded[:, :-2, 1:-1] | padded[:, 2:, 1:-1] | padded[:, 1:-1, :-2] | padded[:, 1:-1, 2:]
    return masks


def fixed_masks(truth: np.ndarray) -> dict[str, np.ndarray]:
    """The masks of ``MASKS`` for true masks bool [B, S, S]."""
    return {
        "empty": np.zeros_like(truth),
        "truth": truth,
        "eroded 1 px": ~_dilate(~truth, 1, outside=True),
        "eroded 2 px": ~_dilate(~truth, 2, outside=True),
        "dilated 4 px": _dilate(truth, 4),
        "whole image": np.ones_like(truth),
    }


def objective(
    clip, clip_params, weights: losses.LossWeights, source, source_features, generated, mask, text_source, text_target
):
    """Per row [B]: beta (l1 Eq.7 + l2 Eq.8 + l3 Eq.9) + area * mean(mask) of the composite with ``mask``
    [B, S, S]; ``source_features``: the source's ``ImageFeatures``, encoded once for every mask."""
    edit = clip.encode_image(clip_params, composite(mask, generated, source))
    row = lambda fn, *arrays: jax.vmap(lambda *a: fn(*(x[None] for x in a)))(*arrays)
    direction = lambda e, s, tt, ts: losses.directional(e, s, tt, ts, None, weights.direction_floor)
    terms = (
        weights.clip * row(losses.clip_guidance, edit.cls, text_target)
        + weights.direction * row(direction, edit.cls, source_features.cls, text_target, text_source)
        + weights.structure * row(losses.structure, edit.patches, source_features.patches)
    )
    return weights.beta * terms + weights.area * mask.mean(axis=(1, 2))


def pull_maps(
    clip,
    clip_params,
    generator,
    source: jax.Array,
    generated: jax.Array,
    mask: jax.Array,
    text_source: jax.Array,
    text_target: jax.Array,
    floor: float = 0.0,
) -> dict[str, jax.Array]:
    """-dL/dm [B, S, S] for each term of ``TERMS`` at the composite with ``mask`` [B, S, S]."""
    src = clip.encode_image(clip_params, source)

    def term_losses(edited):
        e = clip.encode_image(clip_params, edited)
        changed = jnp.any(edited != source, axis=(1, 2, 3))
        return {
            "clip": losses.clip_guidance(e.cls, text_target),
            "direction": losses.directional(e.cls, src.cls, text_target, text_source, changed, floor),
            "structure": losses.structure(e.patches, src.patches),
        }

    edited = composite(mask, generated, source)
    out = {}
    for name in TERMS:
        grad = jax.grad(lambda x, n=name: term_losses(x)[n] * x.shape[0])(edited)  # per row, not per batch
        out[name] = -jnp.sum((generated - source) * grad, axis=-1)
    return out


def diagnose(
    config, n: int = 70, seed: int = 0, towers: dict[str, Any] | None = None, same_draw: bool = False
) -> dict[str, Any]:
    """Mean pull inside / outside the truth per term, kind and mask point (empty, full), and the
    IoU with the truth of where G differs from the source and where the pull is > 0 (``iou/...``).

    ``same_draw``: G is the target scene rendered with the source's own random draw instead of the
    generator's output, i.e. an oracle that re-synthesises nothing (what its re-draw costs)."""
    from regionedit_jax.towers import bundle

    towers = towers or bundle.load(config.towers, ("clip",) + generators.towers_for(config.generator), seed=config.seed)
    clip = towers["clip"]
    generator = generators.make(config.generator, towers)
    world = getattr(generator, "world", scenes.WorldConfig())
    examples = edits.examples("test", n, seed, world)
    fn = jax.jit(
        lambda s, g, m, ts, tt: pull_maps(
            clip, clip.params, generator, s, g, m, ts, tt, float(config.loss.direction_floor)
        )
    )
    score = jax.jit(functools.partial(objective, clip, clip.params, losses.LossWeights(**config.loss)))
    encode = jax.jit(lambda images: clip.encode_image(clip.params, images))
    rows: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    ious: dict[tuple[str, str], list[float]] = {}
    scores: dict[tuple[str, str], list[float]] = {}
    for start in range(0, n, 14):
        batch = examples[start : start + 14]
        tokens = np.stack([scenes.encode(e.source, world) for e in batch])
        key = jax.random.key(start)
        source = render.render(tokens, key, world)
        prompt = generator.tokenize([e.target_caption for e in batch])
        full = jnp.ones(source.shape[:3] + (1,))
        if same_draw:
            generated = render.render(np.stack([scenes.encode(e.target, world) for e in batch]), key, world)
        else:
            generated = generator.generate(generator.params, source, full, prompt, jax.random.key(start + 1), 1.0)
        t_src = clip.embed_texts([e.source_caption for e in batch])
        t_tgt = clip.embed_texts([e.target_caption for e in batch])
        truth = np.stack([e.truth.any(0) for e in batch])
        differs = np.abs(np.asarray(generated) - np.asarray(source)).sum(-1) > DIFFERS
        for point, value in (("empty", 0.0), ("full", 1.0)):
            maps = jax.device_get(fn(source, generated, jnp.full(truth.shape, value), t_src, t_tgt))
            for name, pull in maps.items():
                for e, p, t in zip(batch, pull, truth, strict=True):
                    inside = float(p[t].mean()) if t.any() else 0.0
                    outside = float(p[~t].mean()) if (~t).any() else 0.0
                    rows.setdefault((point, name, e.kind), []).append((inside, outside))
            if point == "empty":
                total = sum(maps.values())
                for e, d, p in zip(batch, differs, total, strict=True):
                    ious.setdefault(("differs", e.kind), []).append(edits.score_iou(d, e))
                    ious.setdefault(("pulls", e.kind), []).append(edits.score_iou(p > 0, e))
        features = encode(source)
        for name, mask in fixed_masks(np.stack([e.truth[0] for e in batch])).items():
            values = jax.device_get(score(source, features, generated, jnp.asarray(mask, jnp.float32), t_src, t_tgt))
            for e, v in zip(batch, values, strict=True):
                scores.setdefault((name, e.kind), []).append(float(v))
    result = {
        f"{point}/{name}/{kind}": {
            "inside": float(np.mean([r[0] for r in v])),
            "outside": float(np.mean([r[1] for r in v])),
        }
        for (point, name, kind), v in sorted(rows.items())
    }
    result |= {f"iou/{what}/{kind}": float(np.mean(v)) for (what, kind), v in sorted(ious.items())}
    return result | {f"objective/{name}/{kind}": float(np.mean(v)) for (name, kind), v in sorted(scores.items())}


def _table(title: str, first: str, rows: list[tuple[str, list[str]]], kinds: list[str]) -> list[str]:
    """A Markdown table under a heading: one row per (label, cells), one column per kind."""
    head = [f"### {title}", "", f"| {first} | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    return head + [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows] + [""]


def markdown(result: dict[str, Any]) -> str:
    """The pull tables (rows = terms, cells = pull inside / outside x1e3), then the pull as a mask
    and the objective of fixed masks; columns = kinds."""
    points = sorted({k.split("/")[0] for k in result} - {"iou", "objective"})
    kinds = [k for k in edits.KINDS if any(key.endswith("/" + k) for key in result)]
    lines = []
    for point in points:
        cell = lambda v: f"{v['inside'] * 1e3:+.2f} / {v['outside'] * 1e3:+.2f}"
        rows = [(term, [cell(result[f"{point}/{term}/{kind}"]) for kind in kinds]) for term in TERMS]
        lines += _table(f"Pull at the {point} mask (-dL/dm x 1e3, inside truth / outside)", "term", rows, kinds)
    if any(k.startswith("iou/") for k in result):
        labels = {"differs": f"G differs from the source (> {DIFFERS})", "pulls": "total pull > 0, empty mask"}
        rows = [(label, [f"{result[f'iou/{what}/{kind}']:.2f}" for kind in kinds]) for what, label in labels.items()]
        lines += _table("What the straight-through gradient sees, as a mask (IoU with the truth)", "mask", rows, kinds)
    if any(k.startswith("objective/") for k in result):
        best = {kind: min(result[f"objective/{m}/{kind}"] for m in MASKS) for kind in kinds}
        cell = lambda v, kind: f"**{v:.3f}**" if v == best[kind] else f"{v:.3f}"
        rows = [(name, [cell(result[f"objective/{name}/{kind}"], kind) for kind in kinds]) for name in MASKS]
        title = "The objective of fixed masks (Eq.7-9 + area prior, mean per kind; lower is better)"
        lines += _table(title, "mask", rows, kinds)
    return "\n".join(lines)


def main(argv=None) -> None:
    from absl import app, flags

    from regionedit_jax import cli, outputs

    config_flag = cli.define_config("configs/shapes.py")
    n_flag = flags.DEFINE_integer("n", 70, "Held-out edits (balanced over the kinds).")
    out_flag = flags.DEFINE_string("out", "", "Also write the tables to this Markdown file.")
    same_flag = flags.DEFINE_bool("same_draw", False, "G: the target drawn with the source's own randomness.")

    @cli.one_line_errors
    def run(argv):
        del argv
        text = markdown(diagnose(config_flag.value, n_flag.value, same_draw=same_flag.value))
        print(text)
        if out_flag.value:
            outputs.write_text(out_flag.value, text + "\n")

    app.run(run, argv, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    main()
