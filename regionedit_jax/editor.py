"""The public inference API: describe -> encode -> region -> generate -> composite.

  editor = Editor.from_config(config, checkpoint="workdir/checkpoints")
  result = editor.edit("photo.jpg", "replace the cookies with candles", seed=0)
  result.image, result.mask, result.probs, result.target_caption, result.timings

Edits run at ``config.image_size`` squared (the whole image, resized); the output is
composited at the source's own size, so every pixel outside the region is the source's.
Without a checkpoint the region predictor is a fresh random init (a warning says so):
its regions mean nothing until it is trained.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from regionedit_jax import checkpoints, describe, images as image_ops
from regionedit_jax.model import RegionEditModel
from regionedit_jax.sampler import SamplerOptions
from regionedit_jax.towers import bundle


@dataclasses.dataclass
class EditResult:
    image: np.ndarray  # [H, W, 3] uint8, the edited image at the source's size
    mask: np.ndarray  # [H, W] bool, the repainted region
    probs: np.ndarray  # [H, W] float32, the predicted edit probability
    instruction: str
    source_caption: str
    target_caption: str
    timings: dict[str, float]  # seconds: describe, compile (first use of a shape), edit, total


def _as_rgb(image: Any) -> np.ndarray:
    """A path, PIL image or array -> [H, W, 3] float32 in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        image = image_ops.read(image)
    elif isinstance(image, Image.Image):
        image = image_ops.to_rgb(image)
    return np.asarray(image_ops.standardize(np.asarray(image))[0])


