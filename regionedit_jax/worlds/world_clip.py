"""A CLIP for the shapes world, saved in the Hugging Face CLIP layout.

  python -m regionedit_jax.worlds.world_clip --out DIR [--steps N --batch_size B --seed S ...]

writes ``DIR/`` with ``config.json`` (a ``CLIPConfig`` whose vision ``image_size`` is the
world's, so images are never resized), ``model.safetensors`` (PyTorch key layout), the real
CLIP BPE tokenizer files, ``preprocessor_config.json`` and ``world_clip.json`` (how it was
trained, and the zero-shot table); ``towers.clip.load(DIR)`` loads it like any CLIP. Training
goes through the tower's own apply functions: a random folder is written by
``towers.tiny.write_clip``, loaded with ``clip.load``, its params trained and written back with
the same converter. One jitted step renders fresh train scenes and minimises

  * the symmetric InfoNCE of CLS embeddings and captions (CLIP's learnable logit scale), with
    one-attribute changes of each caption as extra negatives, over batches whose scenes come
    in groups sharing their background, texture, lighting and style (so objects must count);
  * plus an InfoNCE of each object's patch tokens (averaged over its footprint) against its
    phrase ("a small red circle at the top left"), so patch tokens carry local meaning.

``zero_shot`` scores held-out test scenes: the true caption against the captions that differ
only in one attribute's value, and each object's patch tokens against its changed phrases.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from regionedit_jax import outputs
from regionedit_jax.towers import clip, tiny
from regionedit_jax.worlds import edits, render, scenes

FORMAT = 1
MANIFEST = "world_clip.json"
STEPS, BATCH_SIZE = 1200, 16  # about 3 minutes on 2 CPU cores with the default sizes
OBJECT_ATTRIBUTES = ("shape", "colour", "size", "pattern", "position", "presence")
SCENE_ATTRIBUTES = ("background", "texture", "lighting", "style")
ATTRIBUTES = OBJECT_ATTRIBUTES + SCENE_ATTRIBUTES
PATCH_ATTRIBUTES = ("shape", "colour", "size", "pattern")  # scored on an object's patch tokens too
PATCH_KEYS = tuple(f"patch/{a}" for a in PATCH_ATTRIBUTES)
_MAX_LOGIT_SCALE = float(np.log(100.0))  # CLIP's clamp
_PHRASE_LENGTH = 16  # text positions of one object phrase (at most 14 tokens)


class WorldClipFolderError(ValueError):
    """The output folder holds something this module did not write (never touched)."""


@dataclasses.dataclass(frozen=True)
class ClipSizes:
    """The CLIP's shape: both towers and the joint space are ``width`` wide."""

    width: int = 48
    vision_layers: int = 2
    text_layers: int = 2
    heads: int = 2  # few heads: attention over 257 tokens dominates the cost on CPU
    patch_size: int = 4  # 64 px -> 16 x 16 patch tokens
    positions: str = "random"  # the vision position embeddings' init: "random" or "sincos"
    position_scale: float = 3.0  # the sin-cos init's amplitude

    def config(self, image_size: int):
        """The CLIP ``config.json`` (transformers' layout) for images of ``image_size`` pixels."""
        if image_size % self.patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")
        if self.positions not in ("random", "sincos"):
            raise ValueError(f"positions must be 'random' or 'sincos', got {self.positions!r}")
        if self.positions == "sincos" and self.width % 4:
            raise ValueError(f"sin-cos positions need a width divisible by 4, got {self.width}")
        return tiny.clip_config(
            width=self.width,
            mlp=4 * self.width,
            heads=self.heads,
            text_layers=self.text_layers,
            vision_layers=self.vision_layers,
            image_size=image_size,
            patch_size=self.patch_size,
        )


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the CLIP is trained (besides steps, batch size and seed)."""

    lr: float = 3e-3  # peak AdamW learning rate (linear warmup, cosine decay to 5%)
    warmup: float = 0.05  # share of the steps
    weight_decay: float = 0.1  # on kernels only
    hard_negatives: int = 1  # one-attribute changes of each caption, as extra negatives
    group: int = 4  # scenes in a row that share background, texture, lighting and style
    region_weight: float = 1.0  # weight of the object-phrase InfoNCE on patch tokens
    pairs: bool = True  # every other scene is a one-attribute change of the one before it
    noise: float = 0.02  # std of the pixel noise of the training renders
    jitter: float = 0.03  # std of their colour jitter
    presence: bool = False  # pairs and negatives also add or remove an object (see variants)

    def attributes(self) -> tuple[str, ...]:
        """What a pair or a hard negative may change."""
        return tuple(a for a in ATTRIBUTES if self.presence or a != "presence")


def sincos_positions(grid: int, width: int, scale: float) -> np.ndarray:
    """float32 [1 + grid * grid, width]: the class token's row zero, then each patch's 2-D sin-cos
    code (row in the first half of the channels, column in the second) times ``scale``.

    A tiny ViT trained from scratch with random position embeddings barely learns where things
    are; starting from this code it does (the README's shapes section has the numbers)."""
    quarter = width // 4
    frequencies = 1.0 / 100.0 ** (np.arange(quarter) / quarter)
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    code = lambda v: np.concatenate([np.sin(v.reshape(-1, 1) * frequencies), np.cos(v.reshape(-1, 1) * frequencies)], 1)  # noqa: E731
    patches = np.concatenate([code(rows), code(cols)], axis=1)
    return (scale * np.concatenate([np.zeros((1, width)), patches])).astype(np.float32)


def initial_params(tower: clip.Clip, sizes: ClipSizes) -> Any:
    """The random CLIP's params, with the vision position embeddings ``sizes.positions`` says."""
    params = tower.params
    if sizes.positions == "sincos":
        embeddings = dict(params["vision_model"]["embeddings"])
        embeddings["position_embedding"] = {
            "embedding": jnp.asarray(sincos_positions(tower.grid, sizes.width, sizes.position_scale))
        }
        params = {**params, "vision_model": {**params["vision_model"], "embeddings": embeddings}}
    return params


# ------------------------------------------------------------------------ scenes and captions


def variants(scene: scenes.Scene, attribute: str, cfg: scenes.WorldConfig, index: int = 0) -> list[scenes.Scene]:
    """Every scene that differs from ``scene`` only in ``attribute``'s value (itself excluded).

    Object attributes change object ``index`` (in the scene's order); ``position`` moves it to
    any free cell; ``presence`` removes it (when another object stays) or adds a copy of it, in
    any colour, in any free cell (the add and remove edits, as pairs the CLIP must tell apart).
    """
    if attribute in SCENE_ATTRIBUTES:
        names = {
            "background": cfg.background_names,
            "texture": cfg.textures,
            "lighting": cfg.lighting_names,
            "style": cfg.style_names,
        }[attribute]
        return [dataclasses.replace(scene, **{attribute: v}) for v in names if v != getattr(scene, attribute)]
    if attribute not in OBJECT_ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; expected one of {ATTRIBUTES}")
    obj = scene.objects[index]
    if attribute == "presence":
        out = []
        if len(scene.objects) > 1:
            out.append(dataclasses.replace(scene, objects=scene.objects[:index] + scene.objects[index + 1 :]))
        if len(scene.objects) < cfg.max_objects:
            for cell in scene.free_cells(cfg):
                for colour in cfg.colour_names:
                    added = dataclasses.replace(obj, cell=cell, colour=colour)
                    out.append(dataclasses.replace(scene, objects=scene.objects + (added,)))
        return out
    if attribute == "position":
        field, values = "cell", scene.free_cells(cfg)
    else:
        field = attribute
        values = {"shape": cfg.shapes, "colour": cfg.colour_names, "size": cfg.size_names, "pattern": cfg.patterns}[
            attribute
        ]
    out = []
    for v in values:
        if v != getattr(obj, field):
            objects = list(scene.objects)
            objects[index] = dataclasses.replace(obj, **{field: v})
            out.append(dataclasses.replace(scene, objects=tuple(objects)))
    return out


def hard_negative(
    rng: np.random.Generator,
    scene: scenes.Scene,
    cfg: scenes.WorldConfig,
    split: str = "train",
    attributes: Sequence[str] = ATTRIBUTES,
) -> scenes.Scene:
    """A random scene of ``split`` that differs from ``scene`` in one of ``attributes``, of it or
    of one object (so training never sees a test scene, not even as a negative)."""
    for _ in range(1000):
        attribute = attributes[int(rng.integers(len(attributes)))]
        index = int(rng.integers(len(scene.objects)))
        options = [v for v in variants(scene, attribute, cfg, index) if edits.scene_split(v, cfg) == split]
        if options:
            return options[int(rng.integers(len(options)))]
    raise ValueError(f"no one-attribute change of {scenes.caption(scene, cfg)!r} is a {split} scene")


def sample_scenes(
    rng: np.random.Generator, n: int, cfg: scenes.WorldConfig, split: str, group: int = 1
) -> list[scenes.Scene]:
    """``n`` random scenes of the ``train`` or ``test`` split (``edits.scene_split``).

    With ``group > 1``, each run of ``group`` consecutive scenes shares its first scene's
    background, texture, lighting and style (every scene keeps the world's distribution; only
    scenes of one group are alike, so telling them apart takes their objects).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    out: list[scenes.Scene] = []
    while len(out) < n:
        scene = scenes.sample_scene(rng, cfg)
        if group > 1 and len(out) % group:
            lead = out[len(out) - len(out) % group]
            scene = dataclasses.replace(scene, **{f: getattr(lead, f) for f in SCENE_ATTRIBUTES})
        if edits.scene_split(scene, cfg) == split:
            out.append(scene)
    return out


class Batch(NamedTuple):
    tokens: np.ndarray  # [B, T] int32 structured scene tokens
    captions: list[str]  # [B]
    negatives: list[str]  # [B * K]: hard negatives, K per scene, scene-major
    phrases: list[str]  # [B * max_objects]: each object slot's phrase ("" for empty slots)


def sample_batch(
    rng: np.random.Generator,
    cfg: scenes.WorldConfig,
    n: int,
    hard_negatives: int = 0,
    group: int = 1,
    split: str = "train",
    pairs: bool = False,
    attributes: Sequence[str] = ATTRIBUTES,
) -> Batch:
    """``n`` fresh scenes (in groups sharing their background and global looks, see
    ``sample_scenes``), their captions and ``hard_negatives`` one-attribute changes of each.

    With ``pairs``, scene 2k+1 is a one-attribute change of scene 2k, rendered and captioned
    like any other: the images themselves then differ in a single attribute (hard negatives on
    the image side too), so the CLS embedding must encode every object, not the gist."""
    batch = sample_scenes(rng, (n + 1) // 2 if pairs else n, cfg, split, group)
    if pairs:
        batch = [s for scene in batch for s in (scene, hard_negative(rng, scene, cfg, split, attributes))][:n]
    negatives = [
        scenes.caption(hard_negative(rng, s, cfg, split, attributes), cfg) for s in batch for _ in range(hard_negatives)
    ]
    phrases = [
        scenes.object_phrase(s.objects[k], cfg) if k < len(s.objects) else ""
        for s in batch
        for k in range(cfg.max_objects)
    ]
    return Batch(
        np.stack([scenes.encode(s, cfg) for s in batch]), [scenes.caption(s, cfg) for s in batch], negatives, phrases
    )


# ------------------------------------------------------------------------------------ training


def same_text(texts: Sequence[str], b: int) -> np.ndarray:
    """bool [b, len(texts)]: text j equals text i (i < b) for j != i (a false negative of row i)."""
    values = np.asarray(texts, dtype=object)
    same = values[:b, None] == values[None, :]
    same[np.arange(b), np.arange(b)] = False
    return same


def contrastive_loss(
    image: jax.Array,
    text: jax.Array,
    logit_scale: jax.Array,
    valid: jax.Array | None = None,
    same: jax.Array | None = None,
) -> jax.Array:
    """Symmetric InfoNCE. image [B, d], text [B + extra, d] (both L2-normalised; rows B.. are
    extra negatives for the images); ``valid`` [B] bool drops pairs (rows and columns);
    ``same`` [B, B + extra] bool (``same_text``) drops false negatives, the columns whose text
    is row i's own -> scalar."""
    b = image.shape[0]
    valid = jnp.ones(b, bool) if valid is None else valid
    logits = jnp.exp(jnp.minimum(logit_scale, _MAX_LOGIT_SCALE)) * image @ text.T  # [B, B + extra]
    if same is not None:
        logits = jnp.where(same, -1e9, logits)
    columns = jnp.concatenate([valid, jnp.ones(text.shape[0] - b, bool)])
    labels = jnp.arange(b)
    to_text = optax.softmax_cross_entropy_with_integer_labels(jnp.where(columns, logits, -1e9), labels)
    to_image = optax.softmax_cross_entropy_with_integer_labels(jnp.where(valid, logits[:, :b].T, -1e9), labels)
    weights = valid / jnp.maximum(1, valid.sum())
    return jnp.sum((to_text + to_image) / 2 * weights)


def object_patch_weights(tokens: jax.Array, world_cfg: scenes.WorldConfig, grid: int) -> jax.Array:
    """Scene tokens [B, T] -> [B, max_objects, grid * grid]: each object's footprint share per
    patch, normalised to sum 1 (all zero for empty slots)."""
    masks = render.object_masks(tokens, world_cfg).astype(jnp.float32)  # [B, M, S, S]
    b, m, size, _ = masks.shape
    p = size // grid
    share = masks.reshape(b, m, grid, p, grid, p).mean((3, 5)).reshape(b, m, grid * grid)
    return share / jnp.maximum(share.sum(-1, keepdims=True), 1e-6)


def _loss(
    tower: clip.Clip, params, inputs: dict[str, jax.Array], key, world_cfg: scenes.WorldConfig, recipe: Recipe
) -> jax.Array:
    """The scene-caption InfoNCE + ``region_weight`` x the object-phrase InfoNCE on patch tokens."""
    images = render.render(inputs["tokens"], key, world_cfg, noise=recipe.noise, jitter=recipe.jitter)
    features = tower.encode_image(params, images)
    loss = contrastive_loss(
        features.cls,
        tower.encode_text(params, inputs["ids"], inputs["mask"]),
        params["logit_scale"],
        same=inputs["same"],
    )
    if recipe.region_weight:
        weights = object_patch_weights(inputs["tokens"], world_cfg, tower.grid)  # [B, M, N]
        regions = clip.l2_normalize(jnp.einsum("bmn,bnd->bmd", weights, features.patches))
        regions = regions.reshape(-1, regions.shape[-1])
        phrases = tower.encode_text(params, inputs["phrase_ids"], inputs["phrase_mask"])  # [B * M, d]
        valid = weights.reshape(regions.shape[0], -1).sum(-1) > 0
        loss = loss + recipe.region_weight * contrastive_loss(
            regions, phrases, params["logit_scale"], valid, inputs["phrase_same"]
        )
    return loss


def _inputs(tower: clip.Clip, batch: Batch, region_weight: float) -> dict[str, np.ndarray]:
    texts = batch.captions + batch.negatives
    ids, mask = tower.tokenize(texts)
    inputs = {"tokens": batch.tokens, "ids": ids, "mask": mask, "same": same_text(texts, len(batch.captions))}
    if region_weight:
        inputs["phrase_ids"], inputs["phrase_mask"] = tower.tokenizer(batch.phrases, _PHRASE_LENGTH)
        inputs["phrase_same"] = same_text(batch.phrases, len(batch.phrases)) & (np.asarray(batch.phrases) != "")
    return inputs


def _optimizer(steps: int, recipe: Recipe) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, recipe.lr, max(1, round(recipe.warmup * steps)), max(2, steps), end_value=0.05 * recipe.lr
    )
    decay = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731  kernels only
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params
    )
    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(schedule, b1=0.9, b2=0.98, eps=1e-6, weight_decay=recipe.weight_decay, mask=decay),
    )


