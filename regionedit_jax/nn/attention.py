"""The one attention function every tower calls.

``implementation`` picks the kernel: ``"cudnn"`` is ``jax.nn.dot_product_attention``'s fused
flash-attention kernel on NVIDIA GPUs (bf16/fp16 inputs only); ``"xla"`` is two einsums around
a float32 softmax with the scale on the queries, which XLA compiles well everywhere (on CPU
2.3x faster than ``jax.nn.dot_product_attention``'s own XLA path at SD's 4096 tokens); ``None`` lets
``jax.nn.dot_product_attention`` choose on GPUs and takes ``"xla"`` elsewhere.

Long unmasked self-attention on the ``"xla"`` path (SD's 64 x 64 latents: 4096 tokens) runs in
blocks with an online softmax, as flash attention does, so the [Lq, Lk] logits never exist
whole: on CPU 2.3x faster again at 4096 tokens ([2, 4096, 8, 40]: 1058 -> 440 ms; PyTorch's
``scaled_dot_product_attention`` takes 238 ms there), equal to the plain path to 3e-7.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp

Implementation = Literal["xla", "cudnn"] | None
IMPLEMENTATIONS = (None, "xla", "cudnn")


def check_implementation(implementation: Implementation) -> Implementation:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    return implementation


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    *,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
    scale: float | None = None,
    implementation: Implementation = None,
) -> jax.Array:
    """Softmax attention.

    query [B, Lq, H, D], key and value [B, Lk, H, D]; ``mask`` bool broadcastable to
    [B, H, Lq, Lk] (True = attend); ``bias`` added to the logits, broadcastable likewise;
    ``scale`` multiplies the logits (default 1 / sqrt(D)) -> [B, Lq, H, D].
    """
    check_implementation(implementation)
    if implementation == "cudnn" or (implementation is None and jax.default_backend() == "gpu"):
        return jax.nn.dot_product_attention(
            query, key, value, bias=bias, mask=mask, scale=scale, implementation=implementation
        )
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    query = query * jnp.asarray(scale, query.dtype)
    blocks = _blocks(query.shape[1], key.shape[1])
    if mask is None and bias is None and blocks:
        return _blocked(query, key, value, *blocks)
    logits = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(value.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, value)


_Q_BLOCK, _K_BLOCK, _MIN_TOKENS = 512, 1024, 2048


def _blocks(lq: int, lk: int) -> tuple[int, int] | None:
    """(query block, key block) for long sequences that they divide, else None (the plain path)."""
    if lq >= _MIN_TOKENS and lk >= _MIN_TOKENS and lq % _Q_BLOCK == 0 and lk % _K_BLOCK == 0:
        return _Q_BLOCK, _K_BLOCK
    return None


def _blocked(query: jax.Array, key: jax.Array, value: jax.Array, q_block: int, k_block: int) -> jax.Array:
    """Scaled query [B, Lq, H, D], key and value [B, Lk, H, D] -> [B, Lq, H, D]: query blocks one at a
    time, each scanning the key blocks with a running max and sum (float32)."""
    b, lq, h, d = query.shape
    lk = key.shape[1]
    keys = key.reshape(b, lk // k_block, k_block, h, d).swapaxes(0, 1)
    values = value.reshape(b, lk // k_block, k_block, h, d).swapaxes(0, 1)

    def one_query_block(q):  # [B, q_block, H, D]
        def step(carry, block):
            top, total, acc = carry
            k, v = block
            logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
            new_top = jnp.maximum(top, logits.max(-1))
            weights = jnp.exp(logits - new_top[..., None])
            shrink = jnp.exp(top - new_top)
            total = total * shrink + weights.sum(-1)
            acc = acc * shrink[..., None] + jnp.einsum(
                "bhqk,bkhd->bhqd", weights.astype(v.dtype), v, preferred_element_type=jnp.float32
            )
            return (new_top, total, acc), None

        start = (
            jnp.full((b, h, q_block), -jnp.inf, jnp.float32),
            jnp.zeros((b, h, q_block), jnp.float32),
            jnp.zeros((b, h, q_block, d), jnp.float32),
        )
        (_, total, acc), _ = jax.lax.scan(step, start, (keys, values))
        return (acc / total[..., None]).swapaxes(1, 2)  # [B, q_block, H, D]

    blocks = query.reshape(b, lq // q_block, q_block, h, d).swapaxes(0, 1)
    out = jax.lax.map(one_query_block, blocks)  # [Lq / q_block, B, q_block, H, D]
    return out.swapaxes(0, 1).reshape(b, lq, h, d).astype(value.dtype)
