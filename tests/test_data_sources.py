"""Pair sources on small real files: WebDataset tars, folders, JSONL, tfds ArrayRecord, HF."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from regionedit_jax.data import sources
from regionedit_jax.data.sources import Pair, expand_braces, open_source


def encoded(value: int, size: tuple[int, int] = (48, 40), fmt: str = "JPEG") -> bytes:
    """A real image file's bytes: a flat colour, size (width, height)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, 100)).save(buffer, format=fmt)
    return buffer.getvalue()


def write_tar(path, members: list[tuple[str, bytes]]) -> str:
    """An uncompressed tar with the members in this order (as img2dataset writes them)."""
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return str(path)


def img2dataset_members(first: int, count: int) -> list[tuple[str, bytes]]:
    """Well-formed img2dataset samples with keys first..first+count-1."""
    members = []
    for n in range(first, first + count):
        key = f"{n:09d}"
        caption = f"a red car number {n}"
        members += [
            (f"{key}.jpg", encoded(n * 10)),
            (f"{key}.txt", caption.encode()),
            (f"{key}.json", json.dumps({"key": key, "caption": caption}).encode()),
        ]
    return members


@pytest.fixture
def wds_tar(tmp_path):
    """One good sample, a corrupt jpeg, a missing caption, a non-UTF-8 caption, a png sample."""
    members = img2dataset_members(0, 1) + [
        ("000000001.jpg", b"\xff\xd8\xff\xe0 not a jpeg"),
        ("000000001.txt", b"a broken photo"),
        ("000000002.jpg", encoded(20)),
        ("000000002.json", b'{"key": "000000002"}'),
        ("000000003.jpg", encoded(30)),
        ("000000003.txt", "caf\xe9 au lait".encode("latin-1")),
        ("000000004.png", encoded(40, fmt="PNG")),
        ("000000004.txt", b"a green field"),
    ]
    return write_tar(tmp_path / "00000.tar", members)


def test_webdataset_groups_members_by_key(wds_tar):
    pairs = list(open_source(f"webdataset:{wds_tar}"))
    assert [p.key for p in pairs] == [f"00000000{n}" for n in range(5)]
    assert pairs[0].caption == b"a red car number 0" and pairs[0].error is None
    assert Image.open(io.BytesIO(pairs[0].image)).size == (48, 40)
    assert pairs[0].origin == "webdataset:00000.tar/000000000"
    assert pairs[1].image.startswith(b"\xff\xd8") and pairs[1].error is None  # decoded later
    assert pairs[2].reason == "missing_caption" and pairs[2].image is not None
    assert pairs[3].caption == "caf\xe9 au lait".encode("latin-1")  # bytes: checked later
    assert Image.open(io.BytesIO(pairs[4].image)).format == "PNG"


def test_webdataset_globs_braces_shards_and_stops(tmp_path):
    for shard in range(3):
        write_tar(tmp_path / f"{shard:05d}.tar", img2dataset_members(shard * 4, 4))
    keys = [p.key for p in open_source(str(tmp_path / "{00000..00002}.tar"))]
    assert keys == [f"{n:09d}" for n in range(12)]
    assert [p.key for p in open_source(f"webdataset:{tmp_path}/*.tar")] == keys
    halves = [list(open_source(f"webdataset:{tmp_path}/*.tar", shard_index=i, num_shards=3)) for i in range(3)]
    assert [p.key for p in halves[1]] == keys[1::3]
    source = open_source(f"webdataset:{tmp_path}/*.tar", shard_index=1, num_shards=2)
    assert source.size() is None
    picked = list(source.iter_local(want=lambda j: j % 2 == 0, stop=5))
    assert [(j, p.key) for j, p in picked] == [(0, keys[1]), (2, keys[5]), (4, keys[9])]


def test_webdataset_broken_archive_is_an_error_pair(tmp_path):
    whole = write_tar(tmp_path / "whole.tar", img2dataset_members(0, 3))
    with tarfile.open(whole) as archive:
        last_image = archive.getmember("000000002.jpg")
    cut = tmp_path / "cut.tar"
    with open(whole, "rb") as f:
        cut.write_bytes(f.read()[: last_image.offset_data + 100])
    pairs = list(open_source(str(cut)))
    assert [p.key for p in pairs] == ["000000000", "000000001", "000000002", "cut.tar:broken"]
    assert pairs[1].error is None and pairs[-1].reason == "read_error"
    missing = tmp_path / "nope.tar"
    with pytest.raises(FileNotFoundError, match=r"nope\.tar"):
        open_source(str(missing))


