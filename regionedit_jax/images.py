"""The image boundary: every public function takes images as NHWC floats in [0, 1].

``standardize`` converts what people actually pass (one image or a batch; 1, 3 or 4
channels; uint8, uint16 or float) to ``[B, H, W, 3]`` float32 in [0, 1]: grayscale is
repeated to RGB, an alpha channel is dropped (as PIL's ``convert("RGB")`` does), integer
images are divided by their type's maximum. It works on traced arrays too, so the
towers call it inside jitted functions; the value-range check runs only on concrete
arrays. ``resize_center_crop`` is the differentiable preprocessing the encoders use.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def standardize(images) -> jax.Array:
    """[H, W, C] or [B, H, W, C] with C in {1, 3, 4} -> [B, H, W, 3] float32 in [0, 1]."""
    if not hasattr(images, "shape"):
        images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"images must be [H, W, C] or [B, H, W, C] (channels last) with C in 1, 3 or 4; "
            f"got shape {tuple(images.shape)}. Channels-first arrays need a transpose to NHWC."
        )
    if 0 in images.shape:
        raise ValueError(f"images must not be empty; got shape {tuple(images.shape)}.")
    dtype = np.dtype(images.dtype)
    if dtype == np.bool_:
        images = jnp.asarray(images, jnp.float32)
    elif np.issubdtype(dtype, np.integer):
        images = jnp.asarray(images, jnp.float32) / float(np.iinfo(dtype).max)
    elif np.issubdtype(dtype, np.floating) or dtype == jnp.bfloat16:
        if not isinstance(images, jax.core.Tracer):
            lo, hi = float(np.min(images)), float(np.max(images))
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise ValueError(
                    f"float images must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]. "
                    "Divide 0..255 images by 255, or pass them as uint8."
                )
        images = jnp.asarray(images, jnp.float32)
    else:
        raise ValueError(f"images must be integer or float arrays; got dtype {dtype}.")
    if images.shape[-1] == 1:
        images = jnp.repeat(images, 3, axis=-1)
    return images[..., :3]


def resize_center_crop(images: jax.Array, resize: int, crop: int, method: str = "bicubic") -> jax.Array:
    """Resizes the shorter side to ``resize`` then takes the central ``crop`` square.

    Differentiable in ``images`` ([B, H, W, C] -> [B, crop, crop, C]); antialiased when
    shrinking, like PIL's resize in the Hugging Face image processors.
    """
    b, h, w, c = images.shape
    scale = resize / min(h, w)
    new_h, new_w = max(crop, round(h * scale)), max(crop, round(w * scale))
    if (new_h, new_w) != (h, w):
        images = jax.image.resize(images, (b, new_h, new_w, c), method=method, antialias=True)
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    return images[:, top:top + crop, left:left + crop, :]


def normalize(images: jax.Array, mean, std) -> jax.Array:
    """(images - mean) / std per channel, for [..., 3] arrays."""
    return (images - jnp.asarray(mean, images.dtype)) / jnp.asarray(std, images.dtype)


class ImageReadError(ValueError):
    """An image file is missing, unreadable or empty."""


def read(path) -> np.ndarray:
    """An image file -> [H, W, 3] uint8 RGB (EXIF rotation applied, alpha over white, 16-bit scaled)."""
    import os

    from PIL import Image, ImageOps, UnidentifiedImageError

    if not os.path.isfile(path):
        raise ImageReadError(f"image {str(path)!r} does not exist.")
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageReadError(f"image {str(path)!r} cannot be decoded ({type(e).__name__}: {e}); "
                             "is it a complete PNG/JPEG/WebP file?") from None
    return to_rgb(image)


def to_rgb(image) -> np.ndarray:
    """A PIL image of any mode -> [H, W, 3] uint8 RGB."""
    from PIL import Image

    if image.width == 0 or image.height == 0:
        raise ImageReadError("the image is empty (zero width or height).")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image, np.float64)
        scale = 65535.0 if pixels.max() > 255 else 255.0
        image = Image.fromarray(np.clip(pixels / scale * 255 + 0.5, 0, 255).astype(np.uint8))
    if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(image.convert("RGB"))