def train(
    out_dir: str,
    world_cfg: scenes.WorldConfig,
    *,
    steps: int = STEPS,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    sizes: ClipSizes = ClipSizes(),
    recipe: Recipe = Recipe(),
    eval_scenes: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains a world CLIP and writes it to ``out_dir`` atomically; returns the run's summary.

    Each step samples ``batch_size`` fresh train scenes (numpy, seeded), renders them inside the
    jitted step and contrasts them with their captions (``Recipe`` says how). ``steps=0`` writes
    the random initial CLIP. ``eval_scenes > 0`` adds the zero-shot table to the summary.
    ``out_dir`` may be new, empty, or a folder this function wrote; anything else is refused
    with ``WorldClipFolderError`` before any work.
    """
    _check_out(out_dir)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".world-clip-", dir=parent)
    outputs.make_readable(tmp)
    try:
        start = time.perf_counter()
        tiny.write_clip(tmp, seed, sizes.config(world_cfg.image_size))
        tower = clip.load(tmp)
        tower = dataclasses.replace(tower, params=initial_params(tower, sizes))
        params, stats = _fit(tower, world_cfg, recipe, steps, batch_size, seed, progress)
        tiny.write_model(tmp, params, "transformers", "model")
        summary = {
            "format": FORMAT,
            "kind": "world_clip",
            "world": dataclasses.asdict(world_cfg),
            "sizes": dataclasses.asdict(sizes),
            "recipe": dataclasses.asdict(recipe),
            "steps": steps,
            "batch_size": batch_size,
            "seed": seed,
            **stats,
            "logit_scale": float(np.exp(np.minimum(np.asarray(params["logit_scale"]), _MAX_LOGIT_SCALE))),
        }
        if eval_scenes:
            summary["zero_shot"] = zero_shot(tmp, world_cfg, eval_scenes, seed)
        summary["total_seconds"] = round(time.perf_counter() - start, 2)
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, sort_keys=True)
            f.write("\n")
        _publish(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _fit(
    tower: clip.Clip,
    world_cfg: scenes.WorldConfig,
    recipe: Recipe,
    steps: int,
    batch_size: int,
    seed: int,
    progress: bool,
) -> tuple[Any, dict[str, float | None]]:
    """The training loop -> (trained params, stats): ``probe_loss_before``/``_after`` (the loss on
    one fixed batch of train scenes, rendered without noise), ``loss_first``, ``loss_final`` (mean
    of the last 5% of steps), ``train_seconds``, ``steps_per_second`` (after the compiling step)."""
    from tqdm import tqdm

    def draw(rng: np.random.Generator) -> Batch:
        return sample_batch(
            rng,
            world_cfg,
            batch_size,
            recipe.hard_negatives,
            recipe.group,
            pairs=recipe.pairs,
            attributes=recipe.attributes(),
        )

    probe = _inputs(tower, draw(np.random.default_rng([seed, 2])), recipe.region_weight)
    clean = dataclasses.replace(recipe, noise=0.0, jitter=0.0)
    probe_loss = jax.jit(lambda params: _loss(tower, params, probe, jax.random.key(seed), world_cfg, clean))
    params = tower.params
    stats: dict[str, float | None] = {"probe_loss_before": float(probe_loss(params))}
    if steps <= 0:
        return params, {
            **stats,
            "probe_loss_after": stats["probe_loss_before"],
            "loss_first": None,
            "loss_final": None,
            "train_seconds": 0.0,
            "steps_per_second": None,
        }
    optimizer = _optimizer(steps, recipe)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, inputs, key):
        loss, grads = jax.value_and_grad(_loss, argnums=1)(tower, params, inputs, key, world_cfg, recipe)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = jax.tree_util.tree_map(jnp.array, params)  # own copies: the step donates them
    opt_state = optimizer.init(params)
    rng, key = np.random.default_rng(seed), jax.random.key(seed)
    losses: list[jax.Array] = []
    begin = start = time.perf_counter()
    with tqdm(total=steps, unit="step", disable=not progress, dynamic_ncols=True) as bar:
        for i in range(steps):
            params, opt_state, loss = step(
                params, opt_state, _inputs(tower, draw(rng), recipe.region_weight), jax.random.fold_in(key, i)
            )
            losses.append(loss)
            if i == 0:  # the first step compiles: time from the second on
                loss.block_until_ready()
                start = time.perf_counter()
            if (i + 1) % 10 == 0 or i + 1 == steps:
                bar.set_postfix(
                    loss=f"{float(loss):.3f}", steps_per_s=f"{i / max(1e-9, time.perf_counter() - start):.2f}"
                )
            bar.update(1)
    end = time.perf_counter()
    losses_f = [float(x) for x in losses]
    return params, {
        **stats,
        "probe_loss_after": float(probe_loss(params)),
        "loss_first": losses_f[0],
        "loss_final": float(np.mean(losses_f[-max(1, steps // 20) :])),
        "train_seconds": round(end - begin, 2),
        "steps_per_second": round((steps - 1) / (end - start), 3) if steps > 1 else None,
    }


# ------------------------------------------------------------------------------ the out folder


def read_manifest(folder: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("kind") == "world_clip" else None


def _check_out(out: str) -> None:
    if not os.path.lexists(out):
        return
    if not os.path.isdir(out) or os.path.islink(out):
        raise WorldClipFolderError(f"world CLIP folder {out!r} exists and is not a folder; name a new folder.")
    if os.listdir(out) and read_manifest(out) is None:
        raise WorldClipFolderError(
            f"world CLIP folder {out!r} holds files this tool did not write "
            f"(no {MANIFEST}); it is left untouched. Name an empty or new folder."
        )


def _publish(tmp: str, out: str) -> None:
    """Moves the finished folder ``tmp`` to ``out``, replacing an empty or earlier world CLIP."""
    _check_out(out)
    if os.path.isdir(out):
        old = tempfile.mkdtemp(prefix=".world-clip-old-", dir=os.path.dirname(os.path.abspath(out)))
        os.replace(out, os.path.join(old, "previous"))
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# ----------------------------------------------------------------------------------- zero-shot


def zero_shot(
    folder: str, world_cfg: scenes.WorldConfig, n: int = 200, seed: int = 0, batch_size: int = 64
) -> dict[str, float]:
    """Zero-shot accuracy per attribute on ``n`` held-out test scenes, through ``clip.load(folder)``.

    Image level (CLS): for every scene and attribute (object attributes: every object of the
    scene), the true caption competes with all captions that differ only in that attribute's
    value. Patch level (``patch/<attr>`` for shape, colour, size, pattern): an object's patch
    tokens, averaged over its footprint, score its phrase ("a small red circle at the top left")
    against the phrases with another value. A trial is won when the truth scores strictly
    highest. Returns ``{key: accuracy, key + "/chance": mean 1 / candidates, key + "/trials":
    count}`` and ``mean`` and ``mean/chance`` over the image-level attributes.
    """
    tower = clip.load(folder)
    test = sample_scenes(np.random.default_rng([seed, 1]), n, world_cfg, "test")
    trials: dict[str, list[tuple[tuple[int, int], list[str]]]] = {k: [] for k in ATTRIBUTES + PATCH_KEYS}
    for k, scene in enumerate(test):
        true = scenes.caption(scene, world_cfg)
        for attribute in ATTRIBUTES:
            for index in range(len(scene.objects) if attribute in OBJECT_ATTRIBUTES else 1):
                others = {scenes.caption(v, world_cfg) for v in variants(scene, attribute, world_cfg, index)}
                if others - {true}:
                    trials[attribute].append(((k, -1), [true, *sorted(others - {true})]))
        for index, obj in enumerate(scene.objects):
            phrase = scenes.object_phrase(obj, world_cfg)
            for attribute in PATCH_ATTRIBUTES:
                others = {
                    scenes.object_phrase(v.objects[index], world_cfg)
                    for v in variants(scene, attribute, world_cfg, index)
                } - {phrase}
                if others:
                    trials[f"patch/{attribute}"].append(((k, index), [phrase, *sorted(others)]))
    cls, regions = _embed_images(
        tower, np.stack([scenes.encode(s, world_cfg) for s in test]), world_cfg, seed, batch_size
    )
    texts = sorted({c for group in trials.values() for _, t in group for c in t})
    text_emb = dict(zip(texts, _embed_texts(tower, texts, batch_size)))
    out: dict[str, float] = {}
    for key, group in trials.items():
        wins = []
        for (k, slot), candidates in group:
            scores = np.stack([text_emb[c] for c in candidates]) @ (cls[k] if slot < 0 else regions[k, slot])
            wins.append(bool(scores[0] > scores[1:].max()))
        out[key] = float(np.mean(wins)) if wins else float("nan")
        out[f"{key}/chance"] = float(np.mean([1 / len(c) for _, c in group])) if group else float("nan")
        out[f"{key}/trials"] = float(len(group))
    scored = [a for a in ATTRIBUTES if out[f"{a}/trials"]]
    out["mean"] = float(np.mean([out[a] for a in scored]))
    out["mean/chance"] = float(np.mean([out[f"{a}/chance"] for a in scored]))
    return out


def _padded_batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


def _embed_images(
    tower: clip.Clip, tokens: np.ndarray, world_cfg, seed: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scene tokens [n, T] -> normalised CLS embeddings [n, d] and footprint-averaged object
    patch tokens [n, max_objects, d] (normalised) of their noise-free renders."""

    def fn(params, tokens, key):
        features = tower.encode_image(params, render.render(tokens, key, world_cfg))
        weights = object_patch_weights(tokens, world_cfg, tower.grid)
        return features.cls, clip.l2_normalize(jnp.einsum("bmn,bnd->bmd", weights, features.patches))

    fn = jax.jit(fn)
    cls, regions = [], []
    for start, stop in _padded_batches(len(tokens), batch_size):
        chunk = np.zeros((batch_size, tokens.shape[1]), np.int32)
        chunk[: stop - start] = tokens[start:stop]
        chunk[stop - start :] = tokens[start]  # any valid scene pads the batch
        c, r = fn(tower.params, chunk, jax.random.key(seed + start))
        cls.append(np.asarray(c)[: stop - start])
        regions.append(np.asarray(r)[: stop - start])
    return np.concatenate(cls), np.concatenate(regions)


def _embed_texts(tower: clip.Clip, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Texts [n] -> normalised embeddings [n, d], in fixed-size batches (one compilation)."""
    fn = jax.jit(tower.encode_text)
    out = []
    for start, stop in _padded_batches(len(texts), batch_size):
        chunk = list(texts[start:stop]) + [texts[start]] * (batch_size - (stop - start))
        out.append(np.asarray(fn(tower.params, *tower.tokenize(chunk)))[: stop - start])
    return np.concatenate(out)


def format_table(result: dict[str, float]) -> str:
    """The zero-shot dict as a text table: attribute, accuracy, chance, trials."""
    lines = [f"{'attribute':<14} {'accuracy':>8} {'chance':>7} {'trials':>7}"]
    for key in ATTRIBUTES + ("mean",) + PATCH_KEYS:
        if key == "mean":
            lines.append(f"{'mean':<14} {result['mean']:>8.3f} {result['mean/chance']:>7.3f}")
        elif key in result:
            lines.append(
                f"{key:<14} {result[key]:>8.3f} {result[key + '/chance']:>7.3f} {int(result[key + '/trials']):>7d}"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ CLI


def _yes_no(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the CLIP into (new, empty or a world CLIP)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--batch_size", type=int, default=BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval_scenes", type=int, default=200, help="held-out test scenes for the zero-shot table")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    for group, defaults, help_ in ((ClipSizes, ClipSizes(), "model size"), (Recipe, Recipe(), "training recipe")):
        options = parser.add_argument_group(help_)
        for field in dataclasses.fields(group):
            default = getattr(defaults, field.name)
            kind = _yes_no if isinstance(default, bool) else type(default)
            options.add_argument(f"--{field.name}", type=kind, default=default)
    world = parser.add_argument_group("world")
    for name in ("image_size", "grid", "max_objects"):
        world.add_argument(f"--{name}", type=int, default=getattr(scenes.WorldConfig, name))
    args = vars(parser.parse_args(argv))
    pick = lambda cls: cls(**{f.name: args[f.name] for f in dataclasses.fields(cls)})  # noqa: E731
    world_cfg = scenes.WorldConfig(image_size=args["image_size"], grid=args["grid"], max_objects=args["max_objects"])
    try:
        summary = train(
            args["out"],
            world_cfg,
            steps=args["steps"],
            batch_size=args["batch_size"],
            seed=args["seed"],
            sizes=pick(ClipSizes),
            recipe=pick(Recipe),
            eval_scenes=args["eval_scenes"],
            progress=not args["no_progress"],
        )
    except WorldClipFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary["steps"]:
        print(
            f"world CLIP in {args['out']}: {summary['steps']} steps in {summary['train_seconds']:.0f} s "
            f"({summary['steps_per_second']} steps/s), final loss {summary['loss_final']:.3f}"
        )
    else:
        print(f"untrained world CLIP in {args['out']}")
    if "zero_shot" in summary:
        print(format_table(summary["zero_shot"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
