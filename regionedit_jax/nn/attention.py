"""The one attention function every tower calls, over ``jax.nn.dot_product_attention``.

``implementation`` picks the kernel: ``None`` lets JAX choose, ``"xla"`` is portable, and
``"cudnn"`` is the fused flash-attention kernel on NVIDIA GPUs (bf16/fp16 inputs only).
"""

from __future__ import annotations

from typing import Literal

import jax

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
    return jax.nn.dot_product_attention(
        query,
        key,
        value,
        bias=bias,
        mask=mask,
        scale=scale,
        implementation=check_implementation(implementation),
    )
