"""The method's one forward path, shared by the Editor and the train step.

  images -> CLIP patch tokens V (frozen) ─┐
  instruction -> T5 tokens P (frozen) ────┴> RegionPredictor -> p [B, g, g]
  p -> upsample to pixels -> M = 1[p > tau] (or the user's mask) -> generator (frozen) -> G
  edited = composite(M, G, images) = M * G + (1 - M) * images

Training runs the same ``forward`` with ``train=True``: the only differences are the
straight-through mask ``M + p - sg(p)`` in the composite and the stop-gradient on G, so
the losses see ``dL/dp = (G - I_src) * dL/dI_edit`` (DESIGN §1). Trainable params:
``{"region": ..., "projector": ...}``; frozen params: ``{"clip", "t5", "generator"}`` (the
towers' and the generator's own trees, never optimised).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from regionedit_jax import generators
from regionedit_jax import region as region_lib
from regionedit_jax.towers.clip import Clip, ImageFeatures
from regionedit_jax.towers.t5 import T5


class EditOutput(NamedTuple):
    edited: jax.Array  # [B, H, W, 3] in [0, 1]: G inside the mask, the source outside
    generated: jax.Array  # [B, H, W, 3] the generator's whole image G
    mask: jax.Array  # [B, H, W] float {0, 1}: the region that was repainted
    probs: jax.Array  # [B, H, W] the predicted edit probability, upsampled to pixels
    scale_weights: jax.Array  # [B, n_scales]
    source: ImageFeatures  # CLIP of the source: cls [B, d], patches V [B, N, d]
    fused: jax.Array  # [B, N, width] H, the instruction-fused patch features (for L_sem)


def composite(mask: jax.Array, generated: jax.Array, source: jax.Array) -> jax.Array:
    """mask [B, H, W] or [B, H, W, 1] in [0, 1], G and source [B, H, W, 3] -> M G + (1 - M) source.

    The one compositing rule: training, the compiled edit and the Editor's full-resolution
    output all call it. Where the mask is exactly 0 the result is exactly the source (and
    exactly G where it is 1); a straight-through mask passes its gradient everywhere.
    """
    mask = mask[..., None] if mask.ndim == source.ndim - 1 else mask
    return mask * generated + (1.0 - mask) * source


@dataclasses.dataclass(frozen=True, eq=False)
class RegionEditModel:
    """Frozen towers, a frozen generator, and the trainable region predictor and projector."""

    clip: Clip
    t5: T5
    generator: generators.Generator
    region: region_lib.RegionPredictor
    projector: region_lib.SemanticProjector
    pixels: bool = False  # the region predictor also reads each patch's raw pixels

    @classmethod
    def from_towers(cls, towers: dict[str, Any], config, *, generator_steps: int | None = None) -> RegionEditModel:
        """Builds the model from loaded towers, ``config.region`` and ``config.generator``.

        ``generator_steps`` overrides ``config.generator.num_steps`` (training uses fewer).
        """
        clip, t5 = towers["clip"], towers["t5"]
        rc = config.region
        width = rc.width or clip.dim
        if rc.width and rc.width != clip.dim:
            raise ValueError(
                f"region.width {rc.width} must be 0 or CLIP's embedding size {clip.dim}: the "
                "projector f reads both H and the CLIP patch tokens V."
            )
        generator = generators.make(config.generator, towers, num_steps=generator_steps)
        if config.image_size % generator.multiple:
            raise ValueError(
                f"image_size {config.image_size} must be a multiple of {generator.multiple} "
                f"(what generator {generator.name!r} needs)."
            )
        return cls(
            clip=clip,
            t5=t5,
            generator=generator,
            region=region_lib.RegionPredictor(
                width=width,
                num_heads=rc.num_heads,
                depth=rc.depth,
                mlp_ratio=rc.mlp_ratio,
                scales=tuple(rc.scales),
                fusion=rc.fusion,
            ),
            projector=region_lib.SemanticProjector(out_dim=clip.dim, num_heads=rc.num_heads),
            pixels=bool(rc.pixels),
        )

    def frozen_params(self) -> dict[str, Any]:
        return {"clip": self.clip.params, "t5": self.t5.params, "generator": self.generator.params}

    def init(self, rng: jax.Array, boxed: bool = False) -> dict[str, Any]:
        """Fresh trainable params (random: an untrained region is meaningless).

        ``boxed=True`` keeps flax's logical-axis metadata for sharding rules.
        """
        grid, d, length = self.clip.grid, self.clip.dim, self.t5.max_length
        patches = jnp.zeros((1, grid * grid, d + (3 * self.clip.patch_size**2 if self.pixels else 0)))
        text, mask = jnp.zeros((1, length, self.t5.dim)), jnp.ones((1, length), jnp.int32)
        r_rng, p_rng = jax.random.split(rng)
        region_vars = self.region.init(r_rng, patches, text, mask)
        fused = jnp.zeros((1, grid * grid, self.region.width or d))
        params = {"region": region_vars["params"], "projector": self.projector.init(p_rng, fused)["params"]}
        return params if boxed else nn.meta.unbox(params)

    def clip_input(self, images: jax.Array) -> jax.Array:
        """[B, H, W, 3] -> CLIP's square input [B, S, S, 3]: the whole image resized (not cropped),
        so the patch grid covers every pixel of any aspect ratio and maps back onto it."""
        b, h, w, c = images.shape
        size = self.clip.image_size
        if (h, w) == (size, size):
            return images
        return jax.image.resize(images, (b, size, size, c), "bicubic", antialias=True).clip(0, 1)

    def encode_source(self, frozen, images: jax.Array) -> ImageFeatures:
        """[B, H, W, 3] -> CLIP CLS [B, d] and patch tokens V [B, N, d] (frozen)."""
        return self.clip.encode_image(frozen["clip"], self.clip_input(images))

    def region_inputs(self, patches: jax.Array, images: jax.Array) -> jax.Array:
        """What the region predictor reads per patch: V [B, N, d], with ``pixels`` also the raw
        pixels of each patch of CLIP's input, [B, N, d + 3 p^2]."""
        if not self.pixels:
            return patches
        pixels = region_lib.pixel_patches(self.clip_input(images), self.clip.grid)
        return jnp.concatenate([patches, pixels.astype(patches.dtype)], axis=-1)

    def predict_region(
        self, params, frozen, patches: jax.Array, t5_ids: jax.Array, t5_mask: jax.Array
    ) -> region_lib.RegionOutput:
        """``region_inputs`` [B, N, d(+3p^2)] + instruction ids/mask [B, L] -> RegionOutput on the grid."""
        tokens = self.t5.encode(frozen["t5"], t5_ids, t5_mask)
        return self.region.apply({"params": params["region"]}, patches, tokens, t5_mask)

    def forward(
        self,
        params,
        frozen,
        images: jax.Array,
        t5_ids: jax.Array,
        t5_mask: jax.Array,
        prompt_ids: jax.Array,
        rng: jax.Array,
        *,
        guidance_scale,
        threshold,
        user_mask: jax.Array | None = None,
        use_user_mask: jax.Array | bool = False,
        train: bool = False,
    ) -> EditOutput:
        """encode -> region -> mask -> generate -> composite, for editing and training alike.

        images [B, H, W, 3] in [0, 1] (H, W multiples of ``generator.multiple``); t5 ids/mask
        [B, L]; prompt_ids [B, L'] from ``generator.tokenize`` (the target description);
        threshold tau; ``user_mask`` [B, H, W] replaces the predicted mask where
        ``use_user_mask`` (may be traced, so one compiled function serves both cases).
        ``train``: straight-through mask and stop-gradient on G (static).
        """
        b, h, w, _ = images.shape
        source = self.encode_source(frozen, images)
        out = self.predict_region(params, frozen, self.region_inputs(source.patches, images), t5_ids, t5_mask)
        probs = region_lib.upsample(out.probs, h, w)
        hard = region_lib.hard_mask(probs, threshold)
        if user_mask is not None:
            hard = jnp.where(use_user_mask, (user_mask > 0.5).astype(jnp.float32), hard)
        generated = self.generator.generate(
            frozen["generator"], images, hard[..., None], prompt_ids, rng, guidance_scale
        )
        if train:
            generated = jax.lax.stop_gradient(generated)
            mask = region_lib.straight_through(hard, probs)  # forward: hard; backward: through p
        else:
            mask = hard
        return EditOutput(
            composite(mask, generated, images), generated, hard, probs, out.scale_weights, source, out.fused
        )
