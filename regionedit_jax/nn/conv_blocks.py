"""The convolutional pieces of SD's UNet and VAE (NHWC): the ResNet block, down- and upsampling.

Names follow diffusers' PyTorch keys with list indices joined (``resnets_0.conv1``), as
``towers.convert``'s "diffusers" naming maps them.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from regionedit_jax.nn.compute import Compute


def group_norm(groups: int, eps: float, name: str, compute: Compute) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, epsilon=eps, name=name, **compute.kw)


def conv(features: int, kernel: int, name: str, compute: Compute, stride: int = 1, padding: Any = "SAME") -> nn.Conv:
    """A ``kernel`` x ``kernel`` convolution; "SAME" pads kernel // 2 on each side, as PyTorch's."""
    if padding == "SAME":
        padding = ((kernel // 2, kernel // 2),) * 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=padding, name=name, **compute.kw)


class ResnetBlock(nn.Module):
    """norm1 -> SiLU -> conv1 (+ the time embedding) -> norm2 -> SiLU -> conv2, plus the input
    (through a 1x1 ``conv_shortcut`` when the width changes), over ``output_scale``.
    x [B, H, W, C], temb [B, T] or None -> [B, H, W, features]."""

    features: int
    groups: int = 32
    eps: float = 1e-5
    output_scale: float = 1.0
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        kw = self.compute.kw
        h = conv(self.features, 3, "conv1", self.compute)(
            nn.silu(group_norm(self.groups, self.eps, "norm1", self.compute)(x))
        )
        if temb is not None:
            h = h + nn.Dense(self.features, name="time_emb_proj", **kw)(nn.silu(temb))[:, None, None, :]
        h = conv(self.features, 3, "conv2", self.compute)(
            nn.silu(group_norm(self.groups, self.eps, "norm2", self.compute)(h))
        )
        if x.shape[-1] != self.features:
            x = conv(self.features, 1, "conv_shortcut", self.compute)(x)
        return (x + h) / self.output_scale


class Downsample(nn.Module):
    """A stride-2 3x3 conv. ``padding`` 1 pads each side (the UNet); 0 pads only the bottom and
    right (the VAE encoder, as its PyTorch forward does). [B, H, W, C] -> [B, H/2, W/2, C]."""

    features: int
    padding: int = 1
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = ((self.padding, self.padding),) * 2 if self.padding else ((0, 1), (0, 1))
        return conv(self.features, 3, "conv", self.compute, stride=2, padding=pad)(x)


class Upsample(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 conv. [B, H, W, C] -> [B, 2H, 2W, C]."""

    features: int
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return conv(self.features, 3, "conv", self.compute)(x)
