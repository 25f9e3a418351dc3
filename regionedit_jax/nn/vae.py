"""SD's AutoencoderKL in Flax, NHWC: the encoder to a diagonal Gaussian over latents, the decoder.

``VAESettings.from_config`` reads a diffusers ``vae/config.json``, honouring every field the
architecture reads and refusing the values it does not build. Parameter names follow diffusers'
PyTorch keys with list indices joined; the mid-block attention's ``to_q/to_k/to_v/to_out.0``
are ``query/key/value/proj_attn`` here, as ``towers.convert`` maps them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from regionedit_jax.nn.attention import dot_product_attention
from regionedit_jax.nn.compute import Compute
from regionedit_jax.nn.conv_blocks import Downsample, ResnetBlock, Upsample, conv, group_norm
from regionedit_jax.nn.settings import SettingsError, field, refuse_unbuilt

_EPS = 1e-6  # diffusers' VAE blocks and norms
_ONLY = {
    "act_fn": ("silu",),
    "shift_factor": (None,),
    "latents_mean": (None,),
    "latents_std": (None,),
}


@dataclasses.dataclass(frozen=True)
class VAESettings:
    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    channels: tuple[int, ...] = (64,)  # block_out_channels
    layers_per_block: int = 1
    groups: int = 32
    quant_conv: bool = True  # use_quant_conv
    post_quant_conv: bool = True  # use_post_quant_conv
    mid_attention: bool = True  # mid_block_add_attention
    scaling_factor: float = 0.18215

    @property
    def factor(self) -> int:
        """Pixels per latent cell along each side."""
        return 2 ** (len(self.channels) - 1)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "VAE config") -> VAESettings:
        d = cls()
        refuse_unbuilt(config, _ONLY, where, "VAE")
        channels = config.get("block_out_channels", list(d.channels))
        for key, known in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
            blocks = config.get(key, [known] * len(channels))
            if list(blocks) != [known] * len(channels):
                raise SettingsError(
                    f"{where}: {key} must be {len(channels)} x {known!r} (one per block_out_channels), got {blocks}"
                )
        if not channels or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels):
            raise SettingsError(f"{where}: block_out_channels must be positive ints, got {channels!r}")
        out = cls(
            in_channels=field(config, "in_channels", d.in_channels, where),
            out_channels=field(config, "out_channels", d.out_channels, where),
            latent_channels=field(config, "latent_channels", d.latent_channels, where),
            channels=tuple(channels),
            layers_per_block=field(config, "layers_per_block", d.layers_per_block, where),
            groups=field(config, "norm_num_groups", d.groups, where),
            quant_conv=field(config, "use_quant_conv", d.quant_conv, where),
            post_quant_conv=field(config, "use_post_quant_conv", d.post_quant_conv, where),
            mid_attention=field(config, "mid_block_add_attention", d.mid_attention, where),
            scaling_factor=field(config, "scaling_factor", d.scaling_factor, where),
        )
        if any(c % out.groups for c in out.channels):
            raise SettingsError(
                f"{where}: every block width {out.channels} must be a multiple of norm_num_groups {out.groups}"
            )
        return out


class Posterior(NamedTuple):
    """The encoder's diagonal Gaussian over (unscaled) latents, [B, h, w, latent_channels] each."""

    mean: jax.Array
    logvar: jax.Array  # clipped to [-30, 20]

    def sample(self, rng: jax.Array) -> jax.Array:
        return self.mean + jnp.exp(0.5 * self.logvar) * jax.random.normal(rng, self.mean.shape, self.mean.dtype)


class _MidAttention(nn.Module):  # attentions_0: one head over all positions
    groups: int
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        kw = self.compute.kw
        b, height, width, c = x.shape
        h = group_norm(self.groups, _EPS, "group_norm", self.compute)(x).reshape(b, height * width, 1, c)
        q, k, v = (nn.Dense(c, name=name, **kw)(h) for name in ("query", "key", "value"))
        out = dot_product_attention(q, k, v, implementation=self.compute.attention)  # one head: 1 / sqrt(c)
        return x + nn.Dense(c, name="proj_attn", **kw)(out.reshape(b, height, width, c))


