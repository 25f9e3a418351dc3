"""The public inference API: describe -> encode -> region -> generate -> composite.

  editor = Editor.from_config(config, checkpoint="workdir/checkpoints")
  result = editor.edit("photo.jpg", "replace the cookies with candles", seed=0)
  result.image, result.mask, result.probs, result.target_caption, result.timings

Each edit runs at the source's aspect ratio (``images.working_shape``: each side a multiple
of the generator's, the longer side at most ``config.edit.max_side``) through the model's
one forward path; a batch of mixed shapes is split into buckets of equal working shape, one
compiled call each (compiled once per shape and step count, then cached). The generated
image is resized back to the source's resolution and composited there with the same
``model.composite``, so every pixel outside the region is the source's, exactly. Without a
checkpoint the region predictor is a fresh random init (a warning says so): its regions mean
nothing until it is trained.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax import checkpoints, describe, generators
from regionedit_jax import images as image_ops
from regionedit_jax.configs import checks as config_checks
from regionedit_jax.model import RegionEditModel, composite
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
    """A path, bytes, PIL image or array -> [H, W, 3] float32 in [0, 1] (``images.decode``)."""
    if isinstance(image, np.ndarray) and np.issubdtype(image.dtype, np.floating):
        return np.asarray(image_ops.standardize(image)[0])
    return image_ops.decode(image).astype(np.float32) / 255.0


def _as_mask(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    """A path, PIL image or array of the source's size -> [H, W] bool (nonzero = edit)."""
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        array = mask
    else:
        array = image_ops.decode(mask).max(axis=-1)
    if array.shape != shape:
        raise ValueError(
            f"the mask is {array.shape[1]}x{array.shape[0]} (WxH) but the image is "
            f"{shape[1]}x{shape[0]}; give a mask of the image's size."
        )
    return array > (127 if array.dtype == np.uint8 else 0.5)


def _resize(x: np.ndarray, h: int, w: int, method: str) -> np.ndarray:
    if x.shape[:2] == (h, w):
        return np.asarray(x)
    return np.asarray(jax.image.resize(x, (h, w) + x.shape[2:], method, antialias=method != "nearest"))