def test_folder_pairs_images_with_txt_captions(tmp_path):
    (tmp_path / "pics" / "sub").mkdir(parents=True)
    (tmp_path / "pics" / "a.jpg").write_bytes(encoded(1))
    (tmp_path / "pics" / "a.txt").write_text("a dog on a beach")
    (tmp_path / "pics" / "sub" / "b.png").write_bytes(encoded(2, fmt="PNG"))
    (tmp_path / "pics" / "sub" / "b.txt").write_text("a cat on a sofa")
    (tmp_path / "pics" / "c.jpeg").write_bytes(encoded(3))
    (tmp_path / "pics" / "notes.md").write_text("not an image")
    pairs = list(open_source(f"folder:{tmp_path / 'pics'}"))
    assert [p.key for p in pairs] == ["a", "c", "sub/b"]
    assert pairs[0].caption == b"a dog on a beach" and pairs[2].caption == b"a cat on a sofa"
    assert pairs[1].caption is None and pairs[2].origin == "folder:pics/sub/b"
    assert open_source(f"folder:{tmp_path / 'pics'}", shard_index=1, num_shards=2).size() == 1


def test_jsonl_manifest_rows_missing_files_and_locators(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "one.jpg").write_bytes(encoded(5))
    rows = [
        {"image": "img/one.jpg", "caption": "a bowl of fruit"},
        {"image": "img/gone.jpg", "caption": "a lost photo"},
        {"id": "cat", "source": "skimage:chelsea", "caption": "a tabby cat"},
        "not an object",
        {"caption": "no image"},
    ]
    lines = [json.dumps(row) for row in rows] + ["{broken"]
    manifest = tmp_path / "pairs.jsonl"
    text = "\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n"
    extra = [b'{"image": "img/one.jpg", "caption": "caf\xe9"}', b'{"image": ["img/one.jpg"], "caption": "a list"}']
    manifest.write_bytes(text.encode() + b"\n".join(extra) + b"\n")
    pairs = list(open_source(str(manifest)))
    assert [p.key for p in pairs] == ["1", "2", "cat", "5", "6", "7", "8", "9"]
    assert pairs[6].reason == "read_error" and pairs[6].error.endswith("line 8 is not UTF-8 text")
    assert pairs[7].reason == "missing_image" and "line 9 has an image field of type list" in pairs[7].error
    pairs = pairs[:6]
    assert pairs[0].image == encoded(5) and pairs[0].caption == "a bowl of fruit"
    assert pairs[1].reason == "missing_file" and "gone.jpg" in pairs[1].error
    assert isinstance(pairs[2].image, np.ndarray) and pairs[2].image.shape == (300, 451, 3)
    assert [p.reason for p in pairs[3:]] == ["read_error", "missing_image", "read_error"]
    assert open_source(f"jsonl:{manifest}", shard_index=0, num_shards=4).size() == 2


def test_samples_spec_is_the_bundled_set():
    source = open_source("samples")
    assert source.size() == 12
    [(_, pair)] = list(source.iter_local(stop=1))
    assert pair.key == "astronaut" and pair.image.shape == (512, 512, 3) and pair.error is None


# tensorflow-datasets: a real ArrayRecord dataset, prepared without TensorFlow ------------------


def make_tfds_dataset(data_dir: str, count: int = 6) -> str:
    """Prepare a tiny tfds dataset ("mini_pairs", ArrayRecord) with an Image and two Text features
    (the default caption is the one named like a caption, though "alt" sorts first).

    tfds encodes Image features from encoded bytes without TensorFlow; only NumPy pixel arrays go
    through TensorFlow. The builder also avoids the helpers that look up package metadata.
    """
    import tensorflow_datasets as tfds

    class MiniPairs(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "photo": tfds.features.Image(encoding_format="png"),
                        "caption": tfds.features.Text(),
                        "alt": tfds.features.Text(),
                        "index": tfds.features.Scalar(np.int64),
                    }
                ),
                disable_shuffling=True,
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(count), "test": self._generate_examples(2)}

        def _generate_examples(self, n):
            for i in range(n):
                yield (
                    i,
                    {
                        "photo": encoded(i * 20, fmt="PNG"),
                        "caption": f"a blue boat {i}",
                        "alt": f"alt text {i}",
                        "index": i,
                    },
                )

    builder = MiniPairs(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig())
    return os.path.join(data_dir, "mini_pairs", "1.0.0")


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    return data_dir, make_tfds_dataset(data_dir)


