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
                raise ValueError(f"config argument {key}={raw!r} is not a valid {type(default).__name__}.") from None
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise ValueError(
                    f"config argument {key}={raw!r} must be a {type(default).__name__}, like the default {default!r}."
                )
        out[key] = value
    return out


def tower(path: str, dtype: str = "float32", **extra: Any) -> dict[str, Any]:
    """One frozen tower: a hub id or local folder, its dtype ("float32" or "bfloat16") and its
    attention kernel ("auto": JAX's choice on GPUs, else "xla"; "xla"; "cudnn": flash attention
    on NVIDIA GPUs, bfloat16 only)."""
    return dict(path=path, dtype=dtype, attention="auto", **extra)


def base() -> ml_collections.ConfigDict:
    """The paper's setting; other configs start here and override."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Frozen towers (regionedit_jax/towers). With ``bundle`` set, every tower loads from
    # that tiny random bundle (written there if missing) and the paths are ignored.
    c.towers = ml_collections.ConfigDict(
        dict(
            bundle="",
            clip=tower("openai/clip-vit-large-patch14"),
            t5=tower("google/flan-t5-base", max_length=77),
            sd_inpaint=tower("stable-diffusion-v1-5/stable-diffusion-inpainting", "bfloat16"),
            dino=tower("facebook/dino-vits16"),
        )
    )
    c.image_size = 512  # training images are this square size (a multiple of the generator's)
    # Editing runs at the source's aspect ratio, each side a multiple of the generator's, the
    # longer side at most max_side; the result is composited back at the source's resolution.
    c.edit = ml_collections.ConfigDict(dict(max_side=512))
    # Region predictor (Eq.1-3) and semantic projector f; width 0 = CLIP's embedding size.
    c.region = ml_collections.ConfigDict(
        dict(width=0, num_heads=8, depth=1, mlp_ratio=4, scales=(1, 2, 4), threshold=0.5, fusion="paper", pixels=False)
    )
    # The frozen region-conditioned generator (regionedit_jax/generators), shared by training
    # and editing; options of the named generator sit under its name. Training runs it with
    # train.generator_steps.
    c.generator = ml_collections.ConfigDict(
        dict(name="sd_inpaint", num_steps=50, guidance_scale=7.5, sd_inpaint=dict(eta=0.0, blend=True))
    )
    # Descriptions: who captions the source ("clip" zero-shot, "openai", or "none": the caller
    # passes source_caption) and who rewrites it into the target ("rules" or "openai").
    c.describe = ml_collections.ConfigDict(
        dict(
            captioner="clip",
            rewriter="rules",
            openai=dict(
                base_url="http://127.0.0.1:8000/v1",
                model="Qwen/Qwen2.5-7B-Instruct",
                vision_model="Qwen/Qwen2.5-VL-7B-Instruct",
                api_key_env="",
                cache_dir="",
            ),
        )
    )
    c.global_batch_size = 256
    # Training data: a folder of ArrayRecord shards written by launch/prepare_data.py.
    c.data = ml_collections.ConfigDict(dict(path="", crop="center", workers=0))
    c.train = ml_collections.ConfigDict(
        dict(
            num_steps=20_000,  # one epoch of 5M pairs at batch 256 is ~19.5k steps
            generator_steps=10,  # generator steps inside the training step (editing: generator.num_steps)
            log_every=50,
            checkpoint_every=1000,
            keep_checkpoints=3,
            panel_every=1000,
            panel_images=4,  # source | region | edited pictures (0 = never)
            init_checkpoint="",  # params to start from when the workdir has no checkpoint
            eval_every=0,  # run config.evals every this many steps (0 = never; single-process runs)
        )
    )
    # Periodic evaluators: name -> {"type": "emu_edit" | "magicbrush", options}; see
    # regionedit_jax/evaluators and configs/eval_emu.py. Validated when training starts.
    c.evals = ml_collections.ConfigDict()
    c.optimizer = ml_collections.ConfigDict(
        dict(lr=1e-4, warmup_steps=1000, end_lr_factor=0.01, b1=0.9, b2=0.999, weight_decay=0.01, grad_clip=1.0)
    )
    # Eq.10-11 weights: alpha (L_sem), beta (L_CLIP), l1 (clip), l2 (direction), l3 (structure).
    # direction_floor: delta in Eq.8's norm (losses.directional; 0 = Eq.8 as written); area: weight
    # of the minimal-edit prior mean(p) (losses.total; 0 = the paper's loss).
    c.loss = ml_collections.ConfigDict(
        dict(alpha=1.0, beta=1.0, clip=1.0, direction=1.0, structure=1.0, direction_floor=0.0, area=0.0)
    )
    # Device mesh: axis name -> size; -1 takes the remaining devices.
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
    c.sharding = ml_collections.ConfigDict(
        dict(
            # trainable params: logical axis -> mesh axis (None = replicated)
            logical_rules=(("embed", "fsdp"), ("mlp", None), ("heads", None), ("kv", None)),
            # frozen params: (regex on "clip/...", "t5/...", "generator/unet/..." paths, "fsdp" | "replicate")
            frozen=((r"^generator/unet/", "fsdp"), (r"^clip/", "fsdp"), (r".*", "replicate")),
        )
    )
    # Multi-host: enabled=True calls jax.distributed.initialize(); an empty coordinator
    # address lets JAX detect SLURM / TPU pods; explicit values serve local runs.
    c.distributed = ml_collections.ConfigDict(
        dict(enabled=False, coordinator_address="", num_processes=1, process_id=0)
    )
    return c


# Table 4 ablations: the loss term each removes (by its weight in config.loss).
ABLATIONS = {"no_sem": "alpha", "no_clip": "clip", "no_dir": "direction", "no_struct": "structure"}


def apply_ablation(config: ml_collections.ConfigDict, name: str) -> None:
    """Sets the weight of the removed term to 0 ("" = the full model)."""
    if name:
        if name not in ABLATIONS:
            raise ValueError(f"unknown ablation {name!r}; choose from {sorted(ABLATIONS)}.")
        config.loss[ABLATIONS[name]] = 0.0