def _as_mask(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    """A path, PIL image or array of the source's size -> [H, W] bool (nonzero = edit)."""
    if isinstance(mask, (str, os.PathLike)):
        mask = image_ops.read(mask)
    array = np.asarray(mask.convert("L") if isinstance(mask, Image.Image) else mask)
    if array.ndim == 3:
        array = array.max(axis=-1)
    if array.shape != shape:
        raise ValueError(f"the mask is {array.shape[1]}x{array.shape[0]} (WxH) but the image is "
                         f"{shape[1]}x{shape[0]}; give a mask of the image's size.")
    return array > (127 if array.dtype == np.uint8 else 0.5)


def _resize(x: np.ndarray, h: int, w: int, method: str) -> np.ndarray:
    return np.asarray(jax.image.resize(x, (h, w) + x.shape[2:], method))


class Editor:
    """Edits images by instruction with a region predictor and a frozen inpainting model."""

    def __init__(self, model: RegionEditModel, params: Any, config, captioner=None, rewriter=None):
        self.model, self.params, self.config = model, params, config
        self.captioner, self.rewriter = captioner, rewriter
        self.frozen = model.frozen_params()
        self._compiled: dict[tuple, Any] = {}
        self.compile_seconds: dict[tuple, float] = {}

    @classmethod
    def from_config(cls, config, checkpoint: str | None = None, params: Any = None) -> Editor:
        """Loads the towers and describers of ``config``; params from ``checkpoint`` or a fresh init."""
        towers = bundle.load(config.towers, ("clip", "t5", "sd_inpaint"), seed=config.seed)
        return cls.from_towers(towers, config, checkpoint=checkpoint, params=params)

    @classmethod
    def from_towers(cls, towers: dict[str, Any], config, checkpoint: str | None = None,
                    params: Any = None) -> Editor:
        """Like ``from_config`` with towers already loaded (``towers.bundle.load``)."""
        model = RegionEditModel.from_towers(towers, config)
        fresh = model.init(jax.random.key(config.seed))
        if params is None and checkpoint:
            params, _ = checkpoints.restore_params(checkpoint, fresh)
        elif params is None:
            warnings.warn("no checkpoint: the region predictor is a fresh random init, so its regions "
                          "are arbitrary until it is trained (pass checkpoint=... or --checkpoint).",
                          stacklevel=3)
            params = fresh
        dc = config.describe
        openai = {k: v for k, v in dict(dc.openai).items() if v != ""}
        captioner = {"none": None, "clip": lambda: describe.make("clip", clip=towers["clip"]),
                     "openai": lambda: describe.make("openai", **openai)}
        rewriter = {"rules": lambda: describe.make("rules"), "openai": lambda: describe.make("openai", **openai)}
        if dc.captioner not in captioner or dc.rewriter not in rewriter:
            raise ValueError(f"config.describe: captioner must be one of {sorted(captioner)} and rewriter "
                             f"one of {sorted(rewriter)}; got {dc.captioner!r}, {dc.rewriter!r}.")
        make_captioner = captioner[dc.captioner]
        return cls(model, params, config, make_captioner() if make_captioner else None, rewriter[dc.rewriter]())

    # ----------------------------------------------------------------------------- public

    def edit(self, image: Any, instruction: str, **options) -> EditResult:
        """Edits one image; see ``edit_batch`` for the options."""
        mask = options.pop("mask", None)
        source, target = options.pop("source_caption", None), options.pop("target_caption", None)
        return self.edit_batch([image], [instruction], masks=None if mask is None else [mask],
                               source_captions=None if source is None else [source],
                               target_captions=None if target is None else [target], **options)[0]

    def edit_batch(self, images: Sequence[Any], instructions: Sequence[str], *, seed: int = 0,
                   num_steps: int | None = None, guidance_scale: float | None = None,
                   threshold: float | None = None, source_captions: Sequence[str] | None = None,
                   target_captions: Sequence[str] | None = None,
                   masks: Sequence[Any] | None = None) -> list[EditResult]:
        """Edits several images in one compiled call.

        Args:
          images: paths, PIL images or arrays ([H, W, C], uint8 or floats in [0, 1]).
          instructions: one non-empty instruction per image.
          seed: the sampler's noise seed (same seed, same result).
          num_steps, guidance_scale, threshold: override ``config.sampler`` / ``config.region``.
          source_captions, target_captions: descriptions to use instead of the describers'.
          masks: regions to repaint instead of the predicted ones (same size as each image).
        """
        start = time.perf_counter()
        if len(images) != len(instructions) or not images:
            raise ValueError(f"edit_batch needs one instruction per image; got {len(images)} images and "
                             f"{len(instructions)} instructions.")
        for i, text in enumerate(instructions):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"instruction {i} is empty; say what to change, e.g. 'make the car red'.")
        sources = [_as_rgb(x) for x in images]
        user_masks = None if masks is None else [_as_mask(m, s.shape[:2]) for m, s in zip(masks, sources, strict=True)]
        size = self.model.image_size
        small = np.stack([_resize(s, size, size, "bicubic").clip(0, 1) for s in sources])
        src_caps, tgt_caps = self._describe(small, list(instructions), source_captions, target_captions)
        described = time.perf_counter()

        sc, rc = self.config.sampler, self.config.region
        steps = num_steps or sc.num_steps
        t5_ids, t5_mask = self.model.t5.tokenize(list(instructions))
        prompt_ids = self.model.sd.tokenize(tgt_caps)
        small_masks = np.zeros((len(sources), size, size), np.float32) if user_masks is None else np.stack(
            [_resize(m.astype(np.float32), size, size, "nearest") for m in user_masks])
        args = (self.params, self.frozen, small, t5_ids, t5_mask, prompt_ids, jax.random.key(seed),
                jnp.float32(sc.guidance_scale if guidance_scale is None else guidance_scale),
                jnp.float32(rc.threshold if threshold is None else threshold), small_masks,
                jnp.bool_(user_masks is not None))
        fn, compile_s = self._executable(steps, args)
        out = jax.device_get(fn(*args))
        edited_at = time.perf_counter()

        tau = rc.threshold if threshold is None else threshold
        results = []
        for i, src in enumerate(sources):
            h, w = src.shape[:2]
            probs = _resize(np.asarray(out.probs[i]), h, w, "bilinear")
            region = user_masks[i] if user_masks is not None else probs > tau
            generated = _resize(np.asarray(out.generated[i]), h, w, "bicubic").clip(0, 1)
            pixels = np.where(region[..., None], generated, src)
            results.append(EditResult(
                image=(pixels * 255).round().astype(np.uint8), mask=region, probs=probs.astype(np.float32),
                instruction=instructions[i], source_caption=src_caps[i], target_caption=tgt_caps[i], timings={}))
        total = time.perf_counter() - start
        timings = {"describe": described - start, "compile": compile_s,
                   "edit": edited_at - described - compile_s, "total": total}
        for r in results:
            r.timings = dict(timings)
        return results

    def edit_turns(self, image: Any, instructions: Sequence[str], **options) -> list[EditResult]:
        """Multi-turn editing: each instruction edits the previous result.

        The previous target caption becomes the next source caption, so the source is
        described once.
        """
        results, caption = [], options.pop("source_caption", None)
        for instruction in instructions:
            result = self.edit(image, instruction, source_caption=caption, **options)
            results.append(result)
            image, caption = result.image, result.target_caption
        return results

    # --------------------------------------------------------------------------- internals

    def _describe(self, small: np.ndarray, instructions: list[str], sources, targets):
        n = len(instructions)
        if sources is None and self.captioner is not None:
            sources = self.captioner.caption(list(small))
        elif sources is None and targets is not None:
            sources = [""] * n  # the rewriter is not needed; nothing to describe the source with
        elif sources is None:
            raise ValueError("no source caption: pass source_caption=... or set config.describe.captioner.")
        if targets is None:
            try:
                targets = self.rewriter.rewrite(list(sources), instructions)
            except describe.DescribeError as e:
                raise ValueError(f"cannot turn the instruction into a target description: {e.message} "
                                 "(pass target_caption=... to skip the rewriter)") from None
        if len(sources) != n or len(targets) != n:
            raise ValueError("give one source and one target caption per image.")
        return list(sources), list(targets)

    def _executable(self, num_steps: int, args: tuple) -> tuple[Any, float]:
        """The compiled edit function for these shapes and step count, and its compile time (0 if cached)."""
        key = (num_steps, args[2].shape)
        if key in self._compiled:
            return self._compiled[key], 0.0
        sc = self.config.sampler
        sampler = self.model.sampler(SamplerOptions(num_steps=num_steps, eta=sc.eta, blend=sc.blend))

        def run(params, frozen, images, t5_ids, t5_mask, prompt_ids, rng, guidance, threshold, masks, use_mask):
            return self.model.edit(params, frozen, images, t5_ids, t5_mask, prompt_ids, rng, guidance,
                                   threshold, sampler, mask=masks, use_mask=use_mask)

        start = time.perf_counter()
        compiled = jax.jit(run).lower(*args).compile()
        self._compiled[key] = compiled
        self.compile_seconds[key] = time.perf_counter() - start
        return compiled, self.compile_seconds[key]
