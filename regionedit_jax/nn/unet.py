"""SD's UNet2DConditionModel in Flax (the SD 1.x and 2.x family), NHWC.

``UNetSettings.from_config`` reads a diffusers ``unet/config.json``: every field the architecture
reads is honoured, and a value this implementation does not build (another block type, class or
addition embeddings, a time-scale shift, ...) is refused with the field named, never ignored.
Parameter names follow diffusers' PyTorch keys with list indices joined (``down_blocks_0``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from regionedit_jax.nn.attention import dot_product_attention
from regionedit_jax.nn.compute import Compute
from regionedit_jax.nn.conv_blocks import Downsample, ResnetBlock, Upsample, conv, group_norm
from regionedit_jax.nn.settings import SettingsError, field, refuse_unbuilt

DOWN_BLOCKS = ("CrossAttnDownBlock2D", "DownBlock2D")
UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D")
# Fields whose other values build another architecture: (field, the values this one builds).
_ONLY = {
    "mid_block_type": ("UNetMidBlock2DCrossAttn",),
    "act_fn": ("silu",),
    "resnet_time_scale_shift": ("default",),
    "time_embedding_type": ("positional",),
    "class_embed_type": (None,),
    "addition_embed_type": (None,),
    "num_class_embeds": (None,),
    "encoder_hid_dim": (None,),
    "encoder_hid_dim_type": (None,),
    "time_cond_proj_dim": (None,),
    "time_embedding_dim": (None,),
    "time_embedding_act_fn": (None,),
    "timestep_post_act": (None,),
    "projection_class_embeddings_input_dim": (None,),
    "only_cross_attention": (False,),
    "dual_cross_attention": (False,),
    "resnet_skip_time_act": (False,),
    "class_embeddings_concat": (False,),
    "cross_attention_norm": (None,),
    "attention_type": ("default",),
    "conv_in_kernel": (3,),
    "conv_out_kernel": (3,),
    "transformer_layers_per_block": (1,),
    "reverse_transformer_layers_per_block": (None,),
    "mid_block_only_cross_attention": (None, False),
    "addition_time_embed_dim": (None,),
}


def _per_block(value: Any, n: int, key: str, where: str) -> tuple[int, ...]:
    values = (value,) * n if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(values, (list, tuple))
        or len(values) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    ):
        raise SettingsError(f"{where}: {key} must be a positive int or a list of {n}, got {value!r}")
    return tuple(values)


@dataclasses.dataclass(frozen=True)
class UNetSettings:
    in_channels: int = 4
    out_channels: int = 4
    down_blocks: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_blocks: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    channels: tuple[int, ...] = (320, 640, 1280, 1280)  # block_out_channels
    layers_per_block: int = 2
    heads: tuple[int, ...] = (8, 8, 8, 8)  # per down block (diffusers' attention_head_dim)
    cross_attention_dim: int = 1280
    linear_projection: bool = False  # use_linear_projection (SD 2.x)
    upcast_attention: bool = False  # attention logits in float32 (SD 2.1)
    groups: int = 32
    eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    center_input: bool = False
    downsample_padding: int = 1
    mid_scale: float = 1.0  # mid_block_scale_factor

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "UNet config") -> UNetSettings:
        d = cls()
        refuse_unbuilt(config, _ONLY, where, "UNet")
        down = tuple(config.get("down_block_types", d.down_blocks))
        up = tuple(config.get("up_block_types", d.up_blocks))
        for key, blocks, known in (("down_block_types", down, DOWN_BLOCKS), ("up_block_types", up, UP_BLOCKS)):
            unknown = [b for b in blocks if b not in known]
            if unknown:
                raise SettingsError(f"{where}: {key} holds {unknown}; this UNet builds {list(known)}")
        channels = tuple(config.get("block_out_channels", d.channels))
        if not (len(down) == len(up) == len(channels)):
            raise SettingsError(
                f"{where}: down_block_types ({len(down)}), up_block_types ({len(up)}) and block_out_channels "
                f"({len(channels)}) must have one entry per level"
            )
        heads_value = config.get("num_attention_heads") or config.get("attention_head_dim", 8)
        cross = config.get("cross_attention_dim", d.cross_attention_dim)
        if not isinstance(cross, int) or isinstance(cross, bool):
            raise SettingsError(f"{where}: cross_attention_dim must be one int, got {cross!r}")
        out = cls(
            in_channels=field(config, "in_channels", d.in_channels, where),
            out_channels=field(config, "out_channels", d.out_channels, where),
            down_blocks=down,
            up_blocks=up,
            channels=_per_block(list(channels), len(down), "block_out_channels", where),
            layers_per_block=field(config, "layers_per_block", d.layers_per_block, where),
            heads=_per_block(heads_value, len(down), "attention_head_dim", where),
            cross_attention_dim=cross,
            linear_projection=field(config, "use_linear_projection", d.linear_projection, where),
            upcast_attention=field(config, "upcast_attention", d.upcast_attention, where),
            groups=field(config, "norm_num_groups", d.groups, where),
            eps=field(config, "norm_eps", d.eps, where),
            flip_sin_to_cos=field(config, "flip_sin_to_cos", d.flip_sin_to_cos, where),
            freq_shift=field(config, "freq_shift", d.freq_shift, where, positive=False),
            center_input=field(config, "center_input_sample", d.center_input, where),
            downsample_padding=field(config, "downsample_padding", d.downsample_padding, where, positive=False),
            mid_scale=field(config, "mid_block_scale_factor", d.mid_scale, where),
        )
        for c, h in zip(out.channels, out.heads):
            if c % h or c % out.groups:
                raise SettingsError(
                    f"{where}: block width {c} must be a multiple of its {h} attention heads and of "
                    f"norm_num_groups {out.groups}"
                )
        return out


def timestep_embedding(t: jax.Array, dim: int, flip_sin_to_cos: bool, shift: float) -> jax.Array:
    """[B] timesteps -> [B, dim] sinusoidal embedding (diffusers' ``get_timestep_embedding``)."""
    half = dim // 2
    exponent = -math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / (half - shift)
    angles = t.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
    emb = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    if flip_sin_to_cos:
        emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


class _Attention(nn.Module):  # attn1 (self) / attn2 (cross): to_q, to_k, to_v without bias, to_out_0
    heads: int
    upcast: bool = False
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        kw = self.compute.kw
        b, n, width = x.shape
        context = x if context is None else context
        dense = lambda name: nn.Dense(width, use_bias=False, name=name, **kw)  # noqa: E731
        head = width // self.heads
        q = dense("to_q")(x).reshape(b, n, self.heads, head)
        k, v = (dense(name)(context).reshape(b, context.shape[1], self.heads, head) for name in ("to_k", "to_v"))
        if self.upcast:
            q, k = q.astype(jnp.float32), k.astype(jnp.float32)
            v = v.astype(jnp.float32)
        out = dot_product_attention(q, k, v, implementation=None if self.upcast else self.compute.attention)
        return nn.Dense(width, name="to_out_0", **kw)(out.reshape(b, n, width).astype(self.compute.dtype))


class _GegluFeedForward(nn.Module):  # ff: net_0.proj (to 2 x 4W), exact GELU gate, net_2
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = self.compute.kw
        width = x.shape[-1]
        h, gate = jnp.split(_Proj(8 * width, name="net_0", compute=self.compute)(x), 2, axis=-1)
        return nn.Dense(width, name="net_2", **kw)(h * jax.nn.gelu(gate, approximate=False))


class _Proj(nn.Module):
    features: int
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features, **self.compute.kw, name="proj")(x)