class _MidBlock(nn.Module):
    settings: VAESettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        s = self.settings
        width = s.channels[-1]
        x = ResnetBlock(width, s.groups, _EPS, name="resnets_0", compute=self.compute)(x)
        if s.mid_attention:
            x = _MidAttention(s.groups, name="attentions_0", compute=self.compute)(x)
        return ResnetBlock(width, s.groups, _EPS, name="resnets_1", compute=self.compute)(x)


class _DownBlock(nn.Module):
    settings: VAESettings
    level: int
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        s = self.settings
        width = s.channels[self.level]
        for j in range(s.layers_per_block):
            x = ResnetBlock(width, s.groups, _EPS, name=f"resnets_{j}", compute=self.compute)(x)
        if self.level < len(s.channels) - 1:
            x = Downsample(width, padding=0, name="downsamplers_0", compute=self.compute)(x)
        return x


class _UpBlock(nn.Module):
    settings: VAESettings
    level: int  # index into the reversed levels
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        s = self.settings
        width = s.channels[len(s.channels) - 1 - self.level]
        for j in range(s.layers_per_block + 1):
            x = ResnetBlock(width, s.groups, _EPS, name=f"resnets_{j}", compute=self.compute)(x)
        if self.level < len(s.channels) - 1:
            x = Upsample(width, name="upsamplers_0", compute=self.compute)(x)
        return x


class _Encoder(nn.Module):
    settings: VAESettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        s = self.settings
        x = conv(s.channels[0], 3, "conv_in", self.compute)(x)
        for i in range(len(s.channels)):
            x = _DownBlock(s, i, name=f"down_blocks_{i}", compute=self.compute)(x)
        x = _MidBlock(s, name="mid_block", compute=self.compute)(x)
        x = nn.silu(group_norm(s.groups, _EPS, "conv_norm_out", self.compute)(x))
        return conv(2 * s.latent_channels, 3, "conv_out", self.compute)(x)


class _Decoder(nn.Module):
    settings: VAESettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, z):
        s = self.settings
        x = conv(s.channels[-1], 3, "conv_in", self.compute)(z)
        x = _MidBlock(s, name="mid_block", compute=self.compute)(x)
        for i in range(len(s.channels)):
            x = _UpBlock(s, i, name=f"up_blocks_{i}", compute=self.compute)(x)
        x = nn.silu(group_norm(s.groups, _EPS, "conv_norm_out", self.compute)(x))
        return conv(s.out_channels, 3, "conv_out", self.compute)(x)


class AutoencoderKL(nn.Module):
    """``encode``: images [B, H, W, C] in [-1, 1] -> ``Posterior`` over [B, H/f, W/f, latent_channels];
    ``decode``: latents (unscaled) -> images [B, H, W, out_channels] in about [-1, 1]."""

    settings: VAESettings
    compute: Compute = Compute()

    def setup(self) -> None:
        s = self.settings
        self.encoder = _Encoder(s, compute=self.compute)
        self.decoder = _Decoder(s, compute=self.compute)
        if s.quant_conv:
            self.quant_conv = conv(2 * s.latent_channels, 1, "quant_conv", self.compute)
        if s.post_quant_conv:
            self.post_quant_conv = conv(s.latent_channels, 1, "post_quant_conv", self.compute)

    def encode(self, images: jax.Array) -> Posterior:
        f = self.settings.factor
        if images.shape[1] % f or images.shape[2] % f:
            raise ValueError(f"VAE input {images.shape[1]}x{images.shape[2]} must be a multiple of {f} on each side")
        moments = self.encoder(images.astype(self.compute.dtype))
        if self.settings.quant_conv:
            moments = self.quant_conv(moments)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return Posterior(mean, jnp.clip(logvar, -30.0, 20.0))

    def decode(self, latents: jax.Array) -> jax.Array:
        z = latents.astype(self.compute.dtype)
        if self.settings.post_quant_conv:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.decode(self.encode(images).mean)

    def shapes(self) -> Any:
        """The parameter tree as ``jax.ShapeDtypeStruct`` leaves (nothing is initialised)."""
        f = self.settings.factor
        x = jnp.zeros((1, f, f, self.settings.in_channels), self.compute.dtype)
        return jax.eval_shape(lambda: self.init(jax.random.key(0), x))["params"]
