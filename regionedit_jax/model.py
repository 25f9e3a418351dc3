"""The method's forward pass, shared by the Editor and the train step (one implementation).

  images -> CLIP patch tokens V (frozen) ─┐
  instruction -> T5 tokens P (frozen) ────┴> RegionPredictor -> p [B, g, g]
  p -> upsample to pixels -> M = 1[p > tau] -> SD inpainting sampler (frozen) -> G
  edited = M * G + (1 - M) * images

Trainable params: ``{"region": ..., "projector": ...}``; frozen params:
``{"clip": ..., "t5": ..., "sd": ...}`` (the towers' own trees, never optimised).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from regionedit_jax import region as region_lib
from regionedit_jax.sampler import InpaintSampler, SamplerOptions
from regionedit_jax.towers.clip import Clip, ImageFeatures
from regionedit_jax.towers.sd_inpaint import SDInpaint
from regionedit_jax.towers.t5 import T5


class EditOutput(NamedTuple):
    edited: jax.Array  # [B, S, S, 3] in [0, 1]: G inside the mask, the source outside
    generated: jax.Array  # [B, S, S, 3] the sampler's full image G
    mask: jax.Array  # [B, S, S] float {0, 1}: the region that was repainted
    probs: jax.Array  # [B, S, S] the predicted edit probability, upsampled to pixels
    scale_weights: jax.Array  # [B, n_scales]


@dataclasses.dataclass(frozen=True, eq=False)
class RegionEditModel:
    """Frozen towers + the trainable region predictor and projector, as pure functions."""

    clip: Clip
    t5: T5
    sd: SDInpaint
    region: region_lib.RegionPredictor
    projector: region_lib.SemanticProjector
    image_size: int  # S: the square resolution edits run at (a multiple of the VAE factor)

    @classmethod
    def from_towers(cls, towers: dict[str, Any], config) -> RegionEditModel:
        """Builds the model from loaded towers and ``config.region`` / ``config.image_size``."""
        clip, t5, sd = towers["clip"], towers["t5"], towers["sd_inpaint"]
        rc = config.region
        width = rc.width or clip.dim
        multiple = InpaintSampler(sd, SamplerOptions()).multiple
        if config.image_size % multiple:
            raise ValueError(f"image_size {config.image_size} must be a multiple of {multiple} (the VAE factor "
                             "times the UNet's downsampling).")
        if rc.width and rc.width != clip.dim:
            raise ValueError(f"region.width {rc.width} must be 0 or CLIP's embedding size {clip.dim}: the "
                             "projector f reads both H and the CLIP patch tokens V.")
        return cls(clip=clip, t5=t5, sd=sd, image_size=config.image_size,
                   region=region_lib.RegionPredictor(width=width, num_heads=rc.num_heads, depth=rc.depth,
                                                     mlp_ratio=rc.mlp_ratio, scales=tuple(rc.scales)),
                   projector=region_lib.SemanticProjector(out_dim=clip.dim, num_heads=rc.num_heads))

    def frozen_params(self) -> dict[str, Any]:
        return {"clip": self.clip.params, "t5": self.t5.params, "sd": self.sd.params}

    def init(self, rng: jax.Array, boxed: bool = False) -> dict[str, Any]:
        """Fresh trainable params (random: an untrained region is meaningless).

        ``boxed=True`` keeps flax's logical-axis metadata for sharding rules.
        """
        grid, d, length = self.clip.grid, self.clip.dim, self.t5.max_length
        patches = jnp.zeros((1, grid * grid, d))
        text, mask = jnp.zeros((1, length, self.t5.dim)), jnp.ones((1, length), jnp.int32)
        r_rng, p_rng = jax.random.split(rng)
        region_vars = self.region.init(r_rng, patches, text, mask)
        fused = jnp.zeros((1, grid * grid, self.region.width or d))
        params = {"region": region_vars["params"],
                  "projector": self.projector.init(p_rng, fused)["params"]}
        return params if boxed else nn.meta.unbox(params)

    def encode_source(self, frozen, images: jax.Array) -> ImageFeatures:
        """[B, S, S, 3] -> CLIP CLS [B, d] and patch tokens V [B, N, d] (frozen)."""
        return self.clip.encode_image(frozen["clip"], images)

    def predict_region(self, params, frozen, patches: jax.Array, t5_ids: jax.Array,
                       t5_mask: jax.Array) -> region_lib.RegionOutput:
        """V [B, N, d] + instruction ids/mask [B, L] -> RegionOutput on the patch grid."""
        tokens = self.t5.encode(frozen["t5"], t5_ids, t5_mask)
        return self.region.apply({"params": params["region"]}, patches, tokens, t5_mask)

    def edit(self, params, frozen, images: jax.Array, t5_ids: jax.Array, t5_mask: jax.Array,
             prompt_ids: jax.Array, rng: jax.Array, guidance_scale, threshold, sampler: InpaintSampler,
             mask: jax.Array | None = None, use_mask: jax.Array | bool = True) -> EditOutput:
        """Predicts the region (or takes ``mask`` [B, S, S] where ``use_mask``), repaints it, composites.

        images [B, S, S, 3] in [0, 1]; t5 ids/mask [B, L]; prompt_ids [B, 77] (target
        description for the SD text encoder); threshold tau; sampler built for this model's SD.
        ``use_mask`` may be traced, so one compiled function serves both cases.
        """
        s = images.shape[1]
        out = self.predict_region(params, frozen, self.encode_source(frozen, images).patches, t5_ids, t5_mask)
        probs = region_lib.upsample(out.probs, s, s)
        hard = region_lib.hard_mask(probs, threshold)
        if mask is not None:
            hard = jnp.where(use_mask, mask.astype(jnp.float32), hard)
        generated = sampler(frozen["sd"], images, hard[..., None], prompt_ids, rng, guidance_scale)
        edited = hard[..., None] * generated + (1.0 - hard[..., None]) * images
        return EditOutput(edited, generated, hard, probs, out.scale_weights)

    def sampler(self, options: SamplerOptions) -> InpaintSampler:
        return InpaintSampler(self.sd, options)
