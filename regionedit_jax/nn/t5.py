"""The T5 encoder in Flax (T5 v1.0 ReLU and v1.1 / FLAN gated-GELU feed-forwards).

Settings come from a Hugging Face ``config.json`` (``model_type`` "t5") through
``T5Settings.from_config``; parameter names follow the PyTorch keys
(``encoder.block.0.layer.0.SelfAttention.q``, ``shared``), so a full encoder-decoder checkpoint
loads by the converter's generic rules (its decoder skipped). Attention is unscaled, as T5 was
trained; one relative-position bias, computed by the first block, is shared by every block.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax.nn.attention import dot_product_attention
from regionedit_jax.nn.compute import Compute
from regionedit_jax.nn.settings import SettingsError, field

# feed_forward_proj -> (gated, activation); transformers reads "gated-gelu" as the tanh GELU.
_FEED_FORWARDS = {
    "relu": (False, jax.nn.relu),
    "gated-gelu": (True, lambda x: jax.nn.gelu(x, approximate=True)),
    "gated-gelu_new": (True, lambda x: jax.nn.gelu(x, approximate=True)),
    "gated-silu": (True, jax.nn.silu),
}


@dataclasses.dataclass(frozen=True)
class T5Settings:
    """The encoder's shape (transformers' ``T5Config`` defaults: t5-small)."""

    vocab_size: int = 32128
    width: int = 512  # d_model
    head_dim: int = 64  # d_kv
    mlp: int = 2048  # d_ff
    depth: int = 6  # num_layers
    heads: int = 8
    buckets: int = 32  # relative_attention_num_buckets
    max_distance: int = 128  # relative_attention_max_distance
    feed_forward: str = "relu"  # feed_forward_proj
    eps: float = 1e-6

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "T5 config") -> T5Settings:
        d = cls()
        out = cls(
            vocab_size=field(config, "vocab_size", d.vocab_size, where),
            width=field(config, "d_model", d.width, where),
            head_dim=field(config, "d_kv", d.head_dim, where),
            mlp=field(config, "d_ff", d.mlp, where),
            depth=field(config, "num_layers", d.depth, where),
            heads=field(config, "num_heads", d.heads, where),
            buckets=field(config, "relative_attention_num_buckets", d.buckets, where),
            max_distance=field(config, "relative_attention_max_distance", d.max_distance, where),
            feed_forward=field(config, "feed_forward_proj", d.feed_forward, where),
            eps=field(config, "layer_norm_epsilon", d.eps, where),
        )
        if out.feed_forward not in _FEED_FORWARDS:
            raise SettingsError(
                f"{where}: feed_forward_proj {out.feed_forward!r} is not supported; supported: {sorted(_FEED_FORWARDS)}"
            )
        if out.buckets < 4 or out.max_distance <= out.buckets // 4:
            raise SettingsError(
                f"{where}: relative_attention_num_buckets {out.buckets} and relative_attention_max_distance "
                f"{out.max_distance} leave no logarithmic buckets (need buckets >= 4, max_distance > buckets / 4)"
            )
        return out


def relative_buckets(length: int, buckets: int, max_distance: int) -> np.ndarray:
    """int32 [L, L]: the bidirectional bucket of key position j relative to query position i.

    Half the buckets are for keys after the query; within each half, distances below a quarter
    of the buckets get their own bucket and larger ones share logarithmic ones up to
    ``max_distance``. Float32 arithmetic, as the PyTorch reference computes it.
    """
    position = np.arange(length)
    relative = position[None, :] - position[:, None]
    half = buckets // 2
    exact = half // 2
    distance = np.abs(relative)
    ratio = np.maximum(distance, exact).astype(np.float32) / np.float32(exact)  # >= 1: only large ones are used
    scaled = np.log(ratio) / np.float32(math.log(max_distance / exact))
    large = np.minimum(exact + (scaled * np.float32(half - exact)).astype(np.int64), half - 1)
    return ((relative > 0) * half + np.where(distance < exact, distance, large)).astype(np.int32)


class RmsNorm(nn.Module):
    """T5's LayerNorm: x / rms(x) * weight, no mean and no bias, in float32. [..., W] -> [..., W]."""

    eps: float
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        weight = self.param("weight", nn.initializers.ones, (x.shape[-1],), self.compute.param_dtype)
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        return (weight.astype(jnp.float32) * x32).astype(self.compute.dtype)


