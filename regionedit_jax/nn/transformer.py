"""The pre-LayerNorm transformer encoder of CLIP's text and vision towers.

Parameter names follow the PyTorch keys (``layers.0.self_attn.q_proj``, ``layer_norm1``,
``mlp.fc1``), so a checkpoint maps onto them by the converter's generic rules.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax

from regionedit_jax.nn.attention import dot_product_attention
from regionedit_jax.nn.compute import Compute


def quick_gelu(x: jax.Array) -> jax.Array:
    """OpenAI CLIP's GELU approximation, x * sigmoid(1.702 x)."""
    return x * jax.nn.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "quick_gelu": quick_gelu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


class SelfAttention(nn.Module):
    """Multi-head self-attention with biased q/k/v/out projections. [B, L, W] -> [B, L, W]."""

    heads: int
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        b, length, width = x.shape
        if width % self.heads:
            raise ValueError(f"width {width} is not a multiple of heads {self.heads}")
        dense = lambda name: nn.Dense(width, name=name, **self.compute.kw)  # noqa: E731
        split = lambda t: t.reshape(b, length, self.heads, width // self.heads)  # noqa: E731
        q, k, v = (split(dense(name)(x)) for name in ("q_proj", "k_proj", "v_proj"))
        out = dot_product_attention(q, k, v, mask=mask, implementation=self.compute.attention)
        return dense("out_proj")(out.reshape(b, length, width))


class Mlp(nn.Module):
    """fc1 -> activation -> fc2. [B, L, W] -> [B, L, W]."""

    hidden: int
    activation: str
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = ACTIVATIONS[self.activation](nn.Dense(self.hidden, name="fc1", **self.compute.kw)(x))
        return nn.Dense(x.shape[-1], name="fc2", **self.compute.kw)(h)


class EncoderLayer(nn.Module):
    """x + attn(LN1(x)), then + mlp(LN2(.)). [B, L, W] -> [B, L, W]."""

    heads: int
    mlp: int
    activation: str
    eps: float
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        norm = lambda name: nn.LayerNorm(epsilon=self.eps, name=name, **self.compute.kw)  # noqa: E731
        x = x + SelfAttention(self.heads, self.compute, name="self_attn")(norm("layer_norm1")(x), mask)
        return x + Mlp(self.mlp, self.activation, self.compute, name="mlp")(norm("layer_norm2")(x))


class _Layers(nn.Module):
    """The layer list, named ``0..depth-1`` under ``layers`` as in the checkpoints."""

    depth: int
    heads: int
    mlp: int
    activation: str
    eps: float
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        for i in range(self.depth):
            x = EncoderLayer(self.heads, self.mlp, self.activation, self.eps, self.compute, name=str(i))(x, mask)
        return x


class Encoder(nn.Module):
    """``depth`` pre-LN layers (no final norm). [B, L, W] -> [B, L, W]; ``mask`` [B, 1, L, L] bool."""

    depth: int
    heads: int
    mlp: int
    activation: str
    eps: float = 1e-5
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")
        return _Layers(self.depth, self.heads, self.mlp, self.activation, self.eps, self.compute, name="layers")(
            x, mask
        )
