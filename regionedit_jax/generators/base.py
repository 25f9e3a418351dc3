"""The contract every region-conditioned generator meets: pixels in, pixels out.

  gen = generators.make(config.generator, towers)          # or num_steps=... for training
  ids = gen.tokenize(["a dog on a sofa"])                   # [B, L] int32, the generator's own
  out = gen.generate(frozen, images, masks, ids, rng, guidance_scale)

``images`` [B, H, W, 3] float32 in [0, 1] with H and W multiples of ``gen.multiple``;
``masks`` [B, H, W, 1], 1 = repaint; ``ids`` from ``gen.tokenize`` (its own tokenizer:
SD's CLIP BPE, a world's structured tokens); ``rng`` a PRNG key; ``guidance_scale`` a
traced scalar or [B] (generators without guidance ignore it). ``generate`` is pure and
jittable and returns the generator's whole image G [B, H, W, 3] in [0, 1]; compositing G
into the source is the model's business (``model.composite``), not the generator's. Static
settings (step counts, schedules) are fixed when the generator is built, so one compiled
function serves every call.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np


class Generator(abc.ABC):
    """A frozen region-conditioned generator; see the module docstring for the contract."""

    name: str  # the registry name
    multiple: int  # H and W must be multiples of this (pixels)
    max_length: int  # L: prompt tokens per row

    @property
    @abc.abstractmethod
    def params(self) -> Any:
        """The frozen parameter tree ``generate`` takes (never optimised)."""

    @property
    @abc.abstractmethod
    def prompt_tokenizer(self) -> Callable[[Sequence[str]], np.ndarray]:
        """A picklable ``texts -> [B, L] int32`` (data-loader workers call it)."""

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """Prompt texts -> [B, L] int32 token ids for ``generate``."""
        return self.prompt_tokenizer(list(texts))

    @abc.abstractmethod
    def generate(
        self,
        params: Any,
        images: jax.Array,
        masks: jax.Array,
        prompt_ids: jax.Array,
        rng: jax.Array,
        guidance_scale: jax.Array | float,
    ) -> jax.Array:
        """[B, H, W, 3], [B, H, W, 1], [B, L], key, scalar or [B] -> G [B, H, W, 3] in [0, 1]."""

    def check(self, images_shape: tuple[int, ...], prompt_shape: tuple[int, ...]) -> None:
        """Raises a clear ValueError when shapes break the contract (host-side, before compiling)."""
        b, h, w = images_shape[:3]
        k = self.multiple
        if h % k or w % k:
            raise ValueError(
                f"generator {self.name!r}: image size {h}x{w} must be a multiple of {k}; "
                f"resize or pad first (e.g. to {max(h // k, 1) * k}x{max(w // k, 1) * k})."
            )
        if tuple(prompt_shape) != (b, self.max_length):
            raise ValueError(
                f"generator {self.name!r}: prompt ids have shape {tuple(prompt_shape)}; "
                f"expected {(b, self.max_length)} from its tokenize()."
            )
