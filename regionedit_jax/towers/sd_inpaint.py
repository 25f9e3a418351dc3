"""Frozen Stable Diffusion inpainting (default ``stable-diffusion-v1-5/stable-diffusion-inpainting``).

Reads the diffusers pipeline folder (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``) without torch: the UNet and VAE
weights come from ``diffusion_pytorch_model.safetensors`` through ``convert``. Exposes
pure functions with the project's NHWC boundary:

  unet(params, latents [B, h, w, 9], t [B], text [B, L, C]) -> eps [B, h, w, 4]
  vae_encode(params, images [B, H, W, 3] in [0, 1]) -> latents [B, H/f, W/f, 4] (scaled)
  vae_decode(params, latents [B, h, w, 4] (scaled)) -> images [B, h*f, w*f, 3] in [0, 1]
  encode_text(params, input_ids [B, 77]) -> [B, 77, C] (CLIP text last hidden state)

and the scheduler's training constants as a ``NoiseSchedule`` for the samplers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax import images as image_ops
from regionedit_jax.nn import clip as clip_nn
from regionedit_jax.nn import unet as unet_nn
from regionedit_jax.nn import vae as vae_nn
from regionedit_jax.nn.attention import Implementation
from regionedit_jax.nn.compute import Compute
from regionedit_jax.towers import convert, files, text

DEFAULT = "stable-diffusion-v1-5/stable-diffusion-inpainting"
_PIPELINES = ["StableDiffusionInpaintPipeline"]


@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
    """The diffusion training schedule from ``scheduler/scheduler_config.json``."""

    alphas_cumprod: np.ndarray  # [num_train_timesteps] float64
    num_train_timesteps: int
    steps_offset: int
    set_alpha_to_one: bool
    prediction_type: str  # "epsilon" or "v_prediction"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NoiseSchedule:
        n = int(config.get("num_train_timesteps", 1000))
        start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
        kind = config.get("beta_schedule", "linear")
        if config.get("trained_betas") is not None:
            betas = np.asarray(config["trained_betas"], np.float64)
        elif kind == "linear":
            betas = np.linspace(start, end, n, dtype=np.float64)
        elif kind == "scaled_linear":
            betas = np.linspace(start**0.5, end**0.5, n, dtype=np.float64) ** 2
        elif kind == "squaredcos_cap_v2":
            f = lambda t: np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
            t = np.arange(n, dtype=np.float64)
            betas = np.minimum(1 - f((t + 1) / n) / f(t / n), 0.999)
        else:
            raise ValueError(
                f"scheduler: unsupported beta_schedule {kind!r}; expected linear, scaled_linear or squaredcos_cap_v2."
            )
        return cls(
            alphas_cumprod=np.cumprod(1.0 - betas),
            num_train_timesteps=n,
            steps_offset=int(config.get("steps_offset", 0)),
            set_alpha_to_one=bool(config.get("set_alpha_to_one", True)),
            prediction_type=config.get("prediction_type", "epsilon"),
        )


@dataclasses.dataclass(frozen=True, eq=False)
class SDInpaint:
    """A loaded inpainting pipeline. ``params`` holds ``unet``, ``vae`` and ``text_encoder``."""

    unet_module: unet_nn.UNet
    vae_module: vae_nn.AutoencoderKL
    text_module: clip_nn.ClipTextModel
    params: dict[str, Any]
    tokenizer: text.Tokenizer
    schedule: NoiseSchedule
    dtype: Any
    scaling_factor: float  # latents = VAE mean * scaling_factor
    vae_factor: int  # pixels per latent cell along each side (8 for SD)
    latent_channels: int  # 4
    text_dim: int  # cross-attention width C (768 for SD 1.x)
    max_length: int  # 77

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> [B, 77] int32 ids, padded as the diffusers pipelines do (no mask)."""
        return self.tokenizer(texts, self.max_length)[0]

    def encode_text(self, params, input_ids: jax.Array) -> jax.Array:
        """[B, 77] ids -> [B, 77, C] text conditioning."""
        ids = jnp.asarray(input_ids)
        return self.text_module.apply({"params": params["text_encoder"]}, ids)

    def unet(self, params, latents: jax.Array, timesteps: jax.Array, text_emb: jax.Array) -> jax.Array:
        """[B, h, w, 9] (noisy latents | mask | masked-image latents), [B] steps, [B, L, C] -> [B, h, w, 4]."""
        t = jnp.broadcast_to(jnp.asarray(timesteps, jnp.int32), (latents.shape[0],))
        out = self.unet_module.apply({"params": params["unet"]}, latents, t, text_emb)
        return out.astype(jnp.float32)

    def _check_size(self, h: int, w: int, what: str) -> None:
        if h % self.vae_factor or w % self.vae_factor:
            raise ValueError(
                f"SD inpainting: {what} size {h}x{w} must be a multiple of "
                f"{self.vae_factor}; resize or pad the image first."
            )

    def vae_encode(self, params, images, rng: jax.Array | None = None) -> jax.Array:
        """[B, H, W, 3] in [0, 1] -> scaled latents [B, H/f, W/f, 4].

        Uses the posterior mean, or a sample from it when ``rng`` is given.
        """
        x = image_ops.standardize(images)
        self._check_size(x.shape[1], x.shape[2], "image")
        dist = self.vae_module.apply({"params": params["vae"]}, x * 2.0 - 1.0, method=self.vae_module.encode)
        z = dist.mean if rng is None else dist.sample(rng)
        return z.astype(jnp.float32) * self.scaling_factor

    def vae_decode(self, params, latents: jax.Array) -> jax.Array:
        """Scaled latents [B, h, w, 4] -> images [B, h*f, w*f, 3] clipped to [0, 1]."""
        x = self.vae_module.apply(
            {"params": params["vae"]}, latents / self.scaling_factor, method=self.vae_module.decode
        ).astype(jnp.float32)
        return jnp.clip(x / 2.0 + 0.5, 0.0, 1.0)


