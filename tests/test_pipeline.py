"""The grain input pipeline: image modes, bad-record skipping, determinism, resume, host slices."""

import io
import json
import os

import grain
import jax
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from PIL import Image

from regionedit_jax.data import pipeline, records
from regionedit_jax.towers import text

SIZE = 16  # pipeline image size in these tests
GOOD = 28  # plain RGB records


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _record(
    i: int, image: bytes, caption: str | None = None, instruction: str | None = None, target: str | None = None
) -> records.Record:
    return records.Record(
        id=f"r{i}",
        image=image,
        caption=f"photo number {i}" if caption is None else caption,
        instruction=f"make it {i} times brighter" if instruction is None else instruction,
        target_caption=f"bright photo number {i}" if target is None else target,
    )


def _palette_png() -> bytes:
    image = Image.new("P", (24, 24), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (12, 0, 24, 24))  # right half: index 1 (green); left half: index 0 (red), transparent
    return _encode(image, "PNG", transparency=0)


def _mode_images() -> dict[str, tuple[bytes, tuple[int, int, int]]]:
    """Mode -> (encoded 24x24 image, its expected RGB colour at the centre-left)."""
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[...] = (0, 0, 255, 128)  # half-transparent blue over white
    i16 = np.full((24, 24), 128 * 257, np.uint16)
    i32 = np.full((24, 24), 100 * 257, np.int32)
    return {
        "L": (_encode(Image.new("L", (24, 24), 100), "PNG"), (100, 100, 100)),
        "1": (_encode(Image.new("1", (24, 24), 1), "PNG"), (255, 255, 255)),
        "LA": (_encode(Image.new("LA", (24, 24), (0, 0)), "PNG"), (255, 255, 255)),
        "RGBA": (_encode(Image.fromarray(rgba, "RGBA"), "PNG"), (127, 127, 255)),
        "CMYK": (_encode(Image.new("CMYK", (24, 24), (100, 50, 0, 100)), "TIFF"), (94, 125, 155)),
        "P": (_palette_png(), (255, 255, 255)),
        "I;16": (_encode(Image.fromarray(i16), "PNG"), (128, 128, 128)),
        "I": (_encode(Image.fromarray(i32, "I"), "TIFF"), (100, 100, 100)),
        "RGB": (_encode(Image.new("RGB", (24, 24), (10, 200, 30)), "PNG"), (10, 200, 30)),
    }


