"""Stable Diffusion inpainting as a generator: the DDIM sampler of the paper's Appendix A.

  z0       = VAE_enc(I_src)                      (scaled latents, posterior mean)
  z_masked = VAE_enc(I_src with M set to 0 in [-1, 1], i.e. grey)
  m        = M resized to the latent grid ("nearest"), 1 = repaint
  z_T      ~ N(0, I) (DDIM's init_noise_sigma is 1), or the caller's ``init_latents``
  per DDIM step t -> t_prev:
    eps     = eps_u + w (eps_c - eps_u)          one UNet call on [uncond; cond]
    z_prev  = DDIM(z_t, eps)                     eta > 0 adds sigma_t * noise
    z_prev  = m z_prev + (1 - m) q(z0, t_prev)   when ``blend`` (Eq. 22-23); exactly z0 at the end
  G        = VAE_dec(z_0)

Timesteps follow diffusers' ``DDIMScheduler`` ("leading" spacing plus ``steps_offset``)
and the step after the last uses ``alphas_cumprod[0]`` or 1 as ``set_alpha_to_one`` says.
The masked image is zero in the VAE's [-1, 1] input space, as in SD inpainting training and
the diffusers pipelines (``image * (mask < 0.5)`` on [-1, 1] images).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax import images as image_ops
from regionedit_jax.generators.base import Generator
from regionedit_jax.towers import text
from regionedit_jax.towers.sd_inpaint import NoiseSchedule, SDInpaint

TOWERS = ("sd_inpaint",)
OPTIONS = {"eta": 0.0, "blend": True}  # see SamplerOptions


@dataclasses.dataclass(frozen=True)
class SamplerOptions:
    """Static sampler settings (a change recompiles)."""

    num_steps: int = 50  # DDIM steps
    eta: float = 0.0  # DDIM eta: 0 is deterministic given z_T
    blend: bool = True  # Eq. 22-23: re-noised source latents outside the mask at every step


def ddim_schedule(schedule: NoiseSchedule, num_steps: int) -> dict[str, np.ndarray]:
    """Per-step constants, each [num_steps] in sampling order (float32 except ``t`` int32).

    ``t`` the UNet timestep; ``a_t`` / ``a_prev`` alphas_cumprod at t and at the previous
    step (``final_alpha_cumprod`` past 0, as diffusers' DDIM); ``sigma2`` the DDIM variance
    before eta; ``a_keep`` the alpha that blending noises z0 to: ``a_prev``, and 1 at the last step.
    """
    s = schedule
    if not 1 <= num_steps <= s.num_train_timesteps:
        raise ValueError(f"num_steps must be in [1, {s.num_train_timesteps}]; got {num_steps}.")
    ratio = s.num_train_timesteps // num_steps
    t = (np.arange(num_steps) * ratio).round()[::-1].astype(np.int64) + s.steps_offset
    prev = t - ratio
    ac = np.asarray(s.alphas_cumprod, np.float64)
    final = 1.0 if s.set_alpha_to_one else ac[0]
    a_t = ac[t]
    a_prev = np.where(prev >= 0, ac[np.maximum(prev, 0)], final)
    sigma2 = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    a_keep = a_prev.copy()
    a_keep[-1] = 1.0
    f32 = lambda x: np.asarray(x, np.float32)
    return {
        "t": t.astype(np.int32),
        "a_t": f32(a_t),
        "a_prev": f32(a_prev),
        "sigma2": f32(sigma2),
        "a_keep": f32(a_keep),
    }


def ddim_step(z, model_out, a_t, a_prev, prediction_type: str, std=0.0, noise=None):
    """One DDIM update z_t -> z_prev (float32, any shape); ``std`` = eta * sqrt(sigma2)."""
    if prediction_type == "epsilon":
        x0 = (z - jnp.sqrt(1 - a_t) * model_out) / jnp.sqrt(a_t)
        eps = model_out
    elif prediction_type == "v_prediction":
        x0 = jnp.sqrt(a_t) * z - jnp.sqrt(1 - a_t) * model_out
        eps = jnp.sqrt(a_t) * model_out + jnp.sqrt(1 - a_t) * z
    else:
        raise ValueError(
            f"DDIM: unsupported prediction_type {prediction_type!r}; expected 'epsilon' or 'v_prediction'."
        )
    z_prev = jnp.sqrt(a_prev) * x0 + jnp.sqrt(jnp.maximum(1 - a_prev - std**2, 0.0)) * eps
    return z_prev if noise is None else z_prev + std * noise


class InpaintSampler:
    """``sampler(params, images, masks, prompt_ids, rng, guidance_scale, init_latents=None)``.

    images [B, H, W, 3] in [0, 1], H and W multiples of ``self.multiple`` (the VAE factor times
    the UNet's downsampling: 64 for SD); masks [B, H, W, 1], 1 = repaint, binarised at 0.5;
    prompt_ids [B, 77] int32 from ``sd.tokenize``; rng a PRNG key; guidance_scale a scalar or
    [B] (traced: a new value does not recompile); init_latents [B, H/f, W/f, 4] z_T or None.
    Returns the decoded images [B, H, W, 3] in [0, 1] (no pixel-space compositing).
    """

    def __init__(self, sd: SDInpaint, options: SamplerOptions = SamplerOptions()):
        if sd.schedule.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(
                f"InpaintSampler: unsupported prediction_type "
                f"{sd.schedule.prediction_type!r}; expected 'epsilon' or 'v_prediction'."
            )
        self.sd, self.options = sd, options
        self.schedule = ddim_schedule(sd.schedule, options.num_steps)
        self.uncond_ids = np.asarray(sd.tokenize([""]))  # [1, 77]
        # The Flax UNet cannot crop odd skip connections: latents must halve evenly at every level.
        levels = len(sd.unet_module.settings.channels) - 1
        self.multiple = sd.vae_factor * 2**levels  # pixels; 64 for SD 1.x / 2.x

    @functools.cached_property
    def _jitted(self):
        return jax.jit(self._sample)

    def __call__(self, params, images, masks, prompt_ids, rng, guidance_scale, init_latents=None):
        """Validates shapes on the host, then runs the compiled sampler; see the class docstring."""
        images = image_ops.standardize(images)
        b, h, w, _ = images.shape
        f, c, k = self.sd.vae_factor, self.sd.latent_channels, self.multiple
        if h % k or w % k:
            raise ValueError(
                f"InpaintSampler: image size {h}x{w} must be a multiple of {k} (VAE factor "
                f"{f} x UNet downsampling {k // f}); expected images [B, H, W, 3] like "
                f"{(b, max(h // k, 1) * k, max(w // k, 1) * k, 3)}: resize or pad first."
            )
        self._expect("masks", masks, (b, h, w, 1))
        self._expect("prompt_ids", prompt_ids, (b, self.sd.max_length))
        if init_latents is None:  # a traced flag, not a static None: one compile for both cases
            init_latents, given = jnp.zeros((b, h // f, w // f, c), jnp.float32), False
        else:
            self._expect("init_latents", init_latents, (b, h // f, w // f, c))
            given = True
        return self._jitted(
            params,
            images,
            jnp.asarray(masks, jnp.float32),
            jnp.asarray(prompt_ids, jnp.int32),
            rng,
            jnp.asarray(guidance_scale, jnp.float32),
            jnp.asarray(init_latents, jnp.float32),
            jnp.asarray(given),
        )

    @staticmethod
    def _expect(name, x, shape):
        if tuple(np.shape(x)) != shape:
            raise ValueError(
                f"InpaintSampler: {name} has shape {tuple(np.shape(x))}; expected {shape} to match images [B, H, W, 3]."
            )

    def encode(self, params, images, masks):
        """images [B, H, W, 3], masks [B, H, W, 1] -> (z0, m, z_masked), [B, h, w, 4 | 1 | 4].

        One VAE call on [source; masked source] (posterior means).
        """
        b, h, w, _ = images.shape
        f = self.sd.vae_factor
        masks = (masks >= 0.5).astype(jnp.float32)
        masked = images * (1 - masks) + 0.5 * masks  # 0 in the VAE's [-1, 1] space
        z = self.sd.vae_encode(params, jnp.concatenate([images, masked]))
        m = jax.image.resize(masks, (b, h // f, w // f, 1), "nearest")
        return z[:b], m, z[b:]

    def latents_to_image(self, params, latents):
        """Scaled latents [B, h, w, 4] -> images [B, h*f, w*f, 3] in [0, 1]."""
        return self.sd.vae_decode(params, latents)

    def _sample(self, params, images, masks, prompt_ids, rng, guidance_scale, init_latents, given):
        """The traced sampler: ``__call__``'s arguments as arrays, ``given`` a bool scalar."""
        sd, opts = self.sd, self.options
        b = images.shape[0]
        z0, m, z_masked = self.encode(params, images, masks)
        uncond = jnp.broadcast_to(jnp.asarray(self.uncond_ids), prompt_ids.shape)
        context = sd.encode_text(params, jnp.concatenate([uncond, prompt_ids]))  # [2B, 77, C]
        rng_init, rng_loop = jax.random.split(rng)
        z = jnp.where(given, init_latents, jax.random.normal(rng_init, z0.shape, jnp.float32))
        w = guidance_scale.reshape((-1, 1, 1, 1)) if guidance_scale.ndim == 1 else guidance_scale
        cond_in = jnp.concatenate([m, z_masked], axis=-1)
        cond_in = jnp.concatenate([cond_in, cond_in])  # [2B, h, w, 5]
        sched = {k: jnp.asarray(v) for k, v in self.schedule.items()}

        def body(i, z):
            t = sched["t"][i]
            a_t, a_prev = sched["a_t"][i], sched["a_prev"][i]
            out = sd.unet(
                params,
                jnp.concatenate([jnp.concatenate([z, z]), cond_in], axis=-1),
                jnp.full((2 * b,), t, jnp.int32),
                context,
            )
            out_u, out_c = out[:b], out[b:]
            out = out_u + w * (out_c - out_u)
            k_eta, k_blend = jax.random.split(jax.random.fold_in(rng_loop, i))
            if opts.eta > 0:
                std = opts.eta * jnp.sqrt(sched["sigma2"][i])
                z = ddim_step(
                    z,
                    out,
                    a_t,
                    a_prev,
                    sd.schedule.prediction_type,
                    std,
                    jax.random.normal(k_eta, z.shape, jnp.float32),
                )
            else:
                z = ddim_step(z, out, a_t, a_prev, sd.schedule.prediction_type)
            if opts.blend:
                a_keep = sched["a_keep"][i]
                keep = jnp.sqrt(a_keep) * z0 + jnp.sqrt(1 - a_keep) * jax.random.normal(k_blend, z.shape, jnp.float32)
                z = jnp.where(m > 0.5, z, keep)  # m is {0, 1}: exact outside the mask
            return z.astype(jnp.float32)

        z = jax.lax.fori_loop(0, opts.num_steps, body, z.astype(jnp.float32))
        return self.latents_to_image(params, z)


class SDInpaintGenerator(Generator):
    """The ``sd_inpaint`` generator: ``InpaintSampler`` behind the generator contract."""

    name = "sd_inpaint"

    def __init__(self, sd: SDInpaint, options: SamplerOptions):
        self.sd, self.sampler = sd, InpaintSampler(sd, options)
        self.multiple, self.max_length = self.sampler.multiple, sd.max_length
        self._tokenizer = text.TextEncoder(sd.tokenizer, sd.max_length, ids_only=True)

    @property
    def params(self):
        return self.sd.params

    @property
    def prompt_tokenizer(self):
        return self._tokenizer

    def generate(self, params, images, masks, prompt_ids, rng, guidance_scale):
        return self.sampler._sample(
            params,
            images,
            masks,
            prompt_ids,
            rng,
            jnp.asarray(guidance_scale, jnp.float32),
            jnp.zeros(self._latent_shape(images.shape), jnp.float32),
            jnp.asarray(False),
        )

    def _latent_shape(self, shape) -> tuple[int, ...]:
        f = self.sd.vae_factor
        return (shape[0], shape[1] // f, shape[2] // f, self.sd.latent_channels)


def build(towers, options, num_steps: int) -> SDInpaintGenerator:
    """``generators.make`` entry: the SD inpainting tower and {eta, blend}."""
    return SDInpaintGenerator(
        towers["sd_inpaint"],
        SamplerOptions(num_steps=num_steps, eta=float(options["eta"]), blend=bool(options["blend"])),
    )
