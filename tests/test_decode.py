"""One image decoder: awkward files decode to the expected pixels, and to the same pixels everywhere."""

import io

import numpy as np
import pytest
from PIL import Image

from regionedit_jax import edit_cli, images
from regionedit_jax.data import annotate, pipeline, samples
from regionedit_jax.editor import _as_rgb
from regionedit_jax.evaluators import tables
from regionedit_jax.evaluators.predictions import PredictionFolder

SIDE = 8
_RNG = np.random.default_rng(0)
_RGB = _RNG.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def grey16():
    values = _RNG.integers(0, 65536, (SIDE, SIDE), dtype=np.uint16)
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    return _save(Image.fromarray(values), "PNG"), np.repeat(expected[..., None], 3, -1)


def palette_with_transparency():
    colours = np.array([[200, 10, 30], [0, 90, 250], [40, 220, 60], [0, 0, 0]], np.uint8)
    index = _RNG.integers(0, 4, (SIDE, SIDE), dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette(colours.flatten().tolist() + [0] * (768 - colours.size))
    expected = colours[index]
    expected[index == 3] = 255  # index 3 is transparent: over white
    return _save(image, "PNG", transparency=3), expected


def rgba():
    pixels = _RNG.integers(0, 256, (SIDE, SIDE, 4), dtype=np.uint8)
    alpha = pixels[..., 3:].astype(np.float64) / 255
    expected = np.round(pixels[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return _save(Image.fromarray(pixels, "RGBA"), "PNG"), expected


def grey_alpha():
    pixels = _RNG.integers(0, 256, (SIDE, SIDE, 2), dtype=np.uint8)
    alpha = pixels[..., 1:].astype(np.float64) / 255
    expected = np.round(pixels[..., :1] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return _save(Image.fromarray(pixels, "LA"), "PNG"), np.repeat(expected, 3, -1)


def cmyk_jpeg():
    data = _save(Image.fromarray(_RGB).convert("CMYK"), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as image:  # what PIL's own CMYK -> RGB conversion gives
        expected = np.asarray(image.convert("RGB"))
    return data, expected


def exif_rotated():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: shown rotated 90 degrees clockwise
    wide = _RNG.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    return _save(Image.fromarray(wide), "PNG", exif=exif), np.rot90(wide, k=-1)


def grey():
    pixels = _RNG.integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
    return _save(Image.fromarray(pixels, "L"), "PNG"), np.repeat(pixels[..., None], 3, -1)


CASES = {f.__name__: f for f in (grey16, palette_with_transparency, rgba, grey_alpha, cmyk_jpeg, exif_rotated, grey)}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    data, expected = CASES[request.param]()
    suffix = "jpg" if request.param == "cmyk_jpeg" else "png"
    path = tmp_path_factory.mktemp("decode") / f"{request.param}.{suffix}"
    path.write_bytes(data)
    return request.param, data, str(path), expected


def test_awkward_files_decode_to_the_expected_pixels(case):
    name, data, path, expected = case
    tolerance = 1 if name in ("rgba", "grey_alpha") else 0  # PIL's alpha compositing rounds its own way
    for decoded in (images.decode(data), images.decode(path), images.decode(Image.open(path))):
        assert decoded.dtype == np.uint8 and decoded.shape == (SIDE, SIDE, 3), name
        assert np.abs(decoded.astype(int) - expected).max() <= tolerance, name


def test_every_reader_gives_the_same_pixels(case, tmp_path):
    name, data, path, _ = case
    reference = images.decode(data)
    settings = annotate.Settings(source="samples", out=str(tmp_path), max_side=64, min_side=1)
    readers = {
        "edit CLI": edit_cli.read_source(path),
        "Editor": np.round(_as_rgb(path) * 255).astype(np.uint8),
        "sample photos": samples.load_image(path),
        "benchmark tables": tables.decode_image({"bytes": data, "path": None}, "row 0"),
        "other systems' outputs": PredictionFolder.read(path, "0"),
        "data preparation": annotate.load_image(data, settings),
        "training pipeline": pipeline.load_rgb(data, SIDE, min_side=1),
    }
    for reader, pixels in readers.items():
        np.testing.assert_array_equal(pixels, reference, err_msg=f"{name}: {reader}")


def test_bad_images_say_why():
    with pytest.raises(images.ImageReadError, match="0 bytes") as e:
        images.decode(b"")
    assert e.value.reason == "empty"
    with pytest.raises(images.ImageReadError, match="not a known image format"):
        images.decode(b"not an image at all")
    with pytest.raises(images.ImageReadError, match="does not exist") as e:
        images.decode("no/such/file.png")
    assert e.value.reason == "missing"
    truncated = _save(Image.fromarray(_RGB), "PNG")[:-30]
    with pytest.raises(images.ImageReadError):
        images.decode(truncated)
    big = _save(Image.new("L", (4000, 3000)), "PNG")
    with pytest.raises(images.ImageReadError, match=r"4000x3000 \(12 megapixels\), over the 10-megapixel limit") as e:
        images.decode(big, max_pixels=10_000_000)
    assert e.value.reason == "too_large"


def test_working_shape_keeps_the_aspect_under_the_limit():
    assert images.working_shape(300, 451, 512, 64) == (320, 448)
    assert images.working_shape(1080, 1920, 512, 64) == (256, 512)
    assert images.working_shape(20, 20, 512, 64) == (64, 64)  # at least one multiple, never zero
    assert images.working_shape(64, 64, 64, 1) == (64, 64)
    with pytest.raises(ValueError, match="below the generator's multiple"):
        images.working_shape(64, 64, 32, 64)