class _SelfAttention(nn.Module):
    settings: T5Settings
    relative_bias: bool  # the first block owns the relative-position embedding
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, bias: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        s = self.settings
        b, length, _ = x.shape
        inner = s.heads * s.head_dim
        dense = lambda n, name: nn.Dense(  # noqa: E731
            n, use_bias=False, **self.compute.kw, name=name
        )
        q, k, v = (dense(inner, n)(x).reshape(b, length, s.heads, s.head_dim) for n in ("q", "k", "v"))
        if self.relative_bias:
            table = nn.Embed(s.buckets, s.heads, param_dtype=self.compute.param_dtype, name="relative_attention_bias")
            bias = table(jnp.asarray(relative_buckets(length, s.buckets, s.max_distance)))  # [L, L, H]
            bias = jnp.transpose(bias, (2, 0, 1))[None].astype(self.compute.dtype)  # [1, H, L, L]
        out = dot_product_attention(q, k, v, bias=bias, mask=mask, scale=1.0, implementation=self.compute.attention)
        return dense(s.width, "o")(out.reshape(b, length, inner)), bias


class _FeedForward(nn.Module):
    settings: T5Settings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = self.settings
        gated, act = _FEED_FORWARDS[s.feed_forward]
        dense = lambda n, name: nn.Dense(  # noqa: E731
            n, use_bias=False, **self.compute.kw, name=name
        )
        h = act(dense(s.mlp, "wi_0")(x)) * dense(s.mlp, "wi_1")(x) if gated else act(dense(s.mlp, "wi")(x))
        return dense(s.width, "wo")(h)


class _AttentionLayer(nn.Module):  # block.i.layer.0
    settings: T5Settings
    relative_bias: bool
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x, mask, bias):
        y = RmsNorm(self.settings.eps, name="layer_norm", compute=self.compute)(x)
        y, bias = _SelfAttention(self.settings, self.relative_bias, name="SelfAttention", compute=self.compute)(
            y, mask, bias
        )
        return x + y, bias


class _FeedForwardLayer(nn.Module):  # block.i.layer.1
    settings: T5Settings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x):
        return x + _FeedForward(self.settings, name="DenseReluDense", compute=self.compute)(
            RmsNorm(self.settings.eps, name="layer_norm", compute=self.compute)(x)
        )


class _BlockLayers(nn.Module):  # block.i.layer: "0" attention, "1" feed-forward
    settings: T5Settings
    relative_bias: bool
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x, mask, bias):
        x, bias = _AttentionLayer(self.settings, self.relative_bias, name="0", compute=self.compute)(x, mask, bias)
        return _FeedForwardLayer(self.settings, name="1", compute=self.compute)(x), bias


class _Block(nn.Module):  # encoder.block.i
    settings: T5Settings
    relative_bias: bool
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x, mask, bias):
        return _BlockLayers(self.settings, self.relative_bias, self.compute, name="layer")(x, mask, bias)


class _Blocks(nn.Module):  # encoder.block: "0".."depth-1"; the first owns the relative bias
    settings: T5Settings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x, mask):
        bias = None
        for i in range(self.settings.depth):
            x, bias = _Block(self.settings, i == 0, self.compute, name=str(i))(x, mask, bias)
        return x


class _Stack(nn.Module):  # encoder
    settings: T5Settings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x, mask):
        x = _Blocks(self.settings, name="block", compute=self.compute)(x, mask)
        return RmsNorm(self.settings.eps, name="final_layer_norm", compute=self.compute)(x)


class T5Encoder(nn.Module):
    """ids [B, L], mask [B, L] (1 = token) -> hidden [B, L, d_model] after the final norm."""

    settings: T5Settings
    compute: Compute = Compute()

    def setup(self) -> None:
        s = self.settings
        self.shared = nn.Embed(s.vocab_size, s.width, param_dtype=self.compute.param_dtype)
        self.encoder = _Stack(s, self.compute)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        mask = None if attention_mask is None else (attention_mask[:, None, None, :] > 0)
        return self.encoder(self.shared(input_ids).astype(self.compute.dtype), mask)

    def shapes(self, length: int = 8) -> Any:
        """The parameter tree as ``jax.ShapeDtypeStruct`` leaves (nothing is initialised)."""
        ids = jnp.zeros((1, length), jnp.int32)
        return jax.eval_shape(lambda: self.init(jax.random.key(0), ids, ids))["params"]