class _TransformerBlock(nn.Module):  # transformer_blocks_0
    heads: int
    upcast: bool = False
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x, context):
        kw = self.compute.kw
        attn = lambda name: _Attention(self.heads, self.upcast, name=name, compute=self.compute)  # noqa: E731
        norm = lambda name: nn.LayerNorm(epsilon=1e-5, name=name, **kw)  # noqa: E731
        x = x + attn("attn1")(norm("norm1")(x))
        x = x + attn("attn2")(norm("norm2")(x), context)
        return x + _GegluFeedForward(name="ff", compute=self.compute)(norm("norm3")(x))


class _Transformer2D(nn.Module):  # attentions_i: norm, proj_in, transformer_blocks_0, proj_out
    settings: UNetSettings  # its linear_projection, upcast_attention and groups
    heads: int
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x, context):
        s, kw = self.settings, self.compute.kw
        b, height, width, c = x.shape
        project = (
            (lambda name: nn.Dense(c, name=name, **kw))
            if s.linear_projection
            else (lambda name: conv(c, 1, name, self.compute))
        )
        h = group_norm(s.groups, 1e-6, "norm", self.compute)(x)
        if s.linear_projection:
            h = project("proj_in")(h.reshape(b, height * width, c))
        else:
            h = project("proj_in")(h).reshape(b, height * width, c)
        h = _TransformerBlock(self.heads, s.upcast_attention, self.compute, name="transformer_blocks_0")(h, context)
        if s.linear_projection:
            h = project("proj_out")(h).reshape(b, height, width, c)
        else:
            h = project("proj_out")(h.reshape(b, height, width, c))
        return x + h