def test_tfds_by_name_and_by_folder(tfds_dir):
    data_dir, version_dir = tfds_dir
    pairs = list(open_source("tfds:mini_pairs", data_dir=data_dir))
    assert len(pairs) == 6 and pairs[0].origin == "tfds:mini_pairs/train/0"
    assert pairs[3].caption == b"a blue boat 3"
    pixels = np.asarray(Image.open(io.BytesIO(pairs[3].image)))  # still encoded: no TensorFlow
    assert pixels.shape == (40, 48, 3) and tuple(pixels[0, 0]) == (60, 195, 100)
    by_folder = list(open_source(f"tfds:{version_dir}:test"))
    assert [p.caption for p in by_folder] == [b"a blue boat 0", b"a blue boat 1"]


def test_tfds_options_and_sharding(tfds_dir):
    data_dir, _ = tfds_dir
    source = open_source(
        "tfds:mini_pairs:1.0.0:train", data_dir=data_dir, caption_field="alt", shard_index=1, num_shards=4
    )
    assert source.size() == 2
    assert [p.caption for p in source] == [b"alt text 1", b"alt text 5"]
    with pytest.raises(FileNotFoundError, match="not prepared"):
        open_source("tfds:no_such_dataset_here", data_dir=data_dir)
    with pytest.raises(ValueError, match="validation"):
        open_source("tfds:mini_pairs:validation", data_dir=data_dir)


# Hugging Face datasets: save_to_disk and the hub's parquet layout ------------------------------


@pytest.fixture(scope="module")
def hf_dataset():
    import datasets

    features = datasets.Features(
        {
            "url": datasets.Value("string"),
            "image": datasets.Image(),
            "TEXT": datasets.Value("string"),
            "caption_de": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "url": [f"https://example.com/{i}.jpg" for i in range(5)],
            "image": [{"bytes": encoded(i * 30), "path": None} for i in range(5)],
            "TEXT": [f"a yellow kite {i}" for i in range(5)],
            "caption_de": [f"ein gelber Drachen {i}" for i in range(5)],
        },
        features=features,
    )


def test_hf_save_to_disk(tmp_path, hf_dataset):
    import datasets

    hf_dataset.save_to_disk(str(tmp_path / "single"))
    datasets.DatasetDict({"train": hf_dataset, "validation": hf_dataset.select([4])}).save_to_disk(
        str(tmp_path / "dict")
    )
    pairs = list(open_source(f"hf:{tmp_path / 'single'}"))
    assert [p.caption for p in pairs] == [f"a yellow kite {i}" for i in range(5)]
    assert pairs[2].image == encoded(60) and pairs[2].origin == "hf:single/train/2"
    [only] = list(open_source(f"hf:{tmp_path / 'dict'}:validation", caption_field="caption_de"))
    assert only.caption == "ein gelber Drachen 4"


def test_hf_parquet_hub_layout(tmp_path, hf_dataset):
    (tmp_path / "repo" / "data").mkdir(parents=True)
    hf_dataset.to_parquet(str(tmp_path / "repo" / "data" / "train-00000-of-00001.parquet"))
    hf_dataset.select([0, 1]).to_parquet(str(tmp_path / "repo" / "data" / "test-00000-of-00001.parquet"))
    cache = str(tmp_path / "cache")
    pairs = list(open_source(f"hf:{tmp_path / 'repo'}", cache_dir=cache, shard_index=0, num_shards=2))
    assert [p.key for p in pairs] == ["0", "2", "4"] and pairs[1].image == encoded(60)
    assert [p.caption for p in open_source(f"hf:{tmp_path / 'repo'}:test", cache_dir=cache)] == [
        "a yellow kite 0",
        "a yellow kite 1",
    ]
    with pytest.raises(FileNotFoundError, match="'test', 'train'"):
        open_source(f"hf:{tmp_path / 'repo'}:dev", cache_dir=cache)
    with pytest.raises(ValueError, match="image column"):
        open_source(f"hf:{tmp_path / 'repo'}", cache_dir=cache, image_field="picture")


# Specs ----------------------------------------------------------------------------------------


def test_spec_errors_and_braces(tmp_path):
    with pytest.raises(ValueError, match="webdataset:GLOB"):
        open_source("s3://bucket/shards")
    with pytest.raises(TypeError, match="data_dir"):
        open_source("samples", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="shard_index"):
        open_source("samples", shard_index=2, num_shards=2)
    assert expand_braces("s-{008..010}.tar") == ["s-008.tar", "s-009.tar", "s-010.tar"]
    assert expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    assert Pair("k", None, None, "o", "missing_file: x.jpg").reason == "missing_file"
    assert set(sources.SOURCE_ERRORS) >= {"missing_file", "missing_caption", "read_error"}
