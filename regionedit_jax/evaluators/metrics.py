"""Editing metrics of DESIGN §2: pure jitted functions of features and pixels, and a ``Scorer``.

Per-row functions (every input has a leading batch axis B, every output is ``[B]``):

  clip_direction(e_src, e_edit, t_in, t_out)  cos(E(edit) - E(src), T(out) - T(in))   CLIPdir
  cosine(a, b)                                 CLIPout, CLIPimg, CLIP-I and DINO
  pixel_distances(a, b)                        (L1, L2): mean |a - b| and mean (a - b)^2, in [0, 1]

CLIP features are L2-normalised before any difference (the CLIP tower returns them so).
L2 is the mean squared error, not its root: MagicBrush's ``evaluation/image_eval.py`` takes
``torch.nn.MSELoss()`` of ``ToTensor`` images (mean over channels and pixels, values in [0, 1]),
and its L1 is ``nn.L1Loss()`` of the same tensors.

``Scorer`` turns images and texts into those features with whichever CLIP and DINO towers it is
given (ViT-L/14 for Emu Edit, ViT-B/32 for MagicBrush's convention); the towers do their own
preprocessing (CLIP: shorter side to its input size, bicubic, centre crop; DINO: 256 bicubic,
centre crop 224). Images of different sizes are grouped by shape and every call is padded to
``batch_size`` rows, so each image shape compiles once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

EPS = 1e-8


@jax.jit
def cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """[B, d], [B, d] -> [B] cosine similarity (0 where either vector is zero)."""
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    norms = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1)
    return jnp.sum(a * b, axis=-1) / jnp.maximum(norms, EPS)


@jax.jit
def clip_direction(e_src: jax.Array, e_edit: jax.Array, t_in: jax.Array, t_out: jax.Array) -> jax.Array:
    """CLIPdir: [B, d] L2-normalised image (source, edited) and text (input, output) features -> [B]."""
    return cosine(e_edit - e_src, t_out - t_in)


@jax.jit
def pixel_distances(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """[B, H, W, C] uint8 (or floats in [0, 1]) of one size -> ([B] mean |a - b|, [B] mean (a - b)^2)."""

    def unit(x):
        return x.astype(jnp.float32) / 255.0 if jnp.issubdtype(x.dtype, jnp.integer) else x.astype(jnp.float32)

    if jnp.issubdtype(a.dtype, jnp.integer) and jnp.issubdtype(b.dtype, jnp.integer):
        diff = (a.astype(jnp.int32) - b.astype(jnp.int32)).astype(jnp.float32) / 255.0  # exact zeros
    else:
        diff = unit(a) - unit(b)
    axes = tuple(range(1, diff.ndim))
    return jnp.mean(jnp.abs(diff), axis=axes), jnp.mean(jnp.square(diff), axis=axes)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w, 3] uint8 -> [height, width, 3] uint8 with PIL bicubic (MagicBrush resizes so); a no-op at that size."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _encode_images(clip: Any, dino: Any, clip_params: Any, dino_params: Any, images: jax.Array):
    """[B, H, W, 3] uint8 -> ([B, d] CLIP CLS, [B, k] DINO CLS); compiled once per tower pair and shape."""
    return clip.encode_image(clip_params, images).cls, dino.encode_image(dino_params, images)


@functools.partial(jax.jit, static_argnums=0)
def _encode_texts(clip: Any, params: Any, ids: jax.Array, mask: jax.Array) -> jax.Array:
    return clip.encode_text(params, ids, mask)


def _pad(batch: list[np.ndarray], size: int) -> np.ndarray:
    """Stacks ``batch`` and repeats its last row up to ``size`` rows (one compiled shape per image size)."""
    return np.stack(batch + [batch[-1]] * (size - len(batch)))


class Scorer:
    """Features and metrics from a CLIP tower (``towers.clip``) and a DINO tower (``towers.dino``)."""

    def __init__(self, clip: Any, dino: Any, batch_size: int = 8):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive; got {batch_size}.")
        self.clip, self.dino, self.batch_size = clip, dino, batch_size

    # ------------------------------------------------------------------------ features

    def _by_shape(self, images: Sequence[np.ndarray], fn: Callable[[np.ndarray], Any]) -> list[Any]:
        """Applies ``fn`` to padded same-shape batches of ``images``; returns per-image outputs in order."""
        out: list[Any] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(image.shape), []).append(i)
        for rows in groups.values():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                values = jax.device_get(fn(_pad([images[i] for i in chunk], self.batch_size)))
                for k, i in enumerate(chunk):
                    out[i] = jax.tree_util.tree_map(lambda v, k=k: v[k], values)
        return out

    def image_features(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """N [H, W, 3] uint8 images (any sizes) -> ([N, d] CLIP CLS, L2-normalised; [N, k] DINO CLS)."""
        if not images:
            raise ValueError("image_features needs at least one image.")
        feats = self._by_shape(
            images, lambda x: _encode_images(self.clip, self.dino, self.clip.params, self.dino.params, x)
        )
        return np.stack([f[0] for f in feats]), np.stack([f[1] for f in feats])

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """N texts -> [N, d] CLIP text embeddings, L2-normalised."""
        texts, out = list(texts), []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            ids, mask = self.clip.tokenize(chunk + [chunk[-1]] * (self.batch_size - len(chunk)))
            out.append(np.asarray(_encode_texts(self.clip, self.clip.params, ids, mask))[: len(chunk)])
        return np.concatenate(out)

    def pixels(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of same-size [H, W, 3] uint8 images -> ([N] L1, [N] L2) in [0, 1] units."""
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x.shape != y.shape:
                raise ValueError(f"pair {i}: images of shapes {x.shape} and {y.shape}; resize to one size first.")
        pairs = [np.stack([x, y]) for x, y in zip(a, b, strict=True)]  # [2, H, W, 3] each
        out = self._by_shape(pairs, lambda p: pixel_distances(p[:, 0], p[:, 1]))
        return np.array([o[0] for o in out], np.float64), np.array([o[1] for o in out], np.float64)

    # ------------------------------------------------------------------------- metrics

    def emu_edit(
        self,
        sources: Sequence[np.ndarray],
        edited: Sequence[np.ndarray],
        input_captions: Sequence[str],
        output_captions: Sequence[str],
    ) -> dict[str, np.ndarray]:
        """Emu Edit metrics per row: clip_dir, clip_out, clip_img, l1 (at the source size), dino -> [N] each.

        ``edited[i]`` must have ``sources[i]``'s size (use ``resize_to`` for other systems' outputs).
        """
        e_src, d_src = self.image_features(sources)
        e_edit, d_edit = self.image_features(edited)
        t_in, t_out = self.text_features(input_captions), self.text_features(output_captions)
        l1, _ = self.pixels(edited, sources)
        return {
            "clip_dir": np.asarray(clip_direction(e_src, e_edit, t_in, t_out), np.float64),
            "clip_out": np.asarray(cosine(e_edit, t_out), np.float64),
            "l1": l1,
            "clip_img": np.asarray(cosine(e_edit, e_src), np.float64),
            "dino": np.asarray(cosine(d_edit, d_src), np.float64),
        }

    def against_target(self, outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """MagicBrush metrics per row against the ground truth: l1, l2, clip_i, dino -> [N] each.

        Each output is resized to its target's size first (PIL bicubic, as MagicBrush's script does).
        """
        outputs = [resize_to(o, *t.shape[:2]) for o, t in zip(outputs, targets, strict=True)]
        e_out, d_out = self.image_features(outputs)
        e_gt, d_gt = self.image_features(targets)
        l1, l2 = self.pixels(outputs, targets)
        return {
            "l1": l1,
            "l2": l2,
            "clip_i": np.asarray(cosine(e_out, e_gt), np.float64),
            "dino": np.asarray(cosine(d_out, d_gt), np.float64),
        }
