"""Frozen CLIP (default ``openai/clip-vit-large-patch14``): text and image embeddings.

Text -> projected, L2-normalised end-of-text embedding ``[B, d]``. Image -> projected,
L2-normalised CLS embedding ``[B, d]`` and patch tokens ``[B, N, d]``: the last layer's
patch tokens through the same post-layernorm and visual projection as CLS, so they live
in CLIP's joint space (N = 16 x 16 for ViT-L/14 at 224, d = 768). Preprocessing
(shorter side to 224 bicubic, centre crop, CLIP normalisation) happens inside
``encode_image`` and is differentiable, so ``jax.grad`` reaches the pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax import images as image_ops
from regionedit_jax.nn import clip as clip_nn
from regionedit_jax.nn.attention import Implementation
from regionedit_jax.nn.compute import Compute
from regionedit_jax.towers import convert, files, text

DEFAULT = "openai/clip-vit-large-patch14"
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageFeatures(NamedTuple):
    cls: jax.Array  # [B, d] projected, L2-normalised
    patches: jax.Array  # [B, N, d] projected, not normalised; N = grid * grid


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x / jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + eps)


@dataclasses.dataclass(frozen=True, eq=False)
class Clip:
    """A loaded CLIP model. Apply functions are pure: ``params`` is passed explicitly."""

    module: clip_nn.ClipModel
    params: Any  # its parameters, in ``dtype``
    tokenizer: text.Tokenizer
    dtype: Any
    dim: int  # joint embedding size d
    image_size: int  # the vision tower's input resolution
    patch_size: int
    max_length: int  # text positions (77)
    mean: tuple[float, float, float] = _MEAN
    std: tuple[float, float, float] = _STD

    @property
    def grid(self) -> int:
        """Patch tokens per side."""
        return self.image_size // self.patch_size

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (input_ids, attention_mask), each [B, max_length] int32."""
        return self.tokenizer(texts, self.max_length)

    def encode_text(self, params, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """[B, L] token ids and mask -> [B, d] projected, L2-normalised text embeddings."""

        def fn(m, ids, mask):
            return m.text_projection(m.text_model(ids, mask)[1])

        out = self.module.apply({"params": params}, input_ids, attention_mask, method=fn)
        return l2_normalize(out.astype(jnp.float32))

    def preprocess(self, images) -> jax.Array:
        """Any-size NHWC images in [0, 1] -> [B, S, S, 3] normalised CLIP inputs."""
        x = image_ops.standardize(images)
        x = image_ops.resize_center_crop(x, self.image_size, self.image_size)
        return image_ops.normalize(x, self.mean, self.std).astype(self.dtype)

    def encode_image(self, params, images) -> ImageFeatures:
        """NHWC images in [0, 1], any size -> ``ImageFeatures`` (differentiable in images)."""

        def fn(m, pixels):
            hidden = m.vision_model(pixels)[0]  # [B, 1 + N, width], before post-LN
            tokens = m.visual_projection(m.vision_model.post_layernorm(hidden))
            return tokens[:, 0], tokens[:, 1:]

        cls, patches = self.module.apply({"params": params}, self.preprocess(images), method=fn)
        return ImageFeatures(l2_normalize(cls.astype(jnp.float32)), patches.astype(jnp.float32))

    @functools.cached_property
    def _encode_text_jit(self):
        return jax.jit(self.encode_text)

    def embed_texts(self, texts: Sequence[str]) -> jax.Array:
        """Convenience: texts -> [B, d] with the loaded params, compiled once per batch size."""
        return self._encode_text_jit(self.params, *self.tokenize(texts))


def load(name_or_path: str | os.PathLike = DEFAULT, dtype: Any = jnp.float32, attention: Implementation = None) -> Clip:
    """Loads CLIP from a hub id or a local folder in the transformers layout.

    The folder holds ``config.json`` (model_type "clip"), ``model.safetensors`` (PyTorch
    layout) and the tokenizer (``vocab.json`` + ``merges.txt`` or ``tokenizer.json``);
    ``preprocessor_config.json`` is optional. ``attention`` picks the attention kernel
    (``nn.attention``: None, "xla" or "cudnn").
    """
    folder = files.resolve(name_or_path, "CLIP")
    config = files.read_config(folder, "CLIP", key="model_type", allowed=["clip"])
    tokenizer = text.load_clip(folder, "CLIP")  # a missing tokenizer is reported before the weights load
    settings = files.settings(clip_nn.ClipSettings.from_config, config, "CLIP", folder)
    module = clip_nn.ClipModel(settings, Compute(dtype, dtype, attention))
    params = convert.load_params(
        folder,
        "model",
        module.shapes(),
        what="CLIP",
        naming="transformers",
        dtype=dtype,
        ignore=[r"position_ids$"],
    )
    mean, std = files.image_stats(folder, _MEAN, _STD)
    return Clip(
        module=module,
        params=params,
        tokenizer=tokenizer,
        dtype=dtype,
        dim=settings.projection_dim,
        image_size=settings.vision.image_size,
        patch_size=settings.vision.patch_size,
        max_length=settings.text.max_length,
        mean=mean,
        std=std,
    )
