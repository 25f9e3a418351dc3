"""One training step: ``model.forward(train=True)`` -> CLIP of the edit -> Eq.4-11 -> AdamW update.

The generator and the threshold are not differentiable, so the forward pass composites
with the straight-through mask ``M + p - sg(p)`` and ``sg(G)``: the loss sees the hard-mask
edit, and ``dL/dp = (G - I_src) * dL/dI_edit`` (DESIGN §1). The generator's inputs carry
no tangents (the hard mask comes from a comparison), so differentiation never traces
through its sampling loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from regionedit_jax import losses
from regionedit_jax.model import RegionEditModel
from regionedit_jax.train.state import TrainState, learning_rate

Batch = dict[str, jax.Array]


def make_loss_fn(model: RegionEditModel, config) -> Callable:
    """loss_fn(params, frozen, batch, rng) -> (total, (terms, extras)).

    ``model`` is built with the training generator (``config.train.generator_steps``).
    """
    weights = losses.LossWeights(**config.loss)
    threshold, guidance = config.region.threshold, config.generator.guidance_scale

    def loss_fn(params, frozen, batch: Batch, rng: jax.Array):
        images = batch["image"].astype(jnp.float32) / 255.0  # [b, S, S, 3]
        out = model.forward(
            params,
            frozen,
            images,
            batch["t5_ids"],
            batch["t5_mask"],
            batch["prompt_ids"],
            rng,
            guidance_scale=guidance,
            threshold=threshold,
            train=True,
        )
        text_source = model.clip.encode_text(frozen["clip"], batch["clip_caption_ids"], batch["clip_caption_mask"])
        text_target = model.clip.encode_text(frozen["clip"], batch["clip_target_ids"], batch["clip_target_mask"])
        edit = model.clip.encode_image(frozen["clip"], out.edited)
        project = lambda tokens: model.projector.apply({"params": params["projector"]}, tokens)
        area = out.mask.mean(axis=(1, 2))
        total, terms = losses.total(
            weights,
            projected_fused=project(out.fused),
            projected_source=project(out.source.patches),
            text_target=text_target,
            text_source=text_source,
            image_edit=edit.cls,
            image_source=out.source.cls,
            tokens_edit=edit.patches,
            tokens_source=out.source.patches,
            edited=area > 0,
            probs=out.probs,
        )
        terms.update(mask_area=area.mean(), empty_masks=(area == 0).mean(), full_masks=(area == 1).mean())
        return total, (terms, {"edited": out.edited, "mask": out.mask})

    return loss_fn


def make_train_step(model: RegionEditModel, config) -> Callable:
    """train_step(state, frozen, batch, rng) -> (state, metrics, preview); pure, for one jax.jit."""
    loss_fn = make_loss_fn(model, config)
    schedule = learning_rate(config)

    def train_step(state: TrainState, frozen: Any, batch: Batch, rng: jax.Array):
        """-> (new state, scalar metrics, preview {"edited" [b,S,S,3] uint8, "mask" [b,S,S] uint8})."""
        rng = jax.random.fold_in(rng, state.step)
        (_, (terms, extras)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, frozen, batch, rng)
        metrics = {
            **terms,
            "grad_norm": optax.tree.norm(grads),
            "grad_norm_region": optax.tree.norm(grads["region"]),
            "lr": schedule(state.step),
        }
        preview = {
            "edited": jnp.round(extras["edited"] * 255).astype(jnp.uint8),
            "mask": extras["mask"].astype(jnp.uint8),
        }
        return state.apply_gradients(grads), metrics, preview

    return train_step