class _DownBlock(nn.Module):
    settings: UNetSettings
    level: int
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x, temb, context):
        s = self.settings
        width, cross = s.channels[self.level], s.down_blocks[self.level] == "CrossAttnDownBlock2D"
        skips = []
        for j in range(s.layers_per_block):
            x = ResnetBlock(width, s.groups, s.eps, name=f"resnets_{j}", compute=self.compute)(x, temb)
            if cross:
                x = _Transformer2D(s, s.heads[self.level], self.compute, name=f"attentions_{j}")(x, context)
            skips.append(x)
        if self.level < len(s.channels) - 1:
            x = Downsample(width, s.downsample_padding, name="downsamplers_0", compute=self.compute)(x)
            skips.append(x)
        return x, skips


class _UpBlock(nn.Module):
    settings: UNetSettings
    level: int  # index into the reversed levels
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x, skips, temb, context):
        s = self.settings
        n = len(s.channels)
        width = s.channels[n - 1 - self.level]
        heads = s.heads[n - 1 - self.level]
        cross = s.up_blocks[self.level] == "CrossAttnUpBlock2D"
        for j in range(s.layers_per_block + 1):
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = ResnetBlock(width, s.groups, s.eps, name=f"resnets_{j}", compute=self.compute)(x, temb)
            if cross:
                x = _Transformer2D(s, heads, self.compute, name=f"attentions_{j}")(x, context)
        if self.level < n - 1:
            x = Upsample(width, name="upsamplers_0", compute=self.compute)(x)
        return x


class _MidBlock(nn.Module):
    settings: UNetSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x, temb, context):
        s = self.settings
        width = s.channels[-1]
        x = ResnetBlock(width, s.groups, s.eps, s.mid_scale, name="resnets_0", compute=self.compute)(x, temb)
        x = _Transformer2D(s, s.heads[-1], self.compute, name="attentions_0")(x, context)
        return ResnetBlock(width, s.groups, s.eps, s.mid_scale, name="resnets_1", compute=self.compute)(x, temb)


class _TimeEmbedding(nn.Module):
    features: int
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        kw = self.compute.kw
        return nn.Dense(self.features, name="linear_2", **kw)(
            nn.silu(nn.Dense(self.features, name="linear_1", **kw)(x))
        )


class UNet(nn.Module):
    """x [B, h, w, in_channels], timesteps [B], context [B, L, cross_attention_dim] -> [B, h, w, out_channels].
    h and w must be multiples of 2 ** (levels - 1)."""

    settings: UNetSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array, timesteps: jax.Array, context: jax.Array) -> jax.Array:
        s = self.settings
        factor = 2 ** (len(s.channels) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"UNet input {x.shape[1]}x{x.shape[2]} must be a multiple of {factor} on each side")
        x = x.astype(self.compute.dtype)
        if s.center_input:
            x = 2 * x - 1.0
        t = jnp.broadcast_to(jnp.asarray(timesteps), (x.shape[0],))
        temb = timestep_embedding(t, s.channels[0], s.flip_sin_to_cos, s.freq_shift)
        temb = _TimeEmbedding(4 * s.channels[0], name="time_embedding", compute=self.compute)(
            temb.astype(self.compute.dtype)
        )
        context = context.astype(self.compute.dtype)
        x = conv(s.channels[0], 3, "conv_in", self.compute)(x)
        skips = [x]
        for i in range(len(s.channels)):
            x, block_skips = _DownBlock(s, i, name=f"down_blocks_{i}", compute=self.compute)(x, temb, context)
            skips += block_skips
        x = _MidBlock(s, name="mid_block", compute=self.compute)(x, temb, context)
        for i in range(len(s.channels)):
            take = s.layers_per_block + 1
            block_skips, skips = skips[-take:], skips[:-take]
            x = _UpBlock(s, i, name=f"up_blocks_{i}", compute=self.compute)(x, block_skips, temb, context)
        x = nn.silu(group_norm(s.groups, s.eps, "conv_norm_out", self.compute)(x))
        return conv(s.out_channels, 3, "conv_out", self.compute)(x)

    def shapes(self, size: int | None = None) -> Any:
        """The parameter tree as ``jax.ShapeDtypeStruct`` leaves (nothing is initialised)."""
        s = self.settings
        size = size or 2 ** (len(s.channels) - 1)
        x = jnp.zeros((1, size, size, s.in_channels), self.compute.dtype)
        context = jnp.zeros((1, 1, s.cross_attention_dim), self.compute.dtype)
        return jax.eval_shape(lambda: self.init(jax.random.key(0), x, jnp.zeros((1,), jnp.int32), context))["params"]
