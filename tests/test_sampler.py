"""The SD inpainting sampler: preservation, determinism, guidance, diffusers parity and errors."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regionedit_jax.generators.sd_inpaint import InpaintSampler, SamplerOptions, ddim_schedule, ddim_step
from regionedit_jax.towers import sd_inpaint, tiny

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "torch_reference.npz")
B, SIZE, STEPS, W = 2, 32, 3, 7.5


@pytest.fixture(scope="module")
def reference(tiny_bundle):
    """The PyTorch reference (``tests/make_torch_reference.py``) for this bundle."""
    with np.load(FIXTURE) as data:
        out = {k: data[k] for k in data.files}
    assert tiny.weights_digest(tiny_bundle) == str(out["bundle_sha256"]), "rerun tests/make_torch_reference.py"
    return out


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


def test_matches_the_diffusers_pipeline(sd_tower, plain, reference):
    """Blend off, same z_T: equal to diffusers' PyTorch ``StableDiffusionInpaintPipeline`` with DDIM
    (eta 0) on the same weights, from the same prompts, [0, 1] images and masks (the fixture of
    ``tests/make_torch_reference.py``; its VAE posterior gives the mean, as the sampler uses)."""
    ids = sd_tower.tokenize(list(reference["pipeline_texts"]))
    sampler = InpaintSampler(sd_tower, SamplerOptions(num_steps=int(reference["pipeline_steps"]), blend=False))
    out = sampler(
        sd_tower.params,
        reference["pipeline_images"],
        reference["pipeline_masks"],
        ids,
        jax.random.key(0),
        float(reference["pipeline_guidance"]),
        init_latents=reference["pipeline_latents"],
    )
    want = reference["pipeline_edited"]
    diff = float(np.abs(np.asarray(out) - want).max())
    print(f"max |sampler - diffusers pipeline| = {diff:.3g}")
    assert out.shape == want.shape and want.std() > 0.05
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
def test_ddim_update_matches_diffusers(reference, prediction_type, set_alpha_to_one):
    """Timesteps and eta-0 updates equal diffusers' ``DDIMScheduler``'s, for both prediction types."""
    key = f"ddim_{prediction_type}_{int(set_alpha_to_one)}"
    config = {**tiny.SCHEDULER_CONFIG, "prediction_type": prediction_type, "set_alpha_to_one": set_alpha_to_one}
    table = ddim_schedule(sd_inpaint.NoiseSchedule.from_config(config), 4)
    np.testing.assert_array_equal(table["t"], reference[f"{key}_timesteps"])
    for i in range(4):
        z, out = reference[f"{key}_states"][i], reference[f"{key}_outputs"][i]
        prev = ddim_step(jnp.asarray(z), jnp.asarray(out), table["a_t"][i], table["a_prev"][i], prediction_type)
        np.testing.assert_allclose(prev, reference[f"{key}_prev"][i], rtol=1e-5, atol=1e-5)


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
