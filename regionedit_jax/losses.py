"""The paper's training losses (Eq.4-11) as pure functions of embeddings; batch-mean scalars.

  Eq.4  L_sem_tgt = 1 - cos(f(H), t_tgt)          Eq.5  L_sem_src = 1 - cos(f(V), t_src)
  Eq.6  L_sem = L_sem_tgt + L_sem_src
  Eq.7  L_clip = 1 - cos(E(I_edit), t_tgt)
  Eq.8  L_dir = 1 - cos(E(I_edit) - E(I_src), t_tgt - t_src)
  Eq.9  L_struct = mean_ij (S(Phi_edit)_ij - S(Phi_src)_ij)^2,  S_ij = cos(phi_i, phi_j)
  Eq.10 L_CLIP = l1 L_clip + l2 L_dir + l3 L_struct;   Eq.11 L = alpha L_sem + beta L_CLIP

E is CLIP's L2-normalised image embedding, t the normalised text embeddings, Phi the
patch tokens of an image. Every weight is a config value (``LossWeights``), so the
paper's ablations (Table 4) drop a term by setting its weight to 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LossWeights:
    alpha: float = 1.0  # L_sem (Eq.11)
    beta: float = 1.0  # L_CLIP (Eq.11)
    clip: float = 1.0  # l1, Eq.7
    direction: float = 1.0  # l2, Eq.8
    structure: float = 1.0  # l3, Eq.9
    direction_floor: float = 0.0  # delta in Eq.8's norm (0: exact Eq.8, unchanged rows left out)
    area: float = 0.0  # the minimal-edit prior: weight of the mean edit probability (not in the paper)


def cosine(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Cosine similarity along the last axis: [..., d] x [..., d] -> [...]."""
    dot = jnp.sum(a * b, axis=-1)
    return dot / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1) + eps)


def semantic(
    projected_fused: jax.Array, projected_source: jax.Array, text_target: jax.Array, text_source: jax.Array
) -> dict[str, jax.Array]:
    """Eq.4-6 from f(H) [B, d], f(V) [B, d], t_tgt [B, d], t_src [B, d]."""
    tgt = jnp.mean(1.0 - cosine(projected_fused, text_target))
    src = jnp.mean(1.0 - cosine(projected_source, text_source))
    return {"sem_tgt": tgt, "sem_src": src, "sem": tgt + src}


def clip_guidance(image_edit: jax.Array, text_target: jax.Array) -> jax.Array:
    """Eq.7 from E(I_edit) [B, d] and t_tgt [B, d]."""
    return jnp.mean(1.0 - cosine(image_edit, text_target))


def directional(
    image_edit: jax.Array,
    image_source: jax.Array,
    text_target: jax.Array,
    text_source: jax.Array,
    edited: jax.Array | None = None,
    floor: float = 0.0,
) -> jax.Array:
    """Eq.8: the image moves in the direction the text moves; embeddings [B, d].

    With ``floor`` = 0 this is Eq.8 exactly, and ``edited`` [B] (bool) marks rows whose image
    changed at all: for an empty mask E(I_edit) - E(I_src) is zero, its direction undefined
    and its gradient unbounded, so such rows are left out of the mean (the term is 0 when no
    row changed). Leaving them out rewards an empty mask with a loss of 0 instead of 1.

    With ``floor`` = delta > 0 the image direction's norm becomes sqrt(|dE|^2 + delta^2):
    1 - <dE, dt/|dt|> / sqrt(|dE|^2 + delta^2). For |dE| >> delta it is Eq.8; an unchanged
    image scores 1 (no movement towards the target), never 0, and its gradient is finite and
    points along the text direction, so every row counts and nothing rewards doing nothing.
    """
    image_dir, text_dir = image_edit - image_source, text_target - text_source
    if floor > 0:
        text_unit = text_dir / (jnp.linalg.norm(text_dir, axis=-1, keepdims=True) + 1e-8)
        norm = jnp.sqrt(jnp.sum(jnp.square(image_dir), axis=-1) + floor**2)
        return jnp.mean(1.0 - jnp.sum(image_dir * text_unit, axis=-1) / norm)
    if edited is None:
        return jnp.mean(1.0 - cosine(image_dir, text_dir))
    # Unchanged rows get a stand-in direction before the norm, so no 0/0 reaches the gradient.
    safe = jnp.where(edited[:, None], image_dir, text_dir)
    per_row = jnp.where(edited, 1.0 - cosine(safe, text_dir), 0.0)
    return jnp.sum(per_row) / jnp.maximum(jnp.sum(edited.astype(per_row.dtype)), 1.0)


def self_similarity(tokens: jax.Array) -> jax.Array:
    """[B, N, D] -> [B, N, N] cosine similarities between all token pairs."""
    unit = tokens / (jnp.linalg.norm(tokens, axis=-1, keepdims=True) + 1e-8)
    return jnp.einsum("bnd,bmd->bnm", unit, unit)


def structure(tokens_edit: jax.Array, tokens_source: jax.Array) -> jax.Array:
    """Eq.9 from patch tokens [B, N, D] of the edited and the source image."""
    return jnp.mean(jnp.square(self_similarity(tokens_edit) - self_similarity(tokens_source)))


def total(
    weights: LossWeights,
    *,
    projected_fused,
    projected_source,
    text_target,
    text_source,
    image_edit,
    image_source,
    tokens_edit,
    tokens_source,
    edited: jax.Array | None = None,
    probs: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq.10-11: the weighted total and every term (for metrics); ``edited`` as in ``directional``.

    ``probs`` [B, H, W], the edit probabilities, feed the minimal-edit prior ``area`` = mean p,
    added with ``weights.area``: the CLIP terms are indifferent to repainting more than the
    instruction needs whenever the generator reproduces the rest well, so nothing else prefers
    the smallest region that does the edit.
    """
    terms = semantic(projected_fused, projected_source, text_target, text_source)
    terms["clip"] = clip_guidance(image_edit, text_target)
    terms["direction"] = directional(
        image_edit, image_source, text_target, text_source, edited, weights.direction_floor
    )
    terms["structure"] = structure(tokens_edit, tokens_source)
    terms["clip_total"] = (
        weights.clip * terms["clip"] + weights.direction * terms["direction"] + weights.structure * terms["structure"]
    )
    terms["total"] = weights.alpha * terms["sem"] + weights.beta * terms["clip_total"]
    if probs is not None:
        terms["area"] = jnp.mean(probs)
        terms["total"] = terms["total"] + weights.area * terms["area"]
    return terms["total"], terms
