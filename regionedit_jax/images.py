"""The image boundary: every public function takes images as NHWC floats in [0, 1].

``standardize`` converts what people actually pass (one image or a batch; 1, 3 or 4
channels; uint8, uint16 or float) to ``[B, H, W, 3]`` float32 in [0, 1]: grayscale is
repeated to RGB, an alpha channel is dropped (as PIL's ``convert("RGB")`` does), integer
images are divided by their type's maximum. It works on traced arrays too, so the
towers call it inside jitted functions; the value-range check runs only on concrete
arrays. ``resize_center_crop`` is the differentiable preprocessing the encoders use.
"""

from __future__ import annotations

import struct

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
    return images[:, top : top + crop, left : left + crop, :]


def normalize(images: jax.Array, mean, std) -> jax.Array:
    """(images - mean) / std per channel, for [..., 3] arrays."""
    return (images - jnp.asarray(mean, images.dtype)) / jnp.asarray(std, images.dtype)


class ImageReadError(ValueError):
    """An image is missing, unreadable, empty or too large to decode safely.

    ``reason``: "missing", "empty", "corrupt", "truncated" or "too_large".
    """

    def __init__(self, message: str, reason: str = "corrupt"):
        super().__init__(message)
        self.reason = reason


# What PIL raises on malformed files (its plugins parse untrusted bytes).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, ZeroDivisionError, struct.error)


# Images above this many pixels are refused before decoding (a 10k x 10k photo is 100 MP:
# 300 MB as RGB); PIL's own bomb check is a warning below twice this.
MAX_PIXELS = 120_000_000


def open_image(source, max_pixels: int = MAX_PIXELS):
    """bytes, a path or a PIL image -> a PIL image with only its header read.

    Raises ``ImageReadError`` for a missing file, bytes that are no image, a zero-size
    image, or one over ``max_pixels`` pixels (checked before any pixel is decoded).
    """
    import io
    import os
    import warnings

    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, bytes | bytearray | memoryview):
            if not len(source):
                raise ImageReadError("the image data is empty (0 bytes).", "empty")
            stream, name = io.BytesIO(bytes(source)), "the image"
        elif isinstance(source, str | os.PathLike):
            if os.path.isdir(source):
                raise ImageReadError(f"image {str(source)!r} is a folder, not an image file.", "missing")
            if not os.path.isfile(source):
                raise ImageReadError(f"image {str(source)!r} does not exist.", "missing")
            stream, name = source, f"image {str(source)!r}"
        else:
            raise ImageReadError(
                f"cannot read an image from a {type(source).__name__}; pass a path, bytes, "
                "a PIL image or an [H, W, C] array."
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(stream)
        except Image.DecompressionBombError as e:
            raise ImageReadError(f"{name} is too large to decode safely ({e}).", "too_large") from None
        except DECODE_ERRORS as e:
            detail = "not a known image format" if isinstance(e, UnidentifiedImageError) else f"{type(e).__name__}: {e}"
            raise ImageReadError(f"{name} cannot be decoded ({detail}); is it a complete PNG/JPEG/WebP file?") from None
    if image.width == 0 or image.height == 0:
        raise ImageReadError("the image is empty (zero width or height).", "empty")
    if image.width * image.height > max_pixels:
        raise ImageReadError(
            f"the image is {image.width}x{image.height} ({image.width * image.height / 1e6:.0f} "
            f"megapixels), over the {max_pixels / 1e6:.0f}-megapixel limit for safe decoding; "
            "downscale it first.",
            "too_large",
        )
    return image


def decode(source, *, reduce_to: tuple[int, int] | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """THE image decoder: bytes, a path, a PIL image or an array -> [H, W, 3] uint8 RGB.

    Every place that reads images calls this, so every mode decodes to the same pixels:
    EXIF orientation is applied; alpha (RGBA, LA, PA, palette or colour-key transparency) is
    composited over white; 16-bit and 32-bit integer greyscale ("I;16*", "I") is scaled by
    255/65535, not clipped; float ("F") follows PIL's 0..255 convention; CMYK, YCbCr, bilevel,
    palette and greyscale go through PIL's RGB conversion. Arrays go through ``array_to_rgb``.
    ``reduce_to`` (w, h) lets a JPEG decode at a reduced DCT scale that still covers that size
    (faster; the pixels then differ from a full decode). Raises ``ImageReadError``.
    """
    if isinstance(source, np.ndarray):
        return array_to_rgb(source)
    from PIL import ImageOps

    image = open_image(source, max_pixels)
    try:
        if reduce_to is not None and image.format == "JPEG":
            image.draft(None, reduce_to)
        image.load()
        image = ImageOps.exif_transpose(image)
        return np.asarray(pil_to_rgb(image), np.uint8)
    except DECODE_ERRORS as e:  # truncated or corrupt pixel data surfaces here
        reason = "truncated" if "truncated" in str(e) else "corrupt"
        raise ImageReadError(
            f"the image cannot be decoded ({type(e).__name__}: {e}); is the file complete?", reason
        ) from None


def pil_to_rgb(image):
    """A loaded PIL image of any mode -> an 8-bit RGB PIL image (see ``decode``)."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        scale = 1.0 if mode == "F" else 255.0 / 65535.0
        gray = np.round(np.clip(values * scale, 0.0, 255.0)).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if {"A", "a"} & set(image.getbands()) or mode in ("P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """An HW or HWC array (C: grey, grey+alpha, RGB, RGBA) of bool, floats in [0, 1] or unsigned
    ints -> [H, W, 3] uint8 RGB (alpha over white, as ``decode`` does for files)."""
    pixels = np.asarray(array)
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8) * 255
    elif np.issubdtype(pixels.dtype, np.floating):
        pixels = (np.clip(pixels, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    elif np.issubdtype(pixels.dtype, np.unsignedinteger) and pixels.dtype != np.uint8:
        pixels = (pixels.astype(np.float64) * (255 / np.iinfo(pixels.dtype).max) + 0.5).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise ImageReadError(f"unsupported pixel type {pixels.dtype}; expected bool, float or unsigned int.")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4) or 0 in pixels.shape:
        raise ImageReadError(
            f"expected a non-empty HW or HWC image with C in 1-4, got shape {pixels.shape}.",
            "empty" if 0 in pixels.shape else "corrupt",
        )
    if pixels.shape[-1] in (2, 4):
        colour = pixels[..., :-1].astype(np.float32)
        alpha = pixels[..., -1:].astype(np.float32) / 255
        pixels = (colour * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.ascontiguousarray(pixels)


def working_shape(height: int, width: int, max_side: int, multiple: int) -> tuple[int, int]:
    """The (h, w) an edit runs at: the source's aspect ratio, the longer side at most ``max_side``
    (never enlarged), each side rounded to a multiple of ``multiple`` (at least one)."""
    if max_side < multiple:
        raise ValueError(f"edit.max_side {max_side} is below the generator's multiple {multiple}.")
    scale = min(1.0, max_side / max(height, width))
    limit = max_side // multiple * multiple

    def side(n: int) -> int:
        return int(min(limit, max(multiple, round(n * scale / multiple) * multiple)))

    return side(height), side(width)
