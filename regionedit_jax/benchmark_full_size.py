"""Full-size timings behind ``launch/benchmark_full_size.py``: SD 1.5 inpainting with random weights.

* ``load``: loading the pipeline folder (``sd_inpaint.load``, float32 and bfloat16) against only
  reading its safetensors files with ``safetensors.numpy``, both from a warm page cache.
* ``torch``: one UNet call (classifier-free guidance batch, 64 x 64 latents) and one whole edit
  (512 px, DDIM, ``--steps`` steps) against diffusers' PyTorch ``StableDiffusionInpaintPipeline`` on
  the same weights and settings. Needs torch and diffusers: ``pip install -e ".[reference]"``.

The folder is written once (about 4.3 GB of float32 weights) and reused.
"""

from __future__ import annotations

import glob
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax.towers import sd_inpaint, tiny

# stable-diffusion-v1-5/stable-diffusion-inpainting's unet/, vae/ and text_encoder/ configs.
SD15_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 9,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD15_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
}
_WRITTEN = "written.txt"


def write_folder(folder: str, seed: int = 0) -> str:
    """Writes the random full-size pipeline folder unless a finished one is there."""
    if not os.path.isfile(os.path.join(folder, _WRITTEN)):
        start = time.perf_counter()
        tiny.write_sd_inpaint(folder, seed, SD15_UNET, SD15_VAE, SD15_TEXT)
        with open(os.path.join(folder, _WRITTEN), "w") as f:
            f.write(f"seed {seed}\n")
        print(f"wrote a random SD 1.5 inpainting folder in {time.perf_counter() - start:.0f} s: {folder}")
    return folder


def _weight_files(folder: str) -> list[str]:
    return sorted(glob.glob(os.path.join(folder, "*", "*.safetensors")))


def time_load(folder: str) -> dict[str, float]:
    """Seconds: reading the weight files; loading the folder in float32 and in bfloat16."""
    from safetensors.numpy import load_file

    files = _weight_files(folder)
    size = sum(os.path.getsize(f) for f in files)
    for f in files:  # warm the page cache, so both sides read from memory
        load_file(f)
    start = time.perf_counter()
    for f in files:
        load_file(f)
    out = {"read files": time.perf_counter() - start}
    for name, dtype in (("load float32", jnp.float32), ("load bfloat16", jnp.bfloat16)):
        start = time.perf_counter()
        tower = sd_inpaint.load(folder, dtype=dtype)
        jax.block_until_ready(tower.params)
        out[name] = time.perf_counter() - start
        del tower
    print(f"\nloading SD 1.5 inpainting ({size / 1e9:.2f} GB in {len(files)} files, warm cache, {jax.devices()[0]}):")
    for name, seconds in out.items():
        print(f"  {name:<16} {seconds:7.2f} s   {seconds / out['read files']:5.2f}x reading the files")
    return out


def time_against_torch(folder: str, steps: int, size: int = 512) -> dict[str, float]:
    """Seconds: one UNet call and one whole edit, here and in diffusers' PyTorch pipeline."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline

    from regionedit_jax.generators.sd_inpaint import InpaintSampler, SamplerOptions

    rng = np.random.default_rng(0)
    tower = sd_inpaint.load(folder)
    pipe = StableDiffusionInpaintPipeline.from_pretrained(folder, safety_checker=None, torch_dtype=torch.float32)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    latent = size // tower.vae_factor
    sample = rng.standard_normal((2, latent, latent, 9)).astype(np.float32)
    text = rng.standard_normal((2, 77, 768)).astype(np.float32)
    timesteps = np.array([500, 500], np.int32)
    out: dict[str, float] = {}

    unet = jax.jit(tower.unet)
    jax.block_until_ready(unet(tower.params, sample, timesteps, text))  # compile
    out["unet call, jax"] = _seconds(lambda: jax.block_until_ready(unet(tower.params, sample, timesteps, text)))
    with torch.inference_mode():
        args = (torch.from_numpy(sample.transpose(0, 3, 1, 2).copy()), torch.from_numpy(timesteps).long())
        hidden = torch.from_numpy(text)
        pipe.unet(*args, encoder_hidden_states=hidden)  # warm-up
        out["unet call, torch"] = _seconds(lambda: pipe.unet(*args, encoder_hidden_states=hidden))

    image = rng.uniform(size=(1, size, size, 3)).astype(np.float32)
    mask = np.zeros((1, size, size, 1), np.float32)
    mask[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    ids = tower.tokenize(["a bowl of fruit on a table"])
    sampler = InpaintSampler(tower, SamplerOptions(num_steps=steps, blend=False))
    edit = lambda: jax.block_until_ready(sampler(tower.params, image, mask, ids, jax.random.key(0), 7.5))  # noqa: E731
    edit()  # compile
    out[f"{steps}-step edit, jax"] = _seconds(edit)
    with torch.inference_mode():
        out[f"{steps}-step edit, torch"] = _seconds(
            lambda: pipe(
                prompt=["a bowl of fruit on a table"],
                image=image,
                mask_image=mask,
                height=size,
                width=size,
                num_inference_steps=steps,
                guidance_scale=7.5,
                eta=0.0,
                output_type="np",
            )
        )
    print(
        f"\nSD 1.5 inpainting at {size} px, float32, {jax.devices()[0]} / torch {torch.__version__} "
        f"({torch.get_num_threads()} threads):"
    )
    for what in ("unet call", f"{steps}-step edit"):
        ours, theirs = out[f"{what}, jax"], out[f"{what}, torch"]
        print(f"  {what:<16} jax {ours:8.2f} s   torch {theirs:8.2f} s   torch/jax {theirs / ours:5.2f}x")
    return out


def _seconds(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
