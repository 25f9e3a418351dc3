"""Shared config pieces: argument parsing for ``--config=configs/x.py:arg`` and the base config.

A config file defines ``get_config(arg: str | None = None) -> ConfigDict``. The text after
the colon is parsed by ``parse_arg`` into named values (``"steps=10,bf16"`` ->
``steps=10, bf16=True``), checked against the names and types the file declares, so a
typo fails at once with its name. Variants import ``base()`` (or another config) and
override a few fields; the returned config is locked, so ``--config.a.b=value``
overrides of unknown keys fail at parse time too.
"""

from __future__ import annotations

import ast
from typing import Any

import ml_collections


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
    """Parses ``"a=1,b=x,c"`` into a ConfigDict with defaults and types from ``spec``.

    A bare name sets a boolean to True. Unknown names and values of the wrong type raise
    ``ValueError`` naming the key and what it accepts.
    """
    out = ml_collections.ConfigDict(spec)
    for item in filter(None, (arg or "").split(",")):
        key, has_value, raw = item.partition("=")
        key = key.strip()
        if key not in spec:
            raise ValueError(f"unknown config argument {key!r}; this config accepts {sorted(spec)}.")
        default = spec[key]
        if not has_value:
            if not isinstance(default, bool):
                raise ValueError(f"config argument {key!r} needs a value ({key}=...).")
            value: Any = True
        elif isinstance(default, str):
            value = raw
        else:
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                raise ValueError(f"config argument {key}={raw!r} is not a valid "
                                 f"{type(default).__name__}.") from None
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise ValueError(f"config argument {key}={raw!r} must be a "
                                 f"{type(default).__name__}, like the default {default!r}.")
        out[key] = value
    return out


def tower(path: str, dtype: str = "float32", **extra: Any) -> dict[str, Any]:
    """One frozen tower: a hub id or local folder, and its dtype ("float32" or "bfloat16")."""
    return dict(path=path, dtype=dtype, **extra)


def base() -> ml_collections.ConfigDict:
    """The paper's setting; other configs start here and override."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Frozen towers (regionedit_jax/towers). With ``bundle`` set, every tower loads from
    # that tiny random bundle (written there if missing) and the paths are ignored.
    c.towers = ml_collections.ConfigDict(dict(
        bundle="",
        clip=tower("openai/clip-vit-large-patch14"),
        t5=tower("google/flan-t5-base", max_length=77),
        sd_inpaint=tower("stable-diffusion-v1-5/stable-diffusion-inpainting", "bfloat16"),
        dino=tower("facebook/dino-vits16"),
    ))
    c.image_size = 512  # edits run at this square resolution (a multiple of the VAE factor)
    # Region predictor (Eq.1-3) and semantic projector f; width 0 = CLIP's embedding size.
    c.region = ml_collections.ConfigDict(dict(
        width=0, num_heads=8, depth=1, mlp_ratio=4, scales=(1, 2, 4), threshold=0.5))
    # Inference sampler (the training step has its own step count).
    c.sampler = ml_collections.ConfigDict(dict(num_steps=50, guidance_scale=7.5, eta=0.0, blend=True))
    # Descriptions: who captions the source ("clip" zero-shot, "openai", or "none": the caller
    # passes source_caption) and who rewrites it into the target ("rules" or "openai").
    c.describe = ml_collections.ConfigDict(dict(
        captioner="clip", rewriter="rules",
        openai=dict(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-7B-Instruct",
                    vision_model="Qwen/Qwen2.5-VL-7B-Instruct", api_key_env="", cache_dir="")))
    c.global_batch_size = 256
    # Device mesh: axis name -> size; -1 takes the remaining devices.
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
    return c
