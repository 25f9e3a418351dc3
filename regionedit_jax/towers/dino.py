"""Frozen DINO ViT (default ``facebook/dino-vits16``): CLS features for the DINO metric.

Images -> CLS token of the last layer (after the final layernorm) ``[B, width]``, with
the evaluation preprocessing of DESIGN §2 inside: shorter side to 256 bicubic, centre
crop 224, ImageNet normalisation.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp

from regionedit_jax import images as image_ops
from regionedit_jax.nn import vit
from regionedit_jax.nn.attention import Implementation
from regionedit_jax.nn.compute import Compute
from regionedit_jax.towers import convert, files

DEFAULT = "facebook/dino-vits16"
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True, eq=False)
class Dino:
    """A loaded ViT. ``encode_image`` is pure: ``params`` is passed explicitly."""

    module: vit.ViTModel
    params: Any
    dtype: Any
    dim: int  # hidden size (384 for ViT-S/16)
    image_size: int  # crop size fed to the ViT
    resize: int  # shorter side before the crop
    mean: tuple[float, float, float] = _MEAN
    std: tuple[float, float, float] = _STD

    def encode_image(self, params, images) -> jax.Array:
        """NHWC images in [0, 1], any size -> [B, dim] float32 CLS features."""
        x = image_ops.standardize(images)
        x = image_ops.resize_center_crop(x, self.resize, self.image_size)
        x = image_ops.normalize(x, self.mean, self.std).astype(self.dtype)
        hidden = self.module.apply({"params": params}, x)
        return hidden[:, 0].astype(jnp.float32)


def load(
    name_or_path: str | os.PathLike = DEFAULT,
    dtype: Any = jnp.float32,
    resize: int | None = None,
    attention: Implementation = None,
) -> Dino:
    """Loads a ViT from a hub id or a local folder in the transformers layout.

    The folder holds ``config.json`` (model_type "vit") and ``model.safetensors``
    (PyTorch layout; a pooler, if saved, is skipped); ``preprocessor_config.json`` is optional.
    ``resize`` (the shorter side before the centre crop) defaults to 256/224 of the crop;
    ``attention`` picks the attention kernel (``nn.attention``).
    """
    folder = files.resolve(name_or_path, "DINO")
    config = files.read_config(folder, "DINO", key="model_type", allowed=["vit"])
    settings = files.settings(vit.ViTSettings.from_config, config, "DINO", folder)
    module = vit.ViTModel(settings, Compute(dtype, dtype, attention))
    params = convert.load_params(
        folder,
        "model",
        module.shapes(),
        what="DINO",
        naming="transformers",
        dtype=dtype,
        ignore=[r"^pooler\."],
        strip_prefixes=["vit"],
    )
    mean, std = files.image_stats(folder, _MEAN, _STD)
    return Dino(
        module=module,
        params=params,
        dtype=dtype,
        dim=settings.width,
        image_size=settings.image_size,
        resize=resize or round(settings.image_size * 256 / 224),
        mean=mean,
        std=std,
    )
