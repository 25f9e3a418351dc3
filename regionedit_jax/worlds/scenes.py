"""The shapes world: scenes of a few objects on a background, their captions and tokens.

A scene holds 1..max_objects objects, each at the centre of its own cell of a grid x grid layout
(no two objects share a cell, so objects never overlap), a background colour and texture, a
global lighting and a style. `caption` describes a scene completely and `parse` inverts it:

  a small red circle at the top left, a large striped blue square in the center and a small
  dotted green star at the bottom right on a speckled grey background, at night, as pixel art

Objects are listed in cell order; an object of cell -1 ("anywhere free", the target of an open
"add") is listed last and without a position. Plain patterns, plain textures and no
lighting/style are left unsaid.

Structured tokens (what a generator for this world consumes), int32 [cfg.num_tokens]:

  0  background   index into cfg.backgrounds
  1  texture      index into cfg.textures
  2  lighting     index into cfg.lightings (0 = none)
  3  style        index into cfg.styles (0 = none)
  4 + 6*k + (0..5), for slot k < max_objects:
     present (0/1), shape, colour, size, cell (0..grid*grid-1, grid*grid = anywhere free), pattern

Present slots come first, in the scene's object order; absent slots are all zero.
`token_vocab_sizes(cfg)` gives the number of values of every position.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

RGB = tuple[float, float, float]
GLOBAL_FIELDS = ("background", "texture", "lighting", "style")
SLOT_FIELDS = ("present", "shape", "colour", "size", "cell", "pattern")
ANYWHERE = -1

# Names the renderer draws; a config may use any subset, in any order.
KNOWN_SHAPES = ("circle", "square", "triangle", "star", "diamond")
KNOWN_PATTERNS = ("plain", "striped", "dotted")
KNOWN_TEXTURES = ("plain", "speckled", "checkered", "cloudy")
KNOWN_LIGHTINGS = ("none", "night", "sunset", "fog")
KNOWN_STYLES = ("none", "outline", "pastel", "pixel")


@dataclass(frozen=True)
class WorldConfig:
    """Image size, layout and vocabularies; hashable, so it can be a static jit argument."""

    image_size: int = 64
    grid: int = 3
    max_objects: int = 4
    shapes: tuple[str, ...] = KNOWN_SHAPES
    colours: tuple[tuple[str, RGB], ...] = (
        ("red", (0.86, 0.12, 0.12)),
        ("green", (0.13, 0.70, 0.18)),
        ("blue", (0.12, 0.30, 0.92)),
        ("yellow", (0.98, 0.88, 0.08)),
        ("purple", (0.60, 0.18, 0.80)),
        ("orange", (1.00, 0.52, 0.04)),
        ("white", (0.98, 0.98, 0.98)),
        ("black", (0.04, 0.04, 0.04)),
    )
    sizes: tuple[tuple[str, float], ...] = (("small", 0.28), ("large", 0.45))  # radius / cell
    patterns: tuple[str, ...] = KNOWN_PATTERNS
    backgrounds: tuple[tuple[str, RGB], ...] = (
        ("grey", (0.52, 0.52, 0.52)),
        ("beige", (0.84, 0.76, 0.58)),
        ("navy", (0.14, 0.18, 0.46)),
        ("pink", (0.93, 0.58, 0.72)),
        ("teal", (0.04, 0.46, 0.50)),
    )
    textures: tuple[str, ...] = KNOWN_TEXTURES
    lightings: tuple[tuple[str, str], ...] = (
        ("none", ""),
        ("night", "at night"),
        ("sunset", "at sunset"),
        ("fog", "in fog"),
    )
    styles: tuple[tuple[str, str], ...] = (
        ("none", ""),
        ("outline", "as an outline drawing"),
        ("pastel", "in pastel colours"),
        ("pixel", "as pixel art"),
    )

    def __post_init__(self) -> None:
        if self.image_size < 8 or self.grid < 1:
            raise ValueError(f"need image_size >= 8 and grid >= 1, got {self.image_size}, {self.grid}")
        if not 1 <= self.max_objects <= self.grid * self.grid:
            raise ValueError(f"max_objects must be in [1, grid*grid = {self.grid**2}], got {self.max_objects}")
        for what, names, known in (
            ("shapes", self.shapes, KNOWN_SHAPES),
            ("patterns", self.patterns, KNOWN_PATTERNS),
            ("textures", self.textures, KNOWN_TEXTURES),
            ("lightings", self.lighting_names, KNOWN_LIGHTINGS),
            ("styles", self.style_names, KNOWN_STYLES),
        ):
            unknown = sorted(set(names) - set(known))
            if unknown or len(set(names)) != len(names) or not names:
                raise ValueError(f"{what} must be distinct names from {known}, got {names}")
        for what, names in (
            ("colours", self.colour_names),
            ("sizes", self.size_names),
            ("backgrounds", self.background_names),
        ):
            if not names or len(set(names)) != len(names):
                raise ValueError(f"{what} must be distinct names, got {names}")
        if not all(0 < fraction <= 0.5 for _, fraction in self.sizes):
            raise ValueError(f"size radii must be in (0, 0.5] of a cell, got {self.sizes}")
        if self.lighting_names[0] != "none" or self.style_names[0] != "none":
            raise ValueError("lightings and styles must start with 'none'")
        if self.patterns[0] != "plain" or self.textures[0] != "plain":
            raise ValueError("patterns and textures must start with 'plain'")

    @property
    def colour_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.colours)

    @property
    def size_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.sizes)

    @property
    def background_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.backgrounds)

    @property
    def lighting_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.lightings)

    @property
    def style_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.styles)

    @property
    def cells(self) -> int:
        return self.grid * self.grid

    @property
    def num_tokens(self) -> int:
        return len(GLOBAL_FIELDS) + len(SLOT_FIELDS) * self.max_objects


@dataclass(frozen=True)
class Obj:
    """One object; `cell` in [0, grid*grid) or -1 (anywhere free: only open "add" targets)."""

    shape: str
    colour: str
    size: str
    cell: int
    pattern: str = "plain"


def _cell_order(obj: Obj) -> int:
    return obj.cell if obj.cell >= 0 else 1 << 30


@dataclass(frozen=True)
class Scene:
    """Objects (kept sorted in cell order, anywhere-objects last) on a background."""

    objects: tuple[Obj, ...]
    background: str
    texture: str = "plain"
    lighting: str = "none"
    style: str = "none"

    def __post_init__(self) -> None:
        objects = tuple(sorted(self.objects, key=_cell_order))
        cells = [o.cell for o in objects if o.cell >= 0]
        if len(set(cells)) != len(cells):
            raise ValueError(f"two objects share a cell: {cells}")
        object.__setattr__(self, "objects", objects)

    def free_cells(self, cfg: WorldConfig) -> list[int]:
        """Cells no object of this scene occupies, in order."""
        used = {o.cell for o in self.objects}
        return [c for c in range(cfg.cells) if c not in used]


# Positions -------------------------------------------------------------------------------------

_GRID3 = (
    "at the top left",
    "at the top",
    "at the top right",
    "on the left",
    "in the center",
    "on the right",
    "at the bottom left",
    "at the bottom",
    "at the bottom right",
)
_GRID2 = ("at the top left", "at the top right", "at the bottom left", "at the bottom right")


def cell_phrases(grid: int) -> tuple[str, ...]:
    """The position phrase of every cell, row by row ("at the top left", "in row 2 column 3")."""
    if grid == 1:
        return ("in the center",)
    if grid == 2:
        return _GRID2
    if grid == 3:
        return _GRID3
    return tuple(f"in row {r + 1} column {c + 1}" for r in range(grid) for c in range(grid))


# Captions ---------------------------------------------------------------------------------------


def _check(value: str, names: tuple[str, ...], what: str) -> str:
    if value not in names:
        raise ValueError(f"unknown {what} {value!r}; expected one of {names}")
    return value


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def describe_object(obj: Obj, cfg: WorldConfig) -> str:
    """'small striped blue square' (no article, no position; a plain pattern is left unsaid)."""
    words = [_check(obj.size, cfg.size_names, "size")]
    if _check(obj.pattern, cfg.patterns, "pattern") != "plain":
        words.append(obj.pattern)
    words += [_check(obj.colour, cfg.colour_names, "colour"), _check(obj.shape, cfg.shapes, "shape")]
    return " ".join(words)


def object_phrase(obj: Obj, cfg: WorldConfig) -> str:
    """'a small red circle at the top left' ('a small red circle' for cell -1)."""
    text = describe_object(obj, cfg)
    text = f"{article(text)} {text}"
    if obj.cell == ANYWHERE:
        return text
    if not 0 <= obj.cell < cfg.cells:
        raise ValueError(f"cell {obj.cell} is outside the {cfg.grid}x{cfg.grid} grid")
    return f"{text} {cell_phrases(cfg.grid)[obj.cell]}"


def background_phrase(scene: Scene, cfg: WorldConfig) -> str:
    """'speckled grey' ('grey' for a plain texture)."""
    colour = _check(scene.background, cfg.background_names, "background")
    texture = _check(scene.texture, cfg.textures, "texture")
    return colour if texture == "plain" else f"{texture} {colour}"


def caption(scene: Scene, cfg: WorldConfig | None = None) -> str:
    """The complete description of a scene (module docstring); `parse` inverts it."""
    cfg = cfg or WorldConfig()
    if not scene.objects:
        raise ValueError("a scene needs at least one object to be captioned")
    if len(scene.objects) > cfg.max_objects:
        raise ValueError(f"{len(scene.objects)} objects, more than max_objects={cfg.max_objects}")
    phrases = [object_phrase(o, cfg) for o in scene.objects]
    listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    ground = background_phrase(scene, cfg)
    text = f"{listed} on {article(ground)} {ground} background"
    lighting = dict(cfg.lightings)[_check(scene.lighting, cfg.lighting_names, "lighting")]
    style = dict(cfg.styles)[_check(scene.style, cfg.style_names, "style")]
    return text + "".join(f", {p}" for p in (lighting, style) if p)


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


@functools.lru_cache(maxsize=16)
def _object_pattern(cfg: WorldConfig) -> re.Pattern[str]:
    return re.compile(
        rf"an? (?P<size>{_alternation(cfg.size_names)})"
        rf"(?: (?P<pattern>{_alternation(p for p in cfg.patterns if p != 'plain')}))?"
        rf" (?P<colour>{_alternation(cfg.colour_names)}) (?P<shape>{_alternation(cfg.shapes)})"
        rf"(?: (?P<place>{_alternation(cell_phrases(cfg.grid))}))?"
    )


def parse_object(text: str, cfg: WorldConfig) -> Obj:
    """'a small red circle at the top left' -> Obj (cell -1 without a position)."""
    match = _object_pattern(cfg).fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"cannot parse the object {text.strip()!r}; expected e.g. "
            f"'a small striped red circle {cell_phrases(cfg.grid)[0]}'"
        )
    place = match["place"]
    return Obj(
        match["shape"],
        match["colour"],
        match["size"],
        cell_phrases(cfg.grid).index(place) if place else ANYWHERE,
        match["pattern"] or "plain",
    )


def parse(text: str, cfg: WorldConfig | None = None) -> Scene:
    """The scene a caption describes (the exact inverse of `caption`); ValueError naming the
    part that does not parse."""
    cfg = cfg or WorldConfig()
    rest = " ".join(str(text).lower().split()).rstrip(".")
    found = {}
    for field, table in (("style", cfg.styles), ("lighting", cfg.lightings)):
        found[field] = "none"
        for name, phrase in table:
            if phrase and rest.endswith(", " + phrase):
                found[field], rest = name, rest[: -len(phrase) - 2]
                break
    match = re.fullmatch(r"(?P<listed>.+?) on an? (?P<ground>[a-z]+(?: [a-z]+)?) background", rest)
    if match is None:
        raise ValueError(
            f"cannot parse {rest!r} in {text!r}: expected '<objects> on a [texture] "
            "colour background' and an optional lighting and style"
        )
    listed, words = match["listed"], match["ground"].split()
    texture = words[0] if len(words) == 2 else "plain"
    if texture not in cfg.textures or words[-1] not in cfg.background_names:
        raise ValueError(
            f"cannot parse the background {match['ground']!r} in {text!r}; "
            f"textures {cfg.textures}, colours {cfg.background_names}"
        )
    parts = re.split(r", | and ", listed)
    if len(parts) > cfg.max_objects:
        raise ValueError(f"{len(parts)} objects in {text!r}, more than {cfg.max_objects}")
    objects = tuple(parse_object(p, cfg) for p in parts)
    return Scene(objects, words[-1], texture, found["lighting"], found["style"])


# Sampling and tokens ---------------------------------------------------------------------------


def sample_scene(rng: np.random.Generator, cfg: WorldConfig | None = None) -> Scene:
    """A random scene: 1..max_objects objects in distinct cells; lighting and style are none
    half of the time, else uniform."""
    cfg = cfg or WorldConfig()
    n = int(rng.integers(1, cfg.max_objects + 1))
    cells = rng.choice(cfg.cells, size=n, replace=False)
    objects = tuple(
        Obj(
            str(rng.choice(cfg.shapes)),
            str(rng.choice(cfg.colour_names)),
            str(rng.choice(cfg.size_names)),
            int(c),
            str(rng.choice(cfg.patterns)),
        )
        for c in cells
    )

    def maybe(names: tuple[str, ...]) -> str:
        if len(names) == 1 or rng.random() < 0.5:  # a lone "none" draws nothing
            return names[0]
        return str(rng.choice(names[1:]))

    return Scene(
        objects,
        str(rng.choice(cfg.background_names)),
        str(rng.choice(cfg.textures)),
        maybe(cfg.lighting_names),
        maybe(cfg.style_names),
    )


def token_vocab_sizes(cfg: WorldConfig) -> tuple[int, ...]:
    """How many values every token position takes, [cfg.num_tokens]."""
    slot = (2, len(cfg.shapes), len(cfg.colours), len(cfg.sizes), cfg.cells + 1, len(cfg.patterns))
    return (len(cfg.backgrounds), len(cfg.textures), len(cfg.lightings), len(cfg.styles)) + slot * cfg.max_objects


def encode(scene: Scene, cfg: WorldConfig | None = None) -> np.ndarray:
    """Scene -> int32 [cfg.num_tokens] (layout in the module docstring)."""
    cfg = cfg or WorldConfig()
    if len(scene.objects) > cfg.max_objects:
        raise ValueError(f"{len(scene.objects)} objects, more than max_objects={cfg.max_objects}")
    tokens = np.zeros(cfg.num_tokens, np.int32)
    tokens[:4] = (
        cfg.background_names.index(_check(scene.background, cfg.background_names, "background")),
        cfg.textures.index(_check(scene.texture, cfg.textures, "texture")),
        cfg.lighting_names.index(_check(scene.lighting, cfg.lighting_names, "lighting")),
        cfg.style_names.index(_check(scene.style, cfg.style_names, "style")),
    )
    for k, o in enumerate(scene.objects):
        if not (o.cell == ANYWHERE or 0 <= o.cell < cfg.cells):
            raise ValueError(f"cell {o.cell} is outside the {cfg.grid}x{cfg.grid} grid")
        tokens[4 + 6 * k : 10 + 6 * k] = (
            1,
            cfg.shapes.index(_check(o.shape, cfg.shapes, "shape")),
            cfg.colour_names.index(_check(o.colour, cfg.colour_names, "colour")),
            cfg.size_names.index(_check(o.size, cfg.size_names, "size")),
            cfg.cells if o.cell == ANYWHERE else o.cell,
            cfg.patterns.index(_check(o.pattern, cfg.patterns, "pattern")),
        )
    return tokens


def decode(tokens, cfg: WorldConfig | None = None) -> Scene:
    """int [cfg.num_tokens] -> Scene; ValueError for a token outside its vocabulary."""
    cfg = cfg or WorldConfig()
    tokens = np.asarray(tokens)
    if tokens.shape != (cfg.num_tokens,):
        raise ValueError(f"expected tokens of shape ({cfg.num_tokens},), got {tokens.shape}")
    sizes = token_vocab_sizes(cfg)
    bad = [i for i, (t, n) in enumerate(zip(tokens.tolist(), sizes)) if not 0 <= t < n]
    if bad:
        raise ValueError(
            f"tokens at positions {bad} are outside their vocabularies "
            f"(sizes {[sizes[i] for i in bad]}): {tokens.tolist()}"
        )
    b, t, li, st = tokens[:4].tolist()
    objects = []
    for k in range(cfg.max_objects):
        present, shape, colour, size, cell, pattern = tokens[4 + 6 * k : 10 + 6 * k].tolist()
        if present:
            objects.append(
                Obj(
                    cfg.shapes[shape],
                    cfg.colour_names[colour],
                    cfg.size_names[size],
                    ANYWHERE if cell == cfg.cells else cell,
                    cfg.patterns[pattern],
                )
            )
    return Scene(tuple(objects), cfg.background_names[b], cfg.textures[t], cfg.lighting_names[li], cfg.style_names[st])
