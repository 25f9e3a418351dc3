"""Edits of the shapes world, one per Emu Edit task type, with ground-truth edit masks.

  edit = examples("train", 1000, seed=0)[17]
  edit.instruction, edit.source, edit.target, edit.truth      # truth: bool [A, S, S]
  score_iou(predicted_mask, edit)

Kinds and their truth (the pixels an ideal editor repaints; footprints from `footprint_table`):

  local       an object's colour or shape changes (same cell)    old | new footprint
  texture     an object's pattern changes                        the object's footprint
  add         an object appears in a named free cell             the new footprint
              ... or, in "open" phrasings, in any free cell      one alternative per free cell
  remove      an object disappears                               the object's footprint
  background  the background colour and/or texture changes       every pixel no object covers
  global      the lighting changes                               the whole image
  style       the style changes                                  the whole image

Splits: about a third of every kind's phrasings (index % 3 == 2 in each list of `TEMPLATES`) are
test-only, and scenes are split by a hash of their tokens (a quarter go to test), so no test
scene or test phrasing ever appears in train. `examples` draws example i of a split from a
generator seeded by (seed, split, i), with kinds taken round-robin.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from regionedit_jax.worlds.render import footprint_table
from regionedit_jax.worlds.scenes import (
    ANYWHERE,
    Obj,
    Scene,
    WorldConfig,
    article,
    caption,
    cell_phrases,
    describe_object,
    encode,
    sample_scene,
)

KINDS = ("local", "texture", "add", "remove", "background", "global", "style")
SPLITS = ("train", "test")
TEST_SHARE = 4  # one scene in TEST_SHARE belongs to the test split

TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "local": {
        "colour": (
            "make {ref} {colour}",
            "change the colour of {ref} to {colour}",
            "paint {ref} {colour}",
            "turn {ref} {colour}",
            "recolour {ref} in {colour}",
            "colour {ref} {colour} instead",
        ),
        "shape": (
            "turn {ref} into a {shape}",
            "replace {ref} with {new}",
            "change {ref} into a {shape}",
            "make {ref} a {shape}",
            "swap {ref} for a {shape}",
            "reshape {ref} into a {shape}",
        ),
    },
    "texture": {
        "pattern": (
            "make {ref} {pattern}",
            "give {ref} a {pattern} pattern",
            "change the pattern of {ref} to {pattern}",
            "turn {ref} {pattern}",
            "let {ref} be {pattern}",
            "switch {ref} to a {pattern} look",
        )
    },
    "add": {
        "place": (
            "add {obj} {pos}",
            "put {obj} {pos}",
            "place {obj} {pos}",
            "draw {obj} {pos}",
            "insert {obj} {pos}",
            "there should be {obj} {pos}",
        ),
        "open": (
            "add {obj}",
            "put {obj} in the picture",
            "place {obj} somewhere",
            "draw {obj} anywhere",
            "include {obj}",
            "insert {obj} wherever it fits",
        ),
    },
    "remove": {
        "object": (
            "remove {ref}",
            "get rid of {ref}",
            "delete {ref}",
            "take away {ref}",
            "erase {ref}",
            "take {ref} out of the picture",
        )
    },
    "background": {
        "colour": (
            "make the background {bg}",
            "change the background to {bg}",
            "paint the background {bg}",
            "turn the background {bg}",
            "use a {bg} background",
            "give it a {bg} background",
        ),
        "texture": (
            "make the background {tex}",
            "give the background a {tex} texture",
            "change the background texture to {tex}",
            "turn the background {tex}",
            "use a {tex} background",
            "let the background be {tex}",
        ),
        "both": (
            "make the background {tex} {bg}",
            "change the background to {tex} {bg}",
            "replace the background with a {tex} {bg} one",
            "put everything on a {tex} {bg} background",
            "use a {tex} {bg} background",
            "switch to a {tex} {bg} background",
        ),
    },
    "global": {
        "lighting": (
            "make it {adj}",
            "show the scene {phrase}",
            "relight the scene {phrase}",
            "set the scene {phrase}",
            "make it look like it is {phrase}",
            "how would it look {phrase}",
        )
    },
    "style": {
        "style": (
            "turn it into {noun}",
            "make it {noun}",
            "redraw it {phrase}",
            "show the picture {phrase}",
            "render the image {phrase}",
            "convert the picture into {noun}",
        )
    },
}
LIGHTING_WORDS = {"night": "night", "sunset": "sunset", "fog": "foggy"}  # "make it ..."
STYLE_NOUNS = {"outline": "an outline drawing", "pastel": "a pastel picture", "pixel": "pixel art"}


def phrasings(kind: str, variant: str, split: str) -> tuple[str, ...]:
    """The templates of one kind and variant a split uses (test: every third, train: the rest)."""
    _check_split(split)
    return tuple(t for i, t in enumerate(TEMPLATES[kind][variant]) if (i % 3 == 2) == (split == "test"))


@dataclass(frozen=True, eq=False)
class Edit:
    """One edit and its acceptable ground-truth masks `truth`, bool [A, S, S] (A > 1 only for
    open adds: one alternative per free cell)."""

    kind: str
    instruction: str
    source: Scene
    target: Scene
    source_caption: str
    target_caption: str
    truth: np.ndarray
    open_place: bool = False
    template: str = ""


LOCAL_KINDS = ("local", "texture", "add", "remove")  # the kinds whose truth is one object's place


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def scene_split(scene: Scene, cfg: WorldConfig) -> str:
    """The split a scene belongs to, by a hash of its tokens."""
    digest = hashlib.blake2b(encode(scene, cfg).tobytes(), digest_size=8).digest()
    return "test" if int.from_bytes(digest, "little") % TEST_SHARE == 0 else "train"


def footprint(obj: Obj, cfg: WorldConfig) -> np.ndarray:
    """bool [S, S]: where a placed object is drawn."""
    if obj.cell == ANYWHERE:
        raise ValueError("an object of cell -1 has no footprint until it is placed")
    return footprint_table(cfg)[cfg.shapes.index(obj.shape), cfg.size_names.index(obj.size), obj.cell]


def refer(obj: Obj, scene: Scene, cfg: WorldConfig, rng: np.random.Generator) -> str:
    """A random unambiguous name of a placed object of `scene` ("the red circle", "the circle at
    the top left", "the large red circle" when colour and shape are not unique)."""
    pos = cell_phrases(cfg.grid)[obj.cell]

    def unique(*fields: str) -> bool:
        return sum(all(getattr(o, f) == getattr(obj, f) for f in fields) for o in scene.objects) == 1

    names = [f"the {obj.shape} {pos}", f"the {obj.colour} {obj.shape} {pos}"]
    if unique("shape"):
        names.append(f"the {obj.shape}")
    if unique("colour", "shape"):
        names.append(f"the {obj.colour} {obj.shape}")
    elif unique("size", "colour", "shape"):
        names.append(f"the {obj.size} {obj.colour} {obj.shape}")
    if obj.pattern != "plain" and unique("pattern", "shape"):
        names.append(f"the {obj.pattern} {obj.shape}")
    return names[int(rng.integers(len(names)))]


def _pick(rng: np.random.Generator, options: Sequence, avoid=None):
    """A random option other than `avoid`."""
    left = [o for o in options if o != avoid]
    if not left:
        raise ValueError(
            f"nothing to choose from {list(options)} besides {avoid!r}; the world "
            "config needs more vocabulary for this edit"
        )
    return left[int(rng.integers(len(left)))]


def _phrase(rng, kind: str, variant: str, split: str, **fields: str) -> tuple[str, str]:
    template = _pick(rng, phrasings(kind, variant, split))
    return template.format(**fields), template


def _swap(scene: Scene, old: Obj, new: Obj | None) -> Scene:
    """The scene with `old` replaced by `new` (removed when new is None)."""
    objects = tuple(o for o in scene.objects if o != old) + ((new,) if new else ())
    return dataclasses.replace(scene, objects=objects)


def _local(rng, scene, cfg, split):
    obj = _pick(rng, scene.objects)
    ref = refer(obj, scene, cfg, rng)
    if rng.random() < 0.5:
        new = dataclasses.replace(obj, colour=_pick(rng, cfg.colour_names, obj.colour))
        text = _phrase(rng, "local", "colour", split, ref=ref, colour=new.colour)
    else:
        new = dataclasses.replace(obj, shape=_pick(rng, cfg.shapes, obj.shape))
        described = describe_object(new, cfg)
        text = _phrase(rng, "local", "shape", split, ref=ref, shape=new.shape, new=f"{article(described)} {described}")
    return text, _swap(scene, obj, new), footprint(obj, cfg) | footprint(new, cfg)


def _texture(rng, scene, cfg, split):
    obj = _pick(rng, scene.objects)
    new = dataclasses.replace(obj, pattern=_pick(rng, cfg.patterns, obj.pattern))
    text = _phrase(rng, "texture", "pattern", split, ref=refer(obj, scene, cfg, rng), pattern=new.pattern)
    return text, _swap(scene, obj, new), footprint(obj, cfg)


def _add(rng, scene, cfg, split):
    free = scene.free_cells(cfg)
    if len(scene.objects) >= cfg.max_objects or not free:
        return None
    open_place = bool(rng.random() < 0.5)
    new = Obj(
        _pick(rng, cfg.shapes),
        _pick(rng, cfg.colour_names),
        _pick(rng, cfg.size_names),
        ANYWHERE if open_place else _pick(rng, free),
        _pick(rng, cfg.patterns),
    )
    described = describe_object(new, cfg)
    fields = {"obj": f"{article(described)} {described}"}
    if open_place:
        truth = np.stack([footprint(dataclasses.replace(new, cell=c), cfg) for c in free])
        text = _phrase(rng, "add", "open", split, **fields)
    else:
        truth = footprint(new, cfg)
        text = _phrase(rng, "add", "place", split, pos=cell_phrases(cfg.grid)[new.cell], **fields)
    return text, dataclasses.replace(scene, objects=scene.objects + (new,)), truth


def _remove(rng, scene, cfg, split):
    if len(scene.objects) < 2:
        return None
    obj = _pick(rng, scene.objects)
    text = _phrase(rng, "remove", "object", split, ref=refer(obj, scene, cfg, rng))
    return text, _swap(scene, obj, None), footprint(obj, cfg)


def _background(rng, scene, cfg, split):
    variant = _pick(rng, ("colour", "texture", "both"))
    background, texture = scene.background, scene.texture
    if variant != "texture":
        background = _pick(rng, cfg.background_names, background)
    if variant != "colour":
        texture = _pick(rng, cfg.textures, texture)
    text = _phrase(rng, "background", variant, split, bg=background, tex=texture)
    covered = np.zeros((cfg.image_size,) * 2, bool)
    for obj in scene.objects:
        covered |= footprint(obj, cfg)
    target = dataclasses.replace(scene, background=background, texture=texture)
    return text, target, ~covered


def _global(rng, scene, cfg, split):
    lighting = _pick(rng, cfg.lighting_names[1:], scene.lighting)
    phrase = dict(cfg.lightings)[lighting]
    text = _phrase(rng, "global", "lighting", split, adj=LIGHTING_WORDS[lighting], phrase=phrase)
    return text, dataclasses.replace(scene, lighting=lighting), _everything(cfg)


def _style(rng, scene, cfg, split):
    style = _pick(rng, cfg.style_names[1:], scene.style)
    text = _phrase(rng, "style", "style", split, noun=STYLE_NOUNS[style], phrase=dict(cfg.styles)[style])
    return text, dataclasses.replace(scene, style=style), _everything(cfg)


def _everything(cfg: WorldConfig) -> np.ndarray:
    return np.ones((cfg.image_size,) * 2, bool)


_MAKERS = {
    "local": _local,
    "texture": _texture,
    "add": _add,
    "remove": _remove,
    "background": _background,
    "global": _global,
    "style": _style,
}


def sample_edit(
    rng: np.random.Generator, cfg: WorldConfig | None = None, split: str = "train", kind: str | None = None
) -> Edit:
    """A random edit of a random scene of `split` (a random kind unless `kind` is given)."""
    cfg = cfg or WorldConfig()
    _check_split(split)
    if kind is None:
        kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind not in _MAKERS:
        raise ValueError(f"unknown edit kind {kind!r}; expected one of {KINDS}")
    for _ in range(1000):
        scene = sample_scene(rng, cfg)
        if scene_split(scene, cfg) != split:
            continue
        made = _MAKERS[kind](rng, scene, cfg, split)
        if made is None:  # not applicable to this scene (e.g. adding to a full scene)
            continue
        (instruction, template), target, truth = made
        truth = truth if truth.ndim == 3 else truth[None]
        open_place = any(o.cell == ANYWHERE for o in target.objects)
        return Edit(
            kind, instruction, scene, target, caption(scene, cfg), caption(target, cfg), truth, open_place, template
        )
    raise RuntimeError(f"no scene of the {split} split admits a {kind!r} edit under {cfg}")


def example(
    split: str, index: int, seed: int = 0, cfg: WorldConfig | None = None, kinds: Sequence[str] = KINDS
) -> Edit:
    """Example `index` of `examples(split, n, seed, cfg, kinds)`, computed on its own."""
    _check_split(split)
    if not kinds:
        raise ValueError("kinds is empty")
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    return sample_edit(rng, cfg, split, kinds[index % len(kinds)])


def examples(
    split: str, n: int, seed: int = 0, cfg: WorldConfig | None = None, kinds: Sequence[str] = KINDS
) -> list[Edit]:
    """n edits of a split, deterministic for a seed, kinds balanced round-robin."""
    cfg = cfg or WorldConfig()
    return [example(split, i, seed, cfg, kinds) for i in range(n)]


def score_iou(pred, edit: Edit) -> float:
    """IoU of a predicted mask bool [S, S] with the edit's truth; for open adds the best over the
    alternatives. An empty prediction scores 0 (every truth is non-empty)."""
    pred = np.asarray(pred).astype(bool)
    if pred.shape != edit.truth.shape[1:]:
        raise ValueError(f"expected a mask of shape {edit.truth.shape[1:]}, got {pred.shape}")
    inter = (edit.truth & pred).sum((1, 2))
    union = (edit.truth | pred).sum((1, 2))
    return float(np.max(np.where(union > 0, inter / np.maximum(union, 1), 0.0)))