class Editor:
    """Edits images by instruction with a region predictor and a frozen generator."""

    def __init__(
        self,
        model: RegionEditModel,
        params: Any,
        config,
        captioner=None,
        rewriter=None,
        towers: dict[str, Any] | None = None,
    ):
        self.model, self.params, self.config = model, params, config
        self.captioner, self.rewriter = captioner, rewriter
        self.towers = towers or {}
        self.frozen = model.frozen_params()
        self._models: dict[int, RegionEditModel] = {int(config.generator.num_steps): model}
        self._compiled: dict[tuple, Any] = {}
        self.compile_seconds: dict[tuple, float] = {}

    @classmethod
    def from_config(cls, config, checkpoint: str | None = None, params: Any = None) -> Editor:
        """Loads the towers, generator and describers of ``config``; params from ``checkpoint`` or a fresh init."""
        config_checks.check(config)
        if params is None and checkpoint:  # a missing or corrupt checkpoint is refused before towers load
            checkpoints.choose_step(checkpoint)
        names = ("clip", "t5") + generators.towers_for(config.generator)
        towers = bundle.load(config.towers, names, seed=config.seed)
        return cls.from_towers(towers, config, checkpoint=checkpoint, params=params)

    @classmethod
    def from_towers(cls, towers: dict[str, Any], config, checkpoint: str | None = None, params: Any = None) -> Editor:
        """Like ``from_config`` with towers already loaded (``towers.bundle.load``)."""
        model = RegionEditModel.from_towers(towers, config)
        fresh = model.init(jax.random.key(config.seed))
        if params is None and checkpoint:
            params, _ = checkpoints.restore_params(checkpoint, fresh)
        elif params is None:
            warnings.warn(
                "no checkpoint: the region predictor is a fresh random init, so its regions "
                "are arbitrary until it is trained (pass checkpoint=... or --checkpoint).",
                stacklevel=3,
            )
            params = fresh
        dc = config.describe
        openai = {k: v for k, v in dict(dc.openai).items() if v != ""}
        captioner = {
            "none": None,
            "clip": lambda: describe.make("clip", clip=towers["clip"]),
            "openai": lambda: describe.make("openai", **openai),
        }
        rewriter = {"rules": lambda: describe.make("rules"), "openai": lambda: describe.make("openai", **openai)}
        if dc.captioner not in captioner or dc.rewriter not in rewriter:
            raise ValueError(
                f"config.describe: captioner must be one of {sorted(captioner)} and rewriter "
                f"one of {sorted(rewriter)}; got {dc.captioner!r}, {dc.rewriter!r}."
            )
        make_captioner = captioner[dc.captioner]
        return cls(
            model, params, config, make_captioner() if make_captioner else None, rewriter[dc.rewriter](), towers=towers
        )

    # ----------------------------------------------------------------------------- public

    def edit(self, image: Any, instruction: str, **options) -> EditResult:
        """Edits one image; see ``edit_batch`` for the options."""
        mask = options.pop("mask", None)
        source, target = options.pop("source_caption", None), options.pop("target_caption", None)
        return self.edit_batch(
            [image],
            [instruction],
            masks=None if mask is None else [mask],
            source_captions=None if source is None else [source],
            target_captions=None if target is None else [target],
            **options,
        )[0]

    def edit_batch(
        self,
        images: Sequence[Any],
        instructions: Sequence[str],
        *,
        seed: int = 0,
        num_steps: int | None = None,
        guidance_scale: float | None = None,
        threshold: float | None = None,
        source_captions: Sequence[str] | None = None,
        target_captions: Sequence[str] | None = None,
        masks: Sequence[Any] | None = None,
    ) -> list[EditResult]:
        """Edits several images; images of one working shape share one compiled call.

        Args:
          images: paths, bytes, PIL images or arrays ([H, W, C], uint8 or floats in [0, 1]).
          instructions: one non-empty instruction per image.
          seed: the generator's noise seed (same seed, same result).
          num_steps, guidance_scale, threshold: override ``config.generator`` / ``config.region``.
          source_captions, target_captions: descriptions to use instead of the describers'.
          masks: regions to repaint instead of the predicted ones (same size as each image).
        """
        start = time.perf_counter()
        if len(images) != len(instructions) or not images:
            raise ValueError(
                f"edit_batch needs one instruction per image; got {len(images)} images and "
                f"{len(instructions)} instructions."
            )
        for i, text in enumerate(instructions):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"instruction {i} is empty; say what to change, e.g. 'make the car red'.")
        gc, rc = self.config.generator, self.config.region
        steps = int(num_steps or gc.num_steps)
        guidance = float(gc.guidance_scale if guidance_scale is None else guidance_scale)
        tau = float(rc.threshold if threshold is None else threshold)
        sources = [_as_rgb(x) for x in images]
        user_masks = None if masks is None else [_as_mask(m, s.shape[:2]) for m, s in zip(masks, sources, strict=True)]
        model = self._model(steps)
        work = self._working(sources)  # decoded once, above
        shapes = [w.shape[:2] for w in work]
        src_caps, tgt_caps = self._describe(work, list(instructions), source_captions, target_captions)
        described = time.perf_counter()

        t5_ids, t5_mask = self.model.t5.tokenize(list(instructions))
        prompt_ids = model.generator.tokenize(tgt_caps)
        buckets: dict[tuple[int, int], list[int]] = {}
        for i, shape in enumerate(shapes):
            buckets.setdefault(shape, []).append(i)
        outputs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        compile_s = 0.0
        for shape, rows in buckets.items():
            bucket_masks = (
                np.zeros((len(rows),) + shape, np.float32)
                if user_masks is None
                else np.stack([_resize(user_masks[i].astype(np.float32), *shape, "nearest") for i in rows])
            )
            args = (
                self.params,
                self.frozen,
                np.stack([work[i] for i in rows]),
                t5_ids[rows],
                t5_mask[rows],
                prompt_ids[rows],
                jax.random.fold_in(jax.random.key(seed), rows[0]),
                jnp.float32(guidance),
                jnp.float32(tau),
                bucket_masks,
                jnp.bool_(user_masks is not None),
            )
            fn, seconds = self._executable(model, steps, args)
            compile_s += seconds
            generated, probs = jax.device_get(fn(*args))
            outputs.update({i: (generated[k], probs[k]) for k, i in enumerate(rows)})
        edited_at = time.perf_counter()

        results = []
        for i, src in enumerate(sources):
            h, w = src.shape[:2]
            generated, probs = outputs[i]
            probs = _resize(probs, h, w, "bilinear")
            region = user_masks[i] if user_masks is not None else probs > tau
            generated = _resize(generated, h, w, "bicubic").clip(0, 1)
            pixels = np.asarray(composite(region[None].astype(np.float32), generated[None], src[None])[0])
            results.append(
                EditResult(
                    image=(pixels * 255).round().astype(np.uint8),
                    mask=region,
                    probs=probs.astype(np.float32),
                    instruction=instructions[i],
                    source_caption=src_caps[i],
                    target_caption=tgt_caps[i],
                    timings={},
                )
            )
        total = time.perf_counter() - start
        timings = {
            "describe": described - start,
            "compile": compile_s,
            "edit": edited_at - described - compile_s,
            "total": total,
        }
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

    def working_images(self, images: Sequence[Any]) -> list[np.ndarray]:
        """Each image at the shape its edit runs at (``images.working_shape``) -> [h, w, 3] float32.

        This is also what the captioner describes.
        """
        return self._working([_as_rgb(image) for image in images])

    def _working(self, sources: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Decoded sources [H, W, 3] float32 -> each at its working shape."""
        multiple, max_side = self.model.generator.multiple, self.config.edit.max_side
        out = []
        for source in sources:
            shape = image_ops.working_shape(*source.shape[:2], max_side, multiple)
            out.append(_resize(source, *shape, "bicubic").clip(0, 1))
        return out

    def _model(self, num_steps: int) -> RegionEditModel:
        """The model with the generator built for ``num_steps`` (the towers are shared)."""
        if num_steps not in self._models:
            if num_steps < 1:
                raise ValueError(f"num_steps must be at least 1; got {num_steps}.")
            missing = [t for t in generators.towers_for(self.config.generator) if t not in self.towers]
            if missing:
                raise ValueError(
                    f"this Editor was built without the towers {missing}, so it cannot run "
                    f"{num_steps} steps; build it with Editor.from_config or from_towers."
                )
            generator = generators.make(self.config.generator, self.towers, num_steps=num_steps)
            self._models[num_steps] = dataclasses.replace(self.model, generator=generator)
        return self._models[num_steps]

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
                raise ValueError(
                    f"cannot turn the instruction into a target description: {e.message} "
                    "(pass target_caption=... to skip the rewriter)"
                ) from None
        if len(sources) != n or len(targets) != n:
            raise ValueError("give one source and one target caption per image.")
        return list(sources), list(targets)

    def _executable(self, model: RegionEditModel, num_steps: int, args: tuple) -> tuple[Any, float]:
        """The compiled edit for these shapes and step count, and its compile time (0 if cached).

        It returns only what the host needs: G [b, h, w, 3] and the probabilities [b, h, w].
        """
        key = (num_steps, args[2].shape)
        if key in self._compiled:
            return self._compiled[key], 0.0

        def run(params, frozen, images, t5_ids, t5_mask, prompt_ids, rng, guidance, threshold, masks, use_mask):
            out = model.forward(
                params,
                frozen,
                images,
                t5_ids,
                t5_mask,
                prompt_ids,
                rng,
                guidance_scale=guidance,
                threshold=threshold,
                user_mask=masks,
                use_user_mask=use_mask,
            )
            return out.generated, out.probs

        start = time.perf_counter()
        compiled = jax.jit(run).lower(*args).compile()
        self._compiled[key] = compiled
        self.compile_seconds[key] = time.perf_counter() - start
        return compiled, self.compile_seconds[key]