def _read_json(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise files.TowerFilesError(f"{what}: {path!r} is not valid JSON ({e}).") from None


def _weights(folder: str, sub: str, module: Any, dtype) -> Any:
    """``module``'s params from ``folder/sub``'s PyTorch-layout weights."""
    return convert.load_params(
        os.path.join(folder, sub),
        "diffusion_pytorch_model",
        module.shapes(),
        what=f"SD inpainting {sub}/",
        naming="diffusers",
        dtype=dtype,
    )


def load(
    name_or_path: str | os.PathLike = DEFAULT, dtype: Any = jnp.float32, attention: Implementation = None
) -> SDInpaint:
    """Loads an SD inpainting pipeline folder (diffusers layout) or hub id, without torch.

    ``attention`` picks the attention kernel of the UNet, VAE and text encoder (``nn.attention``)."""
    what = "SD inpainting"
    folder = files.resolve(name_or_path, what)
    files.read_config(folder, what, key="_class_name", allowed=_PIPELINES, name="model_index.json")
    unet_config = files.read_config(
        os.path.join(folder, "unet"), f"{what} unet/", key="_class_name", allowed=["UNet2DConditionModel"]
    )
    if unet_config.get("in_channels") != 9:
        raise files.TowerFilesError(
            f"{what}: unet/ takes {unet_config.get('in_channels')} input channels; an inpainting UNet "
            "takes 9 (noisy latents, mask, masked-image latents). Is this a text-to-image checkpoint?"
        )
    compute = Compute(dtype, dtype, attention)
    unet_dir, vae_dir = os.path.join(folder, "unet"), os.path.join(folder, "vae")
    unet = unet_nn.UNet(
        files.settings(unet_nn.UNetSettings.from_config, unet_config, f"{what} unet/", unet_dir), compute
    )
    vae_config = files.read_config(vae_dir, f"{what} vae/", key="_class_name", allowed=["AutoencoderKL"])
    vae = vae_nn.AutoencoderKL(
        files.settings(vae_nn.VAESettings.from_config, vae_config, f"{what} vae/", vae_dir), compute
    )
    # The small files first: a missing tokenizer or scheduler is reported before the weights load.
    tok_dir = os.path.join(folder, "tokenizer")
    tokenizer = text.load_clip(tok_dir, f"{what} tokenizer/")
    sched_dir = os.path.join(folder, "scheduler")
    sched_path = files.require_file(
        sched_dir, ["scheduler_config.json"], f"{what} scheduler/", "the scheduler's training constants"
    )
    unet_params, vae_params = _weights(folder, "unet", unet, dtype), _weights(folder, "vae", vae, dtype)

    text_dir = os.path.join(folder, "text_encoder")
    text_what = f"{what} text_encoder/"
    text_config = files.read_config(text_dir, text_what, key="model_type", allowed=["clip_text_model"])
    text_settings = files.settings(clip_nn.TextSettings.from_config, text_config, text_what, text_dir)
    text_model = clip_nn.ClipTextModel(text_settings, compute)
    text_params = convert.load_params(
        text_dir,
        "model",
        text_model.shapes(),
        what=text_what,
        naming="transformers",
        dtype=dtype,
        ignore=[r"position_ids$"],
    )
    return SDInpaint(
        unet_module=unet,
        vae_module=vae,
        text_module=text_model,
        params={"unet": unet_params, "vae": vae_params, "text_encoder": text_params},
        tokenizer=tokenizer,
        schedule=NoiseSchedule.from_config(_read_json(sched_path, f"{what} scheduler/")),
        dtype=dtype,
        scaling_factor=vae.settings.scaling_factor,
        vae_factor=vae.settings.factor,
        latent_channels=vae.settings.latent_channels,
        text_dim=text_settings.width,
        max_length=text_settings.max_length,
    )
