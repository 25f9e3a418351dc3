"""The ViT of transformers' ``ViTModel`` layout (DINO's checkpoints), in Flax.

Settings come from a Hugging Face ``config.json`` (``model_type`` "vit") through
``ViTSettings.from_config``; parameter names follow the PyTorch keys without the ``vit.``
prefix (``encoder.layer.0.attention.attention.query``, ``layernorm_before``), so checkpoints load
by the converter's generic rules. Pixels are NHWC. No pooler: the DINO metric reads the CLS token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from regionedit_jax.nn.attention import dot_product_attention
from regionedit_jax.nn.compute import Compute
from regionedit_jax.nn.settings import field, vision_fields
from regionedit_jax.nn.transformer import ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class ViTSettings:
    """The tower's shape (transformers' ``ViTConfig`` defaults: ViT-B/16 at 224)."""

    width: int = 768
    mlp: int = 3072
    depth: int = 12
    heads: int = 12
    image_size: int = 224
    patch_size: int = 16
    channels: int = 3
    qkv_bias: bool = True
    activation: str = "gelu"
    eps: float = 1e-12

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "ViT config") -> ViTSettings:
        d = cls()
        return cls(qkv_bias=field(config, "qkv_bias", d.qkv_bias, where), **vision_fields(config, d, where))


class _Dense(nn.Module):  # a Dense kept one level down, as the checkpoints name it ("output.dense")
    features: int
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features, **self.compute.kw, name="dense")(x)


class _Attention(nn.Module):  # layer.i.attention: "attention" (q, k, v) and "output" (dense)
    settings: ViTSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        s = self.settings
        b, length, _ = x.shape
        qkv = _QKV(s, self.compute, name="attention")(x)
        out = dot_product_attention(*qkv, implementation=self.compute.attention)
        return _Dense(s.width, self.compute, name="output")(out.reshape(b, length, s.width))


class _QKV(nn.Module):
    settings: ViTSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        s = self.settings
        b, length, _ = x.shape
        dense = lambda name: nn.Dense(  # noqa: E731
            s.width, use_bias=s.qkv_bias, **self.compute.kw, name=name
        )
        return tuple(dense(n)(x).reshape(b, length, s.heads, s.width // s.heads) for n in ("query", "key", "value"))


class _Layer(nn.Module):
    settings: ViTSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        s = self.settings
        norm = lambda name: nn.LayerNorm(epsilon=s.eps, name=name, **self.compute.kw)  # noqa: E731
        x = x + _Attention(s, self.compute, name="attention")(norm("layernorm_before")(x))
        h = ACTIVATIONS[s.activation](_Dense(s.mlp, self.compute, name="intermediate")(norm("layernorm_after")(x)))
        return x + _Dense(s.width, self.compute, name="output")(h)


class _Layers(nn.Module):  # encoder.layer: "0".."depth-1"
    settings: ViTSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        for i in range(self.settings.depth):
            x = _Layer(self.settings, self.compute, name=str(i))(x)
        return x


class _Encoder(nn.Module):
    settings: ViTSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        return _Layers(self.settings, self.compute, name="layer")(x)


class _Embeddings(nn.Module):
    settings: ViTSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, pixels):
        s = self.settings
        cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, s.width), self.compute.param_dtype)
        positions = self.param(
            "position_embeddings", nn.initializers.normal(0.02), (1, s.grid**2 + 1, s.width), self.compute.param_dtype
        )
        patches = _Projection(s, self.compute, name="patch_embeddings")(pixels)
        b = patches.shape[0]
        tokens = jnp.concatenate([jnp.broadcast_to(cls.astype(self.compute.dtype), (b, 1, s.width)), patches], axis=1)
        return tokens + positions.astype(self.compute.dtype)


class _Projection(nn.Module):  # embeddings.patch_embeddings.projection
    settings: ViTSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, pixels):
        s, p = self.settings, self.settings.patch_size
        x = nn.Conv(
            s.width,
            (p, p),
            strides=(p, p),
            padding="VALID",
            **self.compute.kw,
            name="projection",
        )(pixels)
        return x.reshape(x.shape[0], -1, s.width)


class ViTModel(nn.Module):
    """pixels [B, S, S, C] (normalised, S = image_size) -> hidden [B, 1 + N, W] after the final
    LayerNorm (token 0 is the CLS)."""

    settings: ViTSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, pixels: jax.Array) -> jax.Array:
        s = self.settings
        if pixels.shape[1:] != (s.image_size, s.image_size, s.channels):
            raise ValueError(
                f"pixels must be [B, {s.image_size}, {s.image_size}, {s.channels}] (NHWC), got {pixels.shape}"
            )
        x = _Embeddings(s, self.compute, name="embeddings")(pixels.astype(self.compute.dtype))
        x = _Encoder(s, self.compute, name="encoder")(x)
        return nn.LayerNorm(epsilon=s.eps, name="layernorm", **self.compute.kw)(x)

    def shapes(self) -> Any:
        """The parameter tree as ``jax.ShapeDtypeStruct`` leaves (nothing is initialised)."""
        s = self.settings
        pixels = jnp.zeros((1, s.image_size, s.image_size, s.channels), self.compute.dtype)
        return jax.eval_shape(lambda: self.init(jax.random.key(0), pixels))["params"]
