"""The SD inpainting sampler: preservation, determinism, guidance, diffusers parity and errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from regionedit_jax.generators.sd_inpaint import InpaintSampler, SamplerOptions, ddim_schedule, ddim_step
from regionedit_jax.towers import sd_inpaint

B, SIZE, STEPS, W = 2, 32, 3, 7.5


@pytest.fixture(scope="module")
def sampler(sd_tower):
    """Blend on with DDIM noise (eta 1): every random draw of the sampler."""
    return InpaintSampler(sd_tower, SamplerOptions(num_steps=STEPS, eta=1.0))


@pytest.fixture(scope="module")
def plain(sd_tower):
    """Blend off, eta 0: the bare 9-channel model, comparable with diffusers."""
    return InpaintSampler(sd_tower, SamplerOptions(num_steps=STEPS, blend=False))


@pytest.fixture(scope="module")
def jitted(sd_tower):
    """The tower's pure functions, compiled once for the references."""
    return {name: jax.jit(getattr(sd_tower, name)) for name in ("vae_encode", "vae_decode", "encode_text", "unet")}


@pytest.fixture(scope="module")
def inputs(sd_tower):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(B, SIZE, SIZE, 3)).astype(np.float32)
    masks = np.zeros((B, SIZE, SIZE, 1), np.float32)
    masks[0, 8:24, 4:20] = 1
    masks[1, 16:, :] = 1
    ids = sd_tower.tokenize(["a red apple on a table", "a small dog"])
    f = sd_tower.vae_factor
    z_t = rng.standard_normal((B, SIZE // f, SIZE // f, sd_tower.latent_channels)).astype(np.float32)
    return images, masks, ids, z_t


def test_zero_mask_with_blend_gives_the_vae_reconstruction(sd_tower, sampler, jitted, inputs):
    images, masks, ids, _ = inputs
    out = sampler(sd_tower.params, images, np.zeros_like(masks), ids, jax.random.key(0), W)
    assert out.shape == (B, SIZE, SIZE, 3) and out.dtype == jnp.float32
    recon = jitted["vae_decode"](sd_tower.params, jitted["vae_encode"](sd_tower.params, images))
    np.testing.assert_allclose(out, recon, atol=1e-5)


def test_rng_determinism(sd_tower, sampler, inputs):
    images, masks, ids, _ = inputs
    run = lambda seed: np.asarray(
        sampler(
            sd_tower.params,
            images,
            masks,
            ids,
            jax.random.key(seed),
            W,
        )
    )
    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def _cond_only_reference(sd, fn, images, masks, ids, z_t, num_steps):
    """A host DDIM loop on the conditional branch only (no guidance, no blending)."""
    s, f = sd.schedule, sd.vae_factor
    ratio = s.num_train_timesteps // num_steps
    steps = [int(i * ratio) + s.steps_offset for i in reversed(range(num_steps))]
    ac = s.alphas_cumprod
    grey = images * (1 - masks) + 0.5 * masks
    z_masked = fn["vae_encode"](sd.params, grey)
    m = masks[:, ::f, ::f]  # nearest downsampling of a block-aligned mask
    text = fn["encode_text"](sd.params, ids)
    z = jnp.asarray(z_t)
    for t in steps:
        eps = fn["unet"](sd.params, jnp.concatenate([z, m, z_masked], -1), jnp.full((B,), t), text)
        a_t = ac[t]
        a_prev = ac[t - ratio] if t - ratio >= 0 else (1.0 if s.set_alpha_to_one else ac[0])
        x0 = (z - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
        z = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
    return fn["vae_decode"](sd.params, z)


def test_guidance_one_is_the_conditional_prediction(sd_tower, plain, jitted, inputs):
    images, masks, ids, z_t = inputs
    assert sd_tower.schedule.prediction_type == "epsilon"
    out = plain(sd_tower.params, images, masks, ids, jax.random.key(0), 1.0, init_latents=z_t)
    ref = _cond_only_reference(sd_tower, jitted, images, masks, ids, z_t, STEPS)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    other = plain(sd_tower.params, images, masks, ids, jax.random.key(0), W, init_latents=z_t)
    assert np.abs(np.asarray(other) - np.asarray(ref)).max() > 1e-3


def _exact_geglu(next_fun, args, kwargs, context):
    """A flax method interceptor: diffusers' ``FlaxGEGLU`` with the exact (erf) GELU that SD was
    trained with (diffusers 0.39's Flax GEGLU calls the tanh approximation)."""
    from diffusers.models.attention_flax import FlaxGEGLU

    if not (isinstance(context.module, FlaxGEGLU) and context.method_name == "__call__"):
        return next_fun(*args, **kwargs)
    module, hidden_states = context.module, args[0]
    hidden_linear, hidden_gelu = jnp.split(module.proj(hidden_states), 2, axis=-1)
    return hidden_linear * jax.nn.gelu(hidden_gelu, approximate=False)


def test_matches_the_diffusers_flax_pipeline(sd_tower, tiny_bundle, plain, inputs, monkeypatch):
    """Blend off, same z_T: equal to ``FlaxStableDiffusionInpaintPipeline`` (diffusers 0.39) with
    diffusers' own Flax UNet, VAE and transformers' text encoder on the same weights.

    Differences made fair: the pipeline samples the masked image's VAE posterior with a key,
    the sampler uses its mean, so the pipeline's sample is patched to the mean; the pipeline's
    GEGLU gets the exact GELU (an interceptor); its guidance scale is passed as a 0-d array (a
    Python float becomes a [B] vector that broadcasts against the width).
    """
    from diffusers import (
        FlaxAutoencoderKL,
        FlaxDDIMScheduler,
        FlaxStableDiffusionInpaintPipeline,
        FlaxUNet2DConditionModel,
    )
    from diffusers.models import vae_flax
    from transformers import CLIPTextConfig, FlaxCLIPTextModel

    images, masks, ids, z_t = inputs
    folder = os.path.join(tiny_bundle, "sd_inpaint")
    with open(os.path.join(folder, "scheduler", "scheduler_config.json")) as f:
        scheduler = FlaxDDIMScheduler.from_config(json.load(f))
    text_encoder = FlaxCLIPTextModel(
        CLIPTextConfig.from_pretrained(os.path.join(folder, "text_encoder")), _do_init=False
    )
    library = {}
    for sub, cls in (("unet", FlaxUNet2DConditionModel), ("vae", FlaxAutoencoderKL)):
        with open(os.path.join(folder, sub, "config.json")) as f:
            library[sub] = cls.from_config(json.load(f))
    pipe = FlaxStableDiffusionInpaintPipeline(
        vae=library["vae"],
        text_encoder=text_encoder,
        tokenizer=sd_tower.tokenizer,
        unet=library["unet"],
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
    )
    params = {**sd_tower.params, "scheduler": scheduler.create_state()}
    monkeypatch.setattr(vae_flax.FlaxDiagonalGaussianDistribution, "sample", lambda self, key: self.mean)

    # The pipeline's prepare_inputs on arrays: NCHW, [-1, 1], masked pixels set to 0.
    mask_nchw = jnp.asarray(masks.transpose(0, 3, 1, 2))
    masked_nchw = jnp.asarray((images * 2 - 1).transpose(0, 3, 1, 2)) * (mask_nchw < 0.5)
    with nn.intercept_methods(_exact_geglu):
        ref = pipe(
            jnp.asarray(ids),
            mask_nchw,
            masked_nchw,
            params,
            jax.random.key(0),
            num_inference_steps=STEPS,
            height=SIZE,
            width=SIZE,
            guidance_scale=jnp.float32(W),
            latents=jnp.asarray(z_t.transpose(0, 3, 1, 2)),
            jit=False,
        ).images
    out = plain(sd_tower.params, images, masks, ids, jax.random.key(0), W, init_latents=z_t)
    diff = float(np.abs(np.asarray(out) - np.asarray(ref)).max())
    print(f"max |sampler - diffusers pipeline| = {diff:.3g}")
    assert ref.shape == out.shape and np.asarray(ref).std() > 0.05
    assert diff < 1e-4


def test_eta_adds_noise(sd_tower, sampler, plain, inputs):
    """Under an all-ones mask blending is the identity, so ``sampler`` and ``plain`` differ only in eta."""
    images, masks, ids, z_t = inputs
    full = np.ones_like(masks)
    a = sampler(sd_tower.params, images, full, ids, jax.random.key(0), W, init_latents=z_t)
    b = plain(sd_tower.params, images, full, ids, jax.random.key(0), W, init_latents=z_t)
    assert np.isfinite(np.asarray(a)).all()
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("set_alpha_to_one", [False, True])
def test_ddim_update_matches_diffusers(prediction_type, set_alpha_to_one):
    """Timesteps and eta-0 updates equal ``FlaxDDIMScheduler``'s, for both prediction types."""
    from diffusers import FlaxDDIMScheduler

    from regionedit_jax.towers import tiny

    config = {**tiny.SCHEDULER_CONFIG, "prediction_type": prediction_type, "set_alpha_to_one": set_alpha_to_one}
    scheduler = FlaxDDIMScheduler.from_config(config)
    state = scheduler.set_timesteps(scheduler.create_state(), num_inference_steps=4)
    table = ddim_schedule(sd_inpaint.NoiseSchedule.from_config(config), 4)
    np.testing.assert_array_equal(table["t"], np.asarray(state.timesteps))
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal((1, 4, 4, 4)), jnp.float32)
    for i, t in enumerate(table["t"]):
        out = jnp.asarray(rng.standard_normal(z.shape), jnp.float32)
        ref = scheduler.step(state, out, int(t), z).prev_sample
        z = ddim_step(z, out, table["a_t"][i], table["a_prev"][i], prediction_type)
        np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-5)


def test_shape_errors(sd_tower, sampler, inputs):
    images, masks, ids, z_t = inputs
    p, key = sd_tower.params, jax.random.key(0)
    with pytest.raises(ValueError, match=r"masks has shape \(2, 16, 16, 1\); expected \(2, 32, 32, 1\)"):
        sampler(p, images, masks[:, ::2, ::2], ids, key, W)
    assert sampler.multiple == 4  # tiny VAE factor 2 x tiny UNet downsampling 2
    with pytest.raises(ValueError, match=r"image size 30x30 must be a multiple of 4.*\(2, 28, 28, 3\)"):
        sampler(p, images[:, :30, :30], masks[:, :30, :30], ids, key, W)
    with pytest.raises(ValueError, match=r"init_latents has shape .*expected \(2, 16, 16, 4\)"):
        sampler(p, images, masks, ids, key, W, init_latents=z_t[:, :8])
    with pytest.raises(ValueError, match=r"prompt_ids has shape \(1, 77\); expected \(2, 77\)"):
        sampler(p, images, masks, ids[:1], key, W)
