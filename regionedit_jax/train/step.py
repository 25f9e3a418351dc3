"""One training step: encode -> region -> straight-through mask -> sampler -> blend -> losses -> update.

The sampler and the threshold are not differentiable, so the loss sees the pixel-space
blend ``I_edit = m_st * sg(G) + (1 - m_st) * I_src`` with ``m_st = M + p - sg(p)``:
forward equals the hard-mask edit, backward gives ``dL/dp = (G - I_src) * dL/dI_edit``
(DESIGN §1). The sampler's inputs carry no tangents (the hard mask comes from a
comparison), so differentiation never traces through the UNet loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from regionedit_jax import losses, region as region_lib
from regionedit_jax.model import RegionEditModel
from regionedit_jax.sampler import SamplerOptions
from regionedit_jax.train.state import TrainState, learning_rate

Batch = dict[str, jax.Array]


def make_loss_fn(model: RegionEditModel, config) -> Callable:
    """loss_fn(params, frozen, batch, rng) -> (total, (terms, extras))."""
    weights = losses.LossWeights(**config.loss)
    sampler = model.sampler(SamplerOptions(num_steps=config.train.sampler_steps, eta=config.sampler.eta,
                                           blend=config.sampler.blend))
    threshold, guidance = config.region.threshold, config.train.guidance_scale

    def loss_fn(params, frozen, batch: Batch, rng: jax.Array):
        images = batch["image"].astype(jnp.float32) / 255.0  # [b, S, S, 3]
        size = images.shape[1]
        source = model.encode_source(frozen, images)  # E(I_src) [b, d], V [b, N, d]
        text_source = model.clip.encode_text(frozen["clip"], batch["clip_caption_ids"], batch["clip_caption_mask"])
        text_target = model.clip.encode_text(frozen["clip"], batch["clip_target_ids"], batch["clip_target_mask"])
        out = model.predict_region(params, frozen, source.patches, batch["t5_ids"], batch["t5_mask"])
        probs = region_lib.upsample(out.probs, size, size)  # [b, S, S]
        hard = region_lib.hard_mask(probs, threshold)
        # SD 1.x prompts use CLIP's tokenizer: the target ids are the SD prompt ids.
        generated = jax.lax.stop_gradient(
            sampler(frozen["sd"], images, hard[..., None], batch["clip_target_ids"], rng, guidance))
        mask = region_lib.straight_through(probs, threshold)[..., None]
        edited = mask * generated + (1.0 - mask) * images
        edit = model.clip.encode_image(frozen["clip"], edited)
        project = lambda tokens: model.projector.apply({"params": params["projector"]}, tokens)  # noqa: E731
        area = hard.mean(axis=(1, 2))
        total, terms = losses.total(
            weights, projected_fused=project(out.fused), projected_source=project(source.patches),
            text_target=text_target, text_source=text_source, image_edit=edit.cls, image_source=source.cls,
            tokens_edit=edit.patches, tokens_source=source.patches, edited=area > 0)
        terms.update(mask_area=area.mean(), empty_masks=(area == 0).mean(), full_masks=(area == 1).mean())
        return total, (terms, {"edited": edited, "mask": hard})

    return loss_fn


def make_train_step(model: RegionEditModel, config) -> Callable:
    """train_step(state, frozen, batch, rng) -> (state, metrics, preview); pure, for one jax.jit."""
    loss_fn = make_loss_fn(model, config)
    schedule = learning_rate(config)

    def train_step(state: TrainState, frozen: Any, batch: Batch, rng: jax.Array):
        """-> (new state, scalar metrics, preview {"edited" [b,S,S,3] uint8, "mask" [b,S,S] uint8})."""
        rng = jax.random.fold_in(rng, state.step)
        (_, (terms, extras)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, frozen, batch, rng)
        metrics = {**terms, "grad_norm": optax.tree.norm(grads),
                   "grad_norm_region": optax.tree.norm(grads["region"]), "lr": schedule(state.step)}
        preview = {"edited": jnp.round(extras["edited"] * 255).astype(jnp.uint8),
                   "mask": extras["mask"].astype(jnp.uint8)}
        return state.apply_gradients(grads), metrics, preview

    return train_step
