"""Where to edit: the region predictor (Eq. 1-3, multi-scale) and the semantic projector f.

  F = LN(V' + CrossAttn(Q=V', K=P', V=P'))          Eq.1, V' = Dense(V), P' = Dense(P)
  H = [LN(x + SelfAttn(x)); LN(x + MLP(x))] ^ depth  Eq.2
  p = sigmoid(sum_s w_s * up(MLP_s(avgpool_s(H))))  Eq.3, multi-scale (DESIGN §1)

With ``fusion="decoder"`` Eq.1-2 become pre-LN decoder blocks over position-embedded patch
tokens, each with its own cross-attention to the instruction (DESIGN §1, the shapes world):
  x = Dense(V) + pos;  [x += SelfAttn(LN x); x += CrossAttn(LN x, P'); x += MLP(LN x)] ^ depth;  H = LN(x)

V: CLIP patch tokens ``[B, N, d]`` of the source (N = g * g), optionally with the raw pixels of
each patch appended (``[B, N, d + 3 p^2]``, see ``pixel_patches``), P: T5 instruction tokens
``[B, L, d_t]`` with a padding mask. With ``scales=(1,)`` the head is exactly Eq.3. The
mixing weights ``w`` are a softmax over scales predicted from the mean of H, so coarse
scales can take over for large and global edits. Parameters carry logical axis names
(``embed``, ``mlp``, ``heads``, ``kv``) for sharding rules.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

_DENSE = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp"))
_DENSE_OUT = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("mlp", "embed"))
_QKV = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "heads", "kv"))
_ATTN_OUT = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("heads", "kv", "embed"))
_NORM = nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",))
_POSITION = nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, None, "embed"))
FUSIONS = ("paper", "decoder")


class RegionOutput(NamedTuple):
    logits: jax.Array  # [B, g, g] mixed per-patch logits
    probs: jax.Array  # [B, g, g] sigmoid(logits), the edit probability per patch
    fused: jax.Array  # [B, N, D] H, the instruction-fused patch features (input of f in Eq.4)
    scale_weights: jax.Array  # [B, S] softmax mixing weights over ``scales``


def _attention(num_heads: int, dtype: Any, name: str) -> nn.MultiHeadDotProductAttention:
    return nn.MultiHeadDotProductAttention(
        num_heads=num_heads, dtype=dtype, kernel_init=_QKV, out_kernel_init=_ATTN_OUT, name=name
    )


def _norm(dtype: Any, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(dtype=dtype, scale_init=_NORM, name=name)


class Mlp(nn.Module):
    """Dense -> GELU -> Dense, [..., D] -> [..., out]."""

    hidden: int
    out: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype, kernel_init=_DENSE, name="fc1")(x))
        return nn.Dense(self.out, dtype=self.dtype, kernel_init=_DENSE_OUT, name="fc2")(x)


class RegionPredictor(nn.Module):
    """(V [B, N, d], P [B, L, d_t], mask [B, L]) -> RegionOutput on the g x g patch grid."""

    width: int = 768  # D, the token width inside the predictor
    num_heads: int = 8
    depth: int = 1  # Eq.2 self-attention blocks
    mlp_ratio: int = 4
    scales: tuple[int, ...] = (1, 2, 4)  # grid pooling factors; (1,) is the paper's Eq.3
    fusion: str = "paper"  # "paper": Eq.1 then Eq.2; "decoder": pre-LN self/cross/MLP blocks
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, patches: jax.Array, text: jax.Array, text_mask: jax.Array) -> RegionOutput:
        b, n, _ = patches.shape
        grid = int(round(n**0.5))
        if grid * grid != n:
            raise ValueError(f"patch tokens must form a square grid; got N={n}.")
        bad = [s for s in self.scales if grid % s]
        if bad or not self.scales:
            raise ValueError(
                f"region scales {self.scales} must be non-empty and divide the {grid}x{grid} patch grid; {bad} do not."
            )
        if self.fusion not in FUSIONS:
            raise ValueError(f"region fusion {self.fusion!r} is not one of {FUSIONS}.")
        v = nn.Dense(self.width, dtype=self.dtype, kernel_init=_DENSE, name="patch_in")(patches)
        p = nn.Dense(self.width, dtype=self.dtype, kernel_init=_DENSE, name="text_in")(text)
        keys = text_mask.astype(bool)[:, None, None, :]  # [B, 1, 1, L] broadcast over heads and queries
        if self.fusion == "paper":
            x = v + _attention(self.num_heads, self.dtype, "cross_attn")(v, p, mask=keys)
            x = _norm(self.dtype, "cross_norm")(x)  # F, Eq.1
            for i in range(self.depth):  # Eq.2
                attn = _attention(self.num_heads, self.dtype, f"self_attn_{i}")
                x = _norm(self.dtype, f"self_norm_{i}")(x + attn(x))
                mlp = Mlp(self.width * self.mlp_ratio, self.width, self.dtype, name=f"mlp_{i}")
                x = _norm(self.dtype, f"mlp_norm_{i}")(x + mlp(x))
        else:
            position = self.param("position", _POSITION, (1, n, self.width))
            x = v + position.astype(self.dtype)
            for i in range(self.depth):
                h = _norm(self.dtype, f"self_norm_{i}")(x)
                x = x + _attention(self.num_heads, self.dtype, f"self_attn_{i}")(h)
                h = _norm(self.dtype, f"cross_norm_{i}")(x)
                x = x + _attention(self.num_heads, self.dtype, f"cross_attn_{i}")(h, p, mask=keys)
                mlp = Mlp(self.width * self.mlp_ratio, self.width, self.dtype, name=f"mlp_{i}")
                x = x + mlp(_norm(self.dtype, f"mlp_norm_{i}")(x))
            x = _norm(self.dtype, "out_norm")(x)
        fused = x.astype(jnp.float32)

        grid_features = fused.reshape(b, grid, grid, self.width)
        logits = []
        for s in self.scales:  # Eq.3 at each scale, upsampled to the finest grid
            pooled = nn.avg_pool(grid_features, (s, s), strides=(s, s)) if s > 1 else grid_features
            head = Mlp(self.width // 2, 1, self.dtype, name=f"head_{s}")(pooled)[..., 0].astype(jnp.float32)
            logits.append(jax.image.resize(head, (b, grid, grid), "bilinear") if s > 1 else head)
        if len(self.scales) == 1:
            weights = jnp.ones((b, 1), jnp.float32)
        else:
            weights = jax.nn.softmax(
                nn.Dense(len(self.scales), kernel_init=_DENSE, name="scale_mix")(fused.mean(axis=1)).astype(
                    jnp.float32
                ),
                axis=-1,
            )
        mixed = jnp.einsum("bs,sbij->bij", weights, jnp.stack(logits))
        return RegionOutput(mixed, jax.nn.sigmoid(mixed), fused, weights)


class SemanticProjector(nn.Module):
    """f in Eq.4-5: attention pooling with a learned query, then a projection: [B, N, D] -> [B, d]."""

    out_dim: int  # d, CLIP's joint embedding size
    num_heads: int = 8
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        width = tokens.shape[-1]
        query = self.param(
            "query", nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")), (1, width)
        )
        query = jnp.broadcast_to(query[None].astype(self.dtype), (tokens.shape[0], 1, width))
        pooled = _attention(self.num_heads, self.dtype, "pool")(query, _norm(self.dtype, "norm")(tokens))[:, 0]
        return nn.Dense(self.out_dim, dtype=self.dtype, kernel_init=_DENSE, name="proj")(pooled).astype(jnp.float32)


def pixel_patches(images: jax.Array, grid: int) -> jax.Array:
    """[B, S, S, 3] (S = grid * p) -> the raw pixels of each patch, [B, grid * grid, 3 p^2], row-major
    like CLIP's patch tokens."""
    b, size, _, c = images.shape
    p = size // grid
    x = images.reshape(b, grid, p, grid, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, grid * grid, p * p * c)


def upsample(probs: jax.Array, height: int, width: int) -> jax.Array:
    """Patch-grid map [B, g, g] -> [B, height, width] (bilinear), e.g. to latent or pixel size."""
    return jax.image.resize(probs, (probs.shape[0], height, width), "bilinear")


def hard_mask(probs: jax.Array, threshold: float | jax.Array) -> jax.Array:
    """M = 1[p > tau] as float32, same shape as ``probs``."""
    return (probs > threshold).astype(jnp.float32)


def straight_through(hard: jax.Array, probs: jax.Array) -> jax.Array:
    """The hard mask M in the forward pass with the soft map's gradient: M + (p - stop_gradient(p)).

    The bracket is exactly 0 in the forward pass, so the result is exactly M.
    """
    return hard + (probs - jax.lax.stop_gradient(probs))
