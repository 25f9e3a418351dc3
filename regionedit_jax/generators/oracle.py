"""The shapes world's oracle: a text-to-image inpainter that knows the world, imperfect on purpose.

Its tokenizer parses a caption of the world ("a small red circle at the top left ... on a
speckled grey background") into the world's structured tokens, so the prompt fully states
the target scene. ``generate`` renders that scene with a FRESH key: a new sample of the
background texture, colour ``jitter`` and pixel ``noise``. Composited through a mask, the
result is what a real inpainter gives: the requested content inside the mask, and whatever
else the mask covers re-synthesised, close to but not exactly the source. So an oversized
mask costs something, and how much is the config's ``noise``/``jitter``. An object the
caption places "anywhere" goes to the free cell the mask covers most.

Options (``config.generator.oracle``): ``image_size``, ``grid``, ``max_objects`` (the world,
``worlds.scenes.WorldConfig``), ``noise`` (pixel std) and ``jitter`` (colour std). It has no
weights, no steps and no guidance (both accepted and ignored).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax.generators.base import Generator
from regionedit_jax.worlds import render as world_render
from regionedit_jax.worlds import scenes

TOWERS = ()
OPTIONS = {"image_size": 64, "grid": 3, "max_objects": 4, "noise": 0.02, "jitter": 0.03}


class WorldTokenizer:
    """Captions of the world -> structured tokens [B, num_tokens] int32 (picklable)."""

    def __init__(self, world: scenes.WorldConfig):
        self.world = world

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            try:
                rows.append(scenes.encode(scenes.parse(text, self.world), self.world))
            except ValueError as e:
                raise ValueError(
                    f"the oracle generator paints only scenes of the shapes world; cannot read "
                    f"the target description {text!r}: {e}"
                ) from None
        return np.stack(rows).astype(np.int32)


class OracleGenerator(Generator):
    """Renders the prompt's scene (see the module docstring)."""

    name = "oracle"
    multiple = 1

    def __init__(self, world: scenes.WorldConfig, noise: float, jitter: float):
        if noise < 0 or jitter < 0:
            raise ValueError(f"config.generator.oracle: noise and jitter must be >= 0; got {noise}, {jitter}.")
        self.world, self.noise, self.jitter = world, float(noise), float(jitter)
        self.max_length = world.num_tokens
        self._tokenizer = WorldTokenizer(world)

    @property
    def params(self):
        return {}

    @property
    def prompt_tokenizer(self):
        return self._tokenizer

    def generate(self, params, images, masks, prompt_ids, rng, guidance_scale):
        del params, guidance_scale
        b, h, w, _ = images.shape
        size = self.world.image_size
        paint = masks[..., 0]
        if (h, w) != (size, size):
            paint = jax.image.resize(paint, (b, size, size), "linear")
        out = world_render.render(
            prompt_ids, jax.random.fold_in(rng, 0x0AC1E), self.world, mask=paint, noise=self.noise, jitter=self.jitter
        )
        if (h, w) != (size, size):
            out = jax.image.resize(out, (b, h, w, 3), "linear").clip(0, 1)
        return out.astype(jnp.float32)


def world(options) -> scenes.WorldConfig:
    """The world of oracle options (``config.generator.oracle``; missing keys take ``OPTIONS``)."""
    options = {**OPTIONS, **dict(options or {})}
    return scenes.WorldConfig(
        image_size=int(options["image_size"]), grid=int(options["grid"]), max_objects=int(options["max_objects"])
    )


def build(towers, options, num_steps: int) -> OracleGenerator:
    """``generators.make`` entry: the world from the options; ``num_steps`` is ignored."""
    del towers, num_steps
    return OracleGenerator(world(options), options["noise"], options["jitter"])
