"""The bundled sample set: every manifest row loads as RGB, and bad locators fail clearly."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regionedit_jax.data import Sample, load_image, load_samples
from regionedit_jax.data.samples import MANIFEST_ENV
from regionedit_jax.images import array_to_rgb as to_rgb_uint8

SAMPLES = load_samples()
SCHEME_HINT = "expected one of skimage:, sklearn:, matplotlib:, or a file path"


def test_manifest_size() -> None:
    assert 10 <= len(SAMPLES) <= 14


def test_ids_are_unique_slugs() -> None:
    ids = [s.id for s in SAMPLES]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i) for i in ids), ids


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_row_text(sample: Sample) -> None:
    assert sample.caption.strip() and sample.license.strip()
    assert len(sample.instructions) >= 3
    for edit in sample.instructions:
        assert edit.instruction.strip() and edit.target_caption.strip()
        assert edit.target_caption != sample.caption
    assert len({e.instruction for e in sample.instructions}) == len(sample.instructions)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_row_loads_as_rgb(sample: Sample) -> None:
    image = sample.image()
    assert image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[-1] == 3
    assert 64 <= min(image.shape[:2]) and max(image.shape[:2]) <= 2048
    assert image.std() > 5, "image is nearly constant"


def test_captions_are_unique() -> None:
    captions = [s.caption for s in SAMPLES]
    assert len(captions) == len(set(captions))


def test_manifest_exercises_conversion() -> None:
    """At least one grayscale photo and one with an alpha channel."""
    sources = {s.source for s in SAMPLES}
    assert "skimage:camera" in sources
    assert "matplotlib:Minduka_Present_Blue_Pack.png" in sources
    gray = load_image("skimage:camera")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    present = load_image("matplotlib:Minduka_Present_Blue_Pack.png")
    assert (present[0, 0] == 255).all(), "transparent corner should composite to white"


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        ("foo:bar.png", ValueError, f"unknown locator scheme 'foo'.*{SCHEME_HINT}"),
        ("skimage:not_an_image", ValueError, "unknown skimage image 'not_an_image'"),
        ("skimage:file_hash", ValueError, "unknown skimage image 'file_hash'"),
        ("sklearn:nope.jpg", ValueError, "unknown sklearn sample image 'nope.jpg'"),
        ("matplotlib:nope.png", ValueError, "matplotlib ships: .*grace_hopper.jpg"),
        ("matplotlib:msft.csv", ValueError, "unknown matplotlib sample image"),
        ("skimage:", ValueError, "names no image"),
        ("no/such/photo.png", FileNotFoundError, "image file not found"),
    ],
)
def test_bad_locators(source: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        load_image(source)


@pytest.mark.parametrize(
    ("module", "source", "hint"),
    [
        ("sklearn", "sklearn:china.jpg", "pip install scikit-learn"),
        ("matplotlib", "matplotlib:grace_hopper.jpg", "pip install matplotlib"),
        ("skimage", "skimage:chelsea", "pip install scikit-image"),
    ],
)
def test_missing_package(monkeypatch: pytest.MonkeyPatch, module: str, source: str, hint: str) -> None:
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModuleNotFoundError, match=hint):
        load_image(source)


def test_download_only_skimage_image(monkeypatch: pytest.MonkeyPatch) -> None:
    import skimage.data

    def needs_pooch() -> np.ndarray:
        raise ModuleNotFoundError("pooch is not installed")

    monkeypatch.setattr(skimage.data, "eagle", needs_pooch)
    with pytest.raises(FileNotFoundError, match="not bundled with scikit-image"):
        load_image("skimage:eagle")


def _write_manifest(folder: Path, rows: list[dict]) -> Path:
    path = folder / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _row(sample_id: str, source: str) -> dict:
    edits = [{"instruction": f"edit {i}", "target_caption": f"after {i}"} for i in range(3)]
    return {"id": sample_id, "source": source, "caption": "a photo", "instructions": edits, "license": "CC0"}


def test_file_paths_resolve_from_the_manifest(tmp_path: Path) -> None:
    """Palette-with-transparency and gray+alpha files load as RGB, relative to the manifest."""
    (tmp_path / "photos").mkdir()
    palette = Image.new("P", (80, 64), 1)
    palette.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    palette.paste(0, (0, 0, 10, 10))
    palette.save(tmp_path / "photos" / "palette.png", transparency=0)
    gray_alpha = Image.merge("LA", [Image.new("L", (70, 90), 100), Image.new("L", (70, 90), 0)])
    gray_alpha.save(tmp_path / "photos" / "gray_alpha.png")
    rows = [_row("palette", "photos/palette.png"), _row("gray-alpha", "photos/gray_alpha.png")]
    manifest = _write_manifest(tmp_path, rows)
    palette_sample, gray_sample = load_samples(manifest)
    image = palette_sample.image()
    assert image.shape == (64, 80, 3) and image.dtype == np.uint8
    assert (image[0, 0] == 255).all() and (image[-1, -1] == (200, 30, 40)).all()
    assert (gray_sample.image() == 255).all()


def test_manifest_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _write_manifest(tmp_path, [_row("cat", "skimage:chelsea")])
    monkeypatch.setenv(MANIFEST_ENV, str(manifest))
    assert [s.id for s in load_samples()] == ["cat"]


def test_default_manifest_is_the_package_data_one() -> None:
    manifest = Path(__file__).resolve().parents[1] / "regionedit_jax" / "data" / "samples.jsonl"
    assert load_samples() == load_samples(manifest) and len(load_samples()) >= 8


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([_row("a", "skimage:chelsea"), _row("a", "skimage:coffee")], "duplicate id 'a'"),
        ([{k: v for k, v in _row("a", "skimage:chelsea").items() if k != "caption"}], r"missing keys \['caption'\]"),
        ([{**_row("a", "skimage:chelsea"), "instructions": "edit it"}], "must be a list"),
        (
            [{**_row("a", "skimage:chelsea"), "instructions": [{"instruction": "x"}]}],
            r"missing keys \['target_caption'\]",
        ),
    ],
)
def test_bad_manifest_rows(tmp_path: Path, rows: list[dict], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_samples(_write_manifest(tmp_path, rows))


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=MANIFEST_ENV):
        load_samples(tmp_path / "absent.jsonl")


@pytest.mark.parametrize("source", ["skimage:horse", "skimage:shepp_logan_phantom", "skimage:logo"])
def test_non_uint8_and_rgba_sources(source: str) -> None:
    """Bool (horse), float (phantom) and RGBA (logo) loaders all come back as uint8 RGB."""
    image = load_image(source)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    assert image.min() < 64 and image.max() > 192


def test_to_rgb_uint8_rescales_and_rejects() -> None:
    wide = np.full((4, 5), 65535, dtype=np.uint16)
    assert (to_rgb_uint8(wide) == 255).all() and to_rgb_uint8(wide).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="unsupported pixel type"):
        to_rgb_uint8(np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(ValueError, match="got shape"):
        to_rgb_uint8(np.zeros((4, 4, 5), dtype=np.uint8))
