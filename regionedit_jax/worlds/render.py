"""The one renderer of the shapes world, in JAX: structured tokens -> images and footprints.

  images = render(tokens, key, cfg)                 # [B, S, S, 3] float32 in [0, 1]
  masks = object_masks(tokens, cfg)                 # [B, max_objects, S, S] bool

Every shape is an analytic signed distance (pixels, negative inside) around its cell centre,
with radius `size fraction * cell side`; every shape fits its radius, so objects in different
cells never touch. A footprint is `distance <= 0` (binary); the painted edge is anti-aliased
with coverage `clip(0.5 - distance, 0, 1)`, so a pixel is mostly object exactly when it lies in
the footprint. Patterns are drawn inside the object; the background texture, the placement of
"anywhere" objects, the colour jitter and the pixel noise come from `key`. Lighting and style
are image-level transforms (style first).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax.worlds.scenes import GLOBAL_FIELDS, SLOT_FIELDS, Scene, WorldConfig, encode

_SQUARE_HALF = 0.8  # half side of a square, in radii
_STAR_INNER = 0.45  # inner radius of a star's notches, in radii
_CLOUD = 6  # a cloudy texture is a _CLOUD x _CLOUD grid of random values, interpolated


def _circle(px, py):
    return jnp.sqrt(px * px + py * py) - 1.0


def _square(px, py):
    return jnp.maximum(jnp.abs(px), jnp.abs(py)) - _SQUARE_HALF


def _diamond(px, py):
    return (jnp.abs(px) + jnp.abs(py) - 1.0) * (1.0 / math.sqrt(2.0))


def _triangle(px, py):  # pointing up (y grows downwards), vertices on the unit circle
    s, c = math.sqrt(3.0) / 2.0, 0.5
    return jnp.maximum(py - 0.5, jnp.maximum(s * px - c * py, -s * px - c * py) - 0.5)


def _star(px, py):  # five points, one at the top: folded by two mirror lines onto one edge
    k1x, k1y = 0.809016994375, -0.587785252292  # (cos 36, -sin 36)
    x, y = jnp.abs(px), -py  # y up from here
    fold = jnp.maximum(k1x * x + k1y * y, 0.0)
    x, y = x - 2 * fold * k1x, y - 2 * fold * k1y
    fold = jnp.maximum(-k1x * x + k1y * y, 0.0)
    x, y = x + 2 * fold * k1x, y - 2 * fold * k1y
    x, y = jnp.abs(x), y - 1.0  # relative to the top point
    ex, ey = -_STAR_INNER * k1y, _STAR_INNER * k1x - 1.0  # the edge to the inner vertex
    h = jnp.clip((x * ex + y * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    return jnp.sqrt((x - ex * h) ** 2 + (y - ey * h) ** 2) * jnp.sign(y * ex - x * ey)


_SHAPES = {"circle": _circle, "square": _square, "triangle": _triangle, "star": _star, "diamond": _diamond}


# Geometry --------------------------------------------------------------------------------------


def cell_side(cfg: WorldConfig) -> float:
    return cfg.image_size / cfg.grid


def cell_centres(cfg: WorldConfig) -> np.ndarray:
    """float32 [grid*grid, 2]: (x, y) pixel coordinates of every cell centre, row by row."""
    side = cell_side(cfg)
    rows, cols = np.divmod(np.arange(cfg.cells), cfg.grid)
    return np.stack([(cols + 0.5) * side, (rows + 0.5) * side], -1).astype(np.float32)


def cell_of_pixel(cfg: WorldConfig) -> np.ndarray:
    """int32 [S, S]: the cell each pixel lies in."""
    index = (np.arange(cfg.image_size) * cfg.grid) // cfg.image_size
    return (index[:, None] * cfg.grid + index[None, :]).astype(np.int32)


def _local(size, cell, cfg: WorldConfig):
    """Pixel offsets from the cell centre dx [..., 1, S] and dy [..., S, 1], radii [..., 1, 1]."""
    radii = jnp.asarray([f * cell_side(cfg) for _, f in cfg.sizes], jnp.float32)
    centres = jnp.asarray(cell_centres(cfg))[cell]
    pixels = jnp.arange(cfg.image_size, dtype=jnp.float32) + 0.5
    dx = pixels - centres[..., 0, None, None]
    dy = pixels[:, None] - centres[..., 1, None, None]
    return dx, dy, radii[size][..., None, None]


def _distance(shape, dx, dy, radius, cfg: WorldConfig):
    """Signed distance in pixels [..., S, S] of the shapes `shape` (indices into cfg.shapes)."""
    px, py = dx / radius, dy / radius
    shape = shape[..., None, None]
    out = _SHAPES[cfg.shapes[0]](px, py)
    for k, name in enumerate(cfg.shapes[1:], 1):
        out = jnp.where(shape == k, _SHAPES[name](px, py), out)
    return out * radius


def _slots(tokens, cfg: WorldConfig) -> dict[str, jax.Array]:
    """The object slots of tokens [B, T] as int arrays [B, max_objects] by field name."""
    slots = tokens[:, len(GLOBAL_FIELDS) :].reshape(tokens.shape[0], cfg.max_objects, len(SLOT_FIELDS))
    return {name: slots[..., i] for i, name in enumerate(SLOT_FIELDS)}


def _check_tokens(tokens, cfg: WorldConfig) -> jax.Array:
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] != cfg.num_tokens:
        raise ValueError(f"expected tokens [B, {cfg.num_tokens}], got shape {tokens.shape}")
    return tokens.astype(jnp.int32)


@functools.partial(jax.jit, static_argnames="cfg")
def _object_masks(tokens, cfg: WorldConfig):
    s = _slots(tokens, cfg)
    placed = (s["present"] > 0) & (s["cell"] < cfg.cells)
    dx, dy, radius = _local(s["size"], jnp.where(placed, s["cell"], 0), cfg)
    return (_distance(s["shape"], dx, dy, radius, cfg) <= 0) & placed[..., None, None]


def object_masks(tokens, cfg: WorldConfig | None = None) -> jax.Array:
    """tokens [B, T] -> bool [B, max_objects, S, S]: each present object's footprint (empty for
    absent slots and for objects of cell -1)."""
    cfg = cfg or WorldConfig()
    return _object_masks(_check_tokens(tokens, cfg), cfg=cfg)


def background_mask(tokens, cfg: WorldConfig | None = None) -> jax.Array:
    """tokens [B, T] -> bool [B, S, S]: the pixels no placed object covers."""
    return ~jnp.any(object_masks(tokens, cfg), axis=1)


@functools.lru_cache(maxsize=8)
def footprint_table(cfg: WorldConfig) -> np.ndarray:
    """bool [shapes, sizes, grid*grid, S, S]: the footprint of every (shape, size, cell)."""
    shape, size, cell = np.meshgrid(
        np.arange(len(cfg.shapes)), np.arange(len(cfg.sizes)), np.arange(cfg.cells), indexing="ij"
    )

    @jax.jit
    def table(shape, size, cell):
        dx, dy, radius = _local(size, cell, cfg)
        return _distance(shape, dx, dy, radius, cfg) <= 0

    return np.asarray(table(shape, size, cell))


# Randomness and the placement of "anywhere" objects --------------------------------------------


def _draws(key, b: int, cfg: WorldConfig) -> dict[str, jax.Array]:
    """Everything random about a batch of b pictures but the pixel noise, from one draw (each
    random draw is a large program to compile): uniforms in (0, 1) by use."""
    size, g = cfg.image_size, cfg.cells
    widths = {
        "speckle": size * size,
        "checker": 2,
        "cloud": _CLOUD * _CLOUD,
        "order": g,
        "ground": 3,
        "objects": 3 * cfg.max_objects,
    }
    u = jax.random.uniform(key, (b, sum(widths.values())), minval=1e-6, maxval=1 - 1e-6)
    out, start = {}, 0
    for name, width in widths.items():
        out[name], start = u[:, start : start + width], start + width
    return out


def _normal(u):
    """Standard normal values from uniforms in (0, 1)."""
    return math.sqrt(2.0) * jax.scipy.special.erfinv(2.0 * u - 1.0)


def _resolve_cells(s, order, mask, cfg: WorldConfig):
    """Cells [B, M] (-1: not placed) and presence [B, M] after giving every object of cell -1 the
    free cell with the most mask mass, ties broken by the random `order`, uniforms [B, grid*grid]
    (no mask: the first free cell in that order)."""
    g = cfg.cells
    present = s["present"] > 0
    fixed = present & (s["cell"] < g)
    occupied = jnp.any(jax.nn.one_hot(jnp.where(fixed, s["cell"], g), g + 1, dtype=bool)[..., :g], axis=1)
    if mask is None:
        score = order
    else:
        onehot = jax.nn.one_hot(jnp.asarray(cell_of_pixel(cfg)), g, dtype=jnp.float32)
        score = jnp.einsum("bhw,hwg->bg", mask.astype(jnp.float32), onehot) + 1e-3 * order
    cells = []
    for m in range(cfg.max_objects):
        need = present[:, m] & (s["cell"][:, m] == g)
        choice = jnp.argmax(jnp.where(occupied, -jnp.inf, score), axis=-1)
        room = ~jnp.all(occupied, axis=-1)
        placed = need & room
        cells.append(jnp.where(placed, choice, jnp.where(fixed[:, m], s["cell"][:, m], -1)))
        occupied = occupied | (placed[:, None] & jax.nn.one_hot(choice, g, dtype=bool))
    cells = jnp.stack(cells, 1)
    return cells, cells >= 0


@functools.partial(jax.jit, static_argnames="cfg")
def _placed_cells(tokens, key, mask, cfg: WorldConfig):
    order = _draws(jax.random.split(key)[0], tokens.shape[0], cfg)["order"]
    return _resolve_cells(_slots(tokens, cfg), order, mask, cfg)[0]


def resolve_cells(tokens, key, cfg: WorldConfig | None = None, *, mask=None) -> jax.Array:
    """int32 [B, max_objects]: the cell every object is drawn in by `render` with the same key
    and mask (-1 for absent slots and for objects with no free cell left)."""
    cfg = cfg or WorldConfig()
    return _placed_cells(_check_tokens(tokens, cfg), key, mask, cfg=cfg)


# Painting --------------------------------------------------------------------------------------


def _pattern_on(pattern, dx, dy, cfg: WorldConfig):
    """bool [..., S, S]: where the pattern colour shows inside an object."""
    side = cell_side(cfg)
    period = max(3.0, 0.2 * side)
    phase = (dx + dy) * (1.0 / (math.sqrt(2.0) * period))
    stripes = phase - jnp.floor(phase) < 0.5
    spacing = max(4.0, 0.25 * side)

    def offset(d):  # from the nearest dot centre, on a grid through the object's centre
        t = d * (1.0 / spacing) + 0.5
        return (t - jnp.floor(t) - 0.5) * spacing

    fx, fy = offset(dx), offset(dy)
    dots = fx * fx + fy * fy < (0.32 * spacing) ** 2
    drawn = {"plain": jnp.zeros_like(stripes), "striped": stripes, "dotted": dots}
    pattern = pattern[..., None, None]
    out = jnp.zeros_like(stripes)
    for k, name in enumerate(cfg.patterns):
        out = jnp.where(pattern == k, drawn[name], out)
    return out


def pattern_colour(rgb):
    """[..., 3] -> [..., 3]: the colour of an object's stripes or dots (darker on light colours,
    lighter on dark ones)."""
    luminance = rgb @ jnp.asarray([0.3, 0.59, 0.11], rgb.dtype)
    return jnp.where(luminance[..., None] > 0.45, rgb * 0.35, rgb * 0.35 + 0.62)


def _texture(texture, draws, cfg: WorldConfig):
    """float [B, S, S]: the additive brightness texture of every background."""
    b, size = texture.shape[0], cfg.image_size
    u = draws["speckle"].reshape(b, size, size)
    speckled = 0.2 * ((u > 0.93).astype(jnp.float32) - (u < 0.07).astype(jnp.float32))
    square = max(2.0, cell_side(cfg) / 2)
    offset = draws["checker"][:, :, None, None] * 2 * square
    pixels = jnp.arange(size, dtype=jnp.float32)
    parity = (
        jnp.floor((pixels[None, None, :] + offset[:, 0]) / square)
        + jnp.floor((pixels[None, :, None] + offset[:, 1]) / square)
    ) % 2
    checkered = 0.07 * (2 * parity - 1)
    coarse = _normal(draws["cloud"]).reshape(b, _CLOUD, _CLOUD)
    cloudy = 0.06 * jax.image.resize(coarse, (b, size, size), "linear")
    drawn = {"plain": jnp.zeros_like(u), "speckled": speckled, "checkered": checkered, "cloudy": cloudy}
    out = jnp.zeros_like(u)
    for k, name in enumerate(cfg.textures):
        out = jnp.where(texture[:, None, None] == k, drawn[name], out)
    return out


def _outline(flat, ground):
    """Lines where the untextured picture [B, S, S, 3] changes, on paper tinted by ground."""
    right = jnp.abs(flat - jnp.roll(flat, -1, axis=2)).sum(-1).at[:, :, -1].set(0)
    down = jnp.abs(flat - jnp.roll(flat, -1, axis=1)).sum(-1).at[:, -1, :].set(0)
    edge = (jnp.maximum(right, down) > 0.2)[..., None]
    paper = 0.5 + 0.45 * ground[:, None, None, :]
    return jnp.where(edge, flat * 0.55, paper)


def _pixelate(image, cfg: WorldConfig):
    """Block means of about image_size / 24 pixels, on 8 levels per channel."""
    block = max(2, round(cfg.image_size / 24))
    blocks = -(-cfg.image_size // block)
    pad = blocks * block - cfg.image_size
    padded = jnp.pad(image, ((0, 0), (0, pad), (0, pad), (0, 0)), mode="edge")
    means = padded.reshape(image.shape[0], blocks, block, blocks, block, 3).mean((2, 4))
    big = jnp.repeat(jnp.repeat(means, block, axis=1), block, axis=2)
    return jnp.round(big[:, : cfg.image_size, : cfg.image_size] * 7) / 7


def _styled(style, image, flat, ground, cfg: WorldConfig):
    drawn = {
        "none": image,
        "outline": _outline(flat, ground),
        "pastel": 0.5 * image + 0.48,
        "pixel": _pixelate(image, cfg),
    }
    out = image
    for k, name in enumerate(cfg.style_names):
        if name != "none":
            out = jnp.where(style[:, None, None, None] == k, drawn[name], out)
    return out


def _lit(lighting, image, cfg: WorldConfig):
    drawn = {
        "night": image * jnp.asarray([0.40, 0.45, 0.68]) + jnp.asarray([0.0, 0.0, 0.04]),
        "sunset": image * jnp.asarray([1.0, 0.76, 0.52]) + jnp.asarray([0.10, 0.04, 0.0]),
        "fog": 0.45 * image + 0.55 * jnp.asarray([0.80, 0.82, 0.84]),
    }
    out = image
    for k, name in enumerate(cfg.lighting_names):
        if name != "none":
            out = jnp.where(lighting[:, None, None, None] == k, drawn[name], out)
    return out


@functools.partial(jax.jit, static_argnames="cfg")
def _render(tokens, key, mask, noise, jitter, cfg: WorldConfig):
    k_draws, k_noise = jax.random.split(key)
    draws = _draws(k_draws, tokens.shape[0], cfg)
    s = _slots(tokens, cfg)
    cells, placed = _resolve_cells(s, draws["order"], mask, cfg)
    dx, dy, radius = _local(s["size"], jnp.maximum(cells, 0), cfg)
    distance = _distance(s["shape"], dx, dy, radius, cfg)
    alpha = jnp.clip(0.5 - distance, 0.0, 1.0) * placed[..., None, None]  # [B, M, S, S]
    ground = jnp.asarray([rgb for _, rgb in cfg.backgrounds], jnp.float32)[tokens[:, 0]]
    ground = jnp.clip(ground + jitter * _normal(draws["ground"]), 0, 1)
    colour = jnp.asarray([rgb for _, rgb in cfg.colours], jnp.float32)[s["colour"]]
    shifts = _normal(draws["objects"]).reshape(colour.shape)
    colour = jnp.clip(colour + jitter * shifts, 0, 1)
    on = _pattern_on(s["pattern"], dx, dy, cfg)  # [B, M, S, S]
    second = pattern_colour(colour)
    painted = jnp.stack(
        [  # objects never overlap: their paint adds up (channel by channel)
            (alpha * jnp.where(on, second[..., c, None, None], colour[..., c, None, None])).sum(1) for c in range(3)
        ],
        -1,
    )
    cover = jnp.clip(alpha.sum(1), 0.0, 1.0)[..., None]
    flat_ground = jnp.broadcast_to(ground[:, None, None, :], painted.shape)
    textured = jnp.clip(flat_ground + _texture(tokens[:, 1], draws, cfg)[..., None], 0, 1)
    flat = flat_ground * (1 - cover) + painted
    image = textured * (1 - cover) + painted
    image = _styled(tokens[:, 3], image, flat, ground, cfg)
    image = _lit(tokens[:, 2], image, cfg)
    image = jax.lax.cond(noise > 0, lambda: image + noise * jax.random.normal(k_noise, image.shape), lambda: image)
    return jnp.clip(image, 0.0, 1.0)


def render(tokens, key, cfg: WorldConfig | None = None, *, mask=None, noise=0.0, jitter=0.0) -> jax.Array:
    """tokens int32 [B, T] -> images float32 [B, S, S, 3] in [0, 1] (jitted; vmappable).

    mask [B, S, S] (1 = may paint) steers objects of cell -1 to the free cell with the most mask
    mass; without it they take the first free cell in a key-dependent order. `noise` is the std
    of Gaussian pixel noise, `jitter` the std of a per-object and per-background colour shift.
    """
    cfg = cfg or WorldConfig()
    tokens = _check_tokens(tokens, cfg)
    size = cfg.image_size
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != (tokens.shape[0], size, size):
            raise ValueError(f"expected mask [{tokens.shape[0]}, {size}, {size}], got {mask.shape}")
    return _render(tokens, key, mask, jnp.asarray(noise, jnp.float32), jnp.asarray(jitter, jnp.float32), cfg=cfg)


def render_scene(scene: Scene, key, cfg: WorldConfig | None = None) -> np.ndarray:
    """One scene -> uint8 [S, S, 3]."""
    cfg = cfg or WorldConfig()
    image = render(encode(scene, cfg)[None], key, cfg)[0]
    return np.asarray(jnp.round(image * 255)).astype(np.uint8)