# Bad records by reason (their counts in one epoch).
EXPECTED_SKIPS = {"bad_record": 2, "bad_image": 2, "bad_size": 1, "extreme_aspect": 1, "bad_text": 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    """Two shards: GOOD RGB JPEGs, one image per mode, and the bad records of EXPECTED_SKIPS."""
    out = str(tmp_path_factory.mktemp("shards"))
    rng = np.random.default_rng(0)
    good = [_record(i, records.encode_image(rng.integers(0, 256, (20 + i % 5, 24, 3), np.uint8))) for i in range(GOOD)]
    modes = [_record(100 + i, data) for i, (data, _) in enumerate(_mode_images().values())]
    jpeg = records.encode_image(rng.integers(0, 256, (40, 40, 3), np.uint8))
    bad = [
        _record(200, jpeg[: len(jpeg) // 2]),  # truncated JPEG
        _record(201, b"not an image at all"),
        _record(202, _encode(Image.new("RGB", (4, 4)), "PNG")),  # under min_side
        _record(203, _encode(Image.new("RGB", (1, 100)), "PNG")),  # 1x100
        _record(204, jpeg, caption=""),
        _record(205, jpeg, instruction="   "),
        _record(206, jpeg, target=""),
    ]
    with records.ShardWriter(records.shard_name(out, "t", 0, 2)) as w:
        for r in good[: GOOD // 2] + bad:
            w.write(r)
    with records.ShardWriter(records.shard_name(out, "t", 1, 2)) as w:
        for r in good[GOOD // 2 :] + modes:
            w.write(r)
    # Records that fail records.decode: garbage bytes and a wrong schema version.
    from array_record.python.array_record_module import ArrayRecordWriter

    writer = ArrayRecordWriter(records.shard_name(out, "u", 0, 1), "group_size:1")
    writer.write(b"\x93garbage")
    writer.write(records.encode(good[0]).replace(b"\xa6schema\x01", b"\xa6schema\x07"))
    writer.close()
    return out


@pytest.fixture(scope="module")
def tokenizers(tiny_bundle):
    return {
        "clip_tokenizer": text.load_clip(os.path.join(tiny_bundle, "clip"), "CLIP"),
        "t5_tokenizer": text.load_t5(os.path.join(tiny_bundle, "t5"), "T5"),
    }


def _dataset(data_dir, tokenizers, **kwargs):
    args = dict(
        image_size=SIZE,
        global_batch_size=4,
        seed=0,
        min_side=8,
        t5_max_length=12,
        process_index=0,
        process_count=1,
        read_threads=2,
    )
    return pipeline.make_dataset(data_dir, **tokenizers, **{**args, **kwargs})


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _epoch(data_dir, tokenizers, **kwargs):
    """All batches of one unshuffled epoch, and the iterator's skip counts."""
    iterator = iter(_dataset(data_dir, tokenizers, num_epochs=1, shuffle=False, drop_remainder=False, **kwargs))
    batches = list(iterator)
    return batches, iterator.skipped


def _valid_rows(batches, key):
    return [tuple(row) for b in batches for row, ok in zip(b[key], b["valid"]) if ok]


@pytest.mark.parametrize("mode", list(_mode_images()))
def test_every_mode_becomes_rgb(mode):
    data, expected = _mode_images()[mode]
    assert Image.open(io.BytesIO(data)).mode == mode
    out = pipeline.load_rgb(data, 24)
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[12, 4].astype(int), expected, atol=1)
    if mode == "P":  # the opaque right half keeps its palette colour
        np.testing.assert_array_equal(out[12, 20], (0, 255, 0))


def test_center_crop_and_pad():
    image = np.zeros((32, 64, 3), np.uint8)
    image[:, :32] = (255, 0, 0)
    image[:, 32:] = (0, 0, 255)
    data = _encode(Image.fromarray(image), "PNG")
    crop = pipeline.load_rgb(data, 32, "center")
    np.testing.assert_array_equal(crop[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(crop[31, 31], (0, 0, 255))
    pad = pipeline.load_rgb(data, 32, "pad", fill=7)
    np.testing.assert_array_equal(pad[0, 0], (7, 7, 7))  # border above the 32x16 image
    np.testing.assert_array_equal(pad[16, 2], (255, 0, 0))
    np.testing.assert_array_equal(pad[16, 29], (0, 0, 255))


def test_reduced_jpeg_decoding_matches_full_decoding():
    y, x = np.mgrid[0:200, 0:400]
    image = np.stack([x * 255 // 399, y * 255 // 199, (x + y) % 256], -1).astype(np.uint8)
    data = _encode(Image.fromarray(image), "JPEG", quality=95)
    for crop in pipeline.CROPS:  # 200 px -> 48 px: decoded at 1/4 (center) or 1/8 (pad) scale
        full = np.asarray(pipeline.fit(Image.open(io.BytesIO(data)).convert("RGB"), 48, crop), np.float32)
        out = pipeline.load_rgb(data, 48, crop)
        assert out.shape == (48, 48, 3)
        assert np.abs(out - full).mean() < 3


def test_batches_and_skips(data_dir, tokenizers):
    batches, skipped = _epoch(data_dir, tokenizers)
    assert skipped == {**dict.fromkeys(pipeline.REASONS, 0), **EXPECTED_SKIPS}
    good = GOOD + len(_mode_images())
    assert sum(int(b["valid"].sum()) for b in batches) == good
    assert len(batches) == -(-good // 4) and not batches[-1]["valid"].all()
    b = batches[0]
    assert b["image"].shape == (4, SIZE, SIZE, 3) and b["image"].dtype == np.uint8
    for key in ("clip_caption", "clip_target"):
        assert b[f"{key}_ids"].shape == b[f"{key}_mask"].shape == (4, 77)
    assert b["t5_ids"].shape == (4, 12)
    assert all(b[k].dtype == np.int32 for k in b if k.endswith(("_ids", "_mask")))
    assert b["valid"].dtype == bool and b["valid"].all()
    assert b["clip_caption_mask"][:, 0].all() and not b["clip_caption_mask"][:, -1].any()
    assert not np.array_equal(b["clip_caption_ids"], b["clip_target_ids"])


def test_seeded_order(data_dir, tokenizers):
    def first(seed):
        return _take(iter(_dataset(data_dir, tokenizers, seed=seed)), 3)

    a, b, c = first(0), first(0), first(1)
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x["clip_caption_ids"], z["clip_caption_ids"]) for x, z in zip(a, c))


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume(data_dir, tokenizers, workers):
    if workers:
        from absl import flags

        flags.FLAGS.mark_as_parsed()
    ds = _dataset(data_dir, tokenizers, worker_count=workers)
    iterator = iter(ds)
    _take(iterator, 3)
    state = iterator.get_state()
    expected = _take(iterator, 3)
    iterator.close()
    restored = iter(ds)
    restored.set_state(json.loads(json.dumps(state)))  # as a checkpoint stores it
    assert restored.skipped == state["skipped"]
    for x, y in zip(expected, _take(restored, 3)):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    restored.close()


def test_host_slices(data_dir, tokenizers):
    everything, _ = _epoch(data_dir, tokenizers)
    hosts = [_epoch(data_dir, tokenizers, process_index=i, process_count=2, global_batch_size=8) for i in (0, 1)]
    rows = [_valid_rows(b, "clip_caption_ids") for b, _ in hosts]
    assert hosts[0][0][0]["image"].shape[0] == 4  # per-host batch = 8 // 2
    assert not set(rows[0]) & set(rows[1])
    assert sorted(rows[0] + rows[1]) == sorted(_valid_rows(everything, "clip_caption_ids"))
    total = {r: hosts[0][1][r] + hosts[1][1][r] for r in pipeline.REASONS}
    assert total == {**dict.fromkeys(pipeline.REASONS, 0), **EXPECTED_SKIPS}


def test_bad_arguments(data_dir, tokenizers):
    with pytest.raises(ValueError, match="multiple of the process count"):
        _dataset(data_dir, tokenizers, global_batch_size=5, process_count=2)
    with pytest.raises(ValueError, match="crop"):
        _dataset(data_dir, tokenizers, crop="stretch")


@pytest.mark.parametrize("axes", [("data", "fsdp"), ("data",)])
def test_to_global(data_dir, tokenizers, axes):
    devices = np.array(jax.devices()[:8])
    mesh = Mesh(devices.reshape((4, 2) if len(axes) == 2 else (8,)), axes)
    batch = next(iter(_dataset(data_dir, tokenizers, global_batch_size=8)))
    arrays = pipeline.to_global(batch, mesh)
    assert arrays.keys() == batch.keys()
    for k, v in arrays.items():
        assert v.shape == batch[k].shape and v.dtype == batch[k].dtype
        assert v.sharding.spec == P(axes)
        np.testing.assert_array_equal(np.asarray(v), batch[k])
    assert len(arrays["image"].addressable_shards) == 8
    assert arrays["image"].addressable_shards[0].data.shape == (1, SIZE, SIZE, 3)


def test_a_damaged_record_is_skipped_and_a_truncated_shard_named(data_dir, tokenizers, tmp_path):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(data_dir, damaged)
    shard = records.shard_name(str(damaged), "t", 1, 2)
    data = bytearray(open(shard, "rb").read())
    first = records.decode(grain.sources.ArrayRecordDataSource([shard])[0])
    at = bytes(data).find(first.image[100:140])  # inside the first record's chunk (stored uncompressed)
    assert at > 0
    data[at : at + 40] = bytes(b ^ 0x5A for b in data[at : at + 40])
    open(shard, "wb").write(data)
    records.check_shards(str(damaged))  # the shard's index is intact: it opens
    batches, skipped = _epoch(str(damaged), tokenizers)
    assert skipped["bad_record"] == EXPECTED_SKIPS["bad_record"] + 1
    assert sum(int(b["valid"].sum()) for b in batches) == GOOD + len(_mode_images()) - 1

    cut = records.shard_name(str(damaged), "t", 0, 2)
    whole = open(cut, "rb").read()
    open(cut, "wb").write(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"shard '.*t-00000-of-00002.*' is damaged .* Delete it and rerun"):
        records.check_shards(str(damaged))
