"""prepare_data: shards readable by grain, exact reject counts, resume, process sharding."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_data_sources import encoded, img2dataset_members, write_tar

from regionedit_jax.data import annotate, records
from regionedit_jax.data.annotate import Settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(source: str, out, **kw) -> dict:
    return annotate.annotate(Settings(source=source, out=str(out), **kw), workers=2, progress=False)


def read_records(out) -> list[records.Record]:
    import grain

    source = grain.sources.ArrayRecordDataSource(records.shard_paths(str(out)))
    return [records.decode(source[i]) for i in range(len(source))]


def shard_bytes(out) -> dict[str, bytes]:
    return {os.path.basename(p): open(p, "rb").read() for p in records.shard_paths(str(out))}


def test_samples_round_trip_through_grain(tmp_path):
    manifest = run("samples", tmp_path, records_per_shard=5, max_side=128)
    assert sorted(shard_bytes(tmp_path)) == [f"part-00000-0000{k}.array_record" for k in range(3)]
    totals = manifest["totals"]
    assert totals["inputs"] == 12 and totals["records"] + totals["rejected"] == 12
    assert totals["records"] >= 10
    got = read_records(tmp_path)
    assert len(got) == totals["records"]
    cat = next(r for r in got if r.source == "jsonl:samples.jsonl/cat")
    assert cat.caption.startswith("A close-up of a tabby cat")
    assert cat.instruction and cat.target_caption != cat.caption and cat.edit_kind
    assert cat.id == annotate.record_id("jsonl:samples.jsonl/cat")
    with Image.open(io.BytesIO(cat.image)) as image:
        assert image.format == "JPEG" and image.mode == "RGB" and max(image.size) == 128
    assert len({r.id for r in got}) == len(got)
    merged = json.loads((tmp_path / "manifest.json").read_text())
    assert merged["totals"] == totals and merged["settings"]["source"] == "samples"


def corrupt_members() -> list[tuple[str, bytes]]:
    """Three good samples and one sample per reject reason, in img2dataset layout."""
    good = encoded(9, (64, 48))
    truncated = encoded(50, (300, 200))
    members = img2dataset_members(0, 3) + [
        ("bad_bytes.jpg", b"\xff\xd8\xff\xe0 garbage"),
        ("bad_bytes.txt", b"a broken photo"),
        ("cut.jpg", truncated[: len(truncated) // 2]),
        ("cut.txt", b"a cut-off photo"),
        ("empty.jpg", b""),
        ("empty.txt", b"an empty file"),
        ("strip.jpg", encoded(9, (400, 40))),
        ("strip.txt", b"a very wide strip"),
        ("tiny.jpg", encoded(9, (20, 60))),
        ("tiny.txt", b"a tiny thumbnail"),
        ("nocap.jpg", good),
        ("nocap.json", b'{"key": "nocap"}'),
        ("latin.jpg", good),
        ("latin.txt", "caf\xe9 cr\xe8me".encode("latin-1")),
        ("blank.jpg", good),
        ("blank.txt", b"  \n\t "),
        ("filename.jpg", good),
        ("filename.txt", b"IMG_2031.JPG"),
        ("short.jpg", good),
        ("short.txt", b"dog"),
        ("noimage.txt", b"a caption without a photo"),
        ("spaced.jpg", good),
        ("spaced.txt", b"  a  small\nbrown   dog on a red sofa "),
    ]
    return members


def test_corrupt_data_counts_every_reject(tmp_path):
    tar = write_tar(tmp_path / "00000.tar", corrupt_members())
    manifest = run(f"webdataset:{tar}", tmp_path / "out", records_per_shard=100)
    totals = manifest["totals"]
    assert totals["rejects"] == {
        "corrupt_image": 1,
        "describe:garbled": 1,
        "describe:too_short": 1,
        "empty_caption": 1,
        "extreme_aspect": 1,
        "missing_caption": 1,
        "missing_image": 1,
        "non_utf8_caption": 1,
        "too_small": 1,
        "truncated_image": 1,
        "zero_size": 1,
    }
    assert totals["examples"]["truncated_image"] == ["cut"]
    assert totals["records"] == 4 and totals["inputs"] == 15
    got = read_records(tmp_path / "out")
    assert [r.source for r in got][-1] == "webdataset:00000.tar/spaced"
    assert got[-1].caption == "a small brown dog on a red sofa"


def test_resume_rewrites_only_the_missing_shard(tmp_path):
    tar = write_tar(tmp_path / "00000.tar", img2dataset_members(0, 7))
    out = tmp_path / "out"
    first = run(f"webdataset:{tar}", out, records_per_shard=2)
    before = shard_bytes(out)
    assert len(before) == 4 and first["run"]["shards_written"] == 4
    stamps = {name: os.stat(out / name).st_mtime_ns for name in before}
    os.remove(out / "part-00000-00001.array_record")
    second = run(f"webdataset:{tar}", out, records_per_shard=2)
    assert second["run"]["shards_written"] == 1 and second["run"]["shards_skipped"] == 3
    assert second["run"]["pairs"] == 2
    assert shard_bytes(out) == before
    changed = [n for n in before if os.stat(out / n).st_mtime_ns != stamps[n]]
    assert changed == ["part-00000-00001.array_record"]
    assert second["totals"] == first["totals"]
    with pytest.raises(ValueError, match="records_per_shard"):
        run(f"webdataset:{tar}", out, records_per_shard=3)


def test_two_processes_cover_the_data_disjointly(tmp_path):
    write_tar(tmp_path / "00000.tar", img2dataset_members(0, 5))
    write_tar(tmp_path / "00001.tar", img2dataset_members(5, 4))
    spec = f"webdataset:{tmp_path}/{{00000..00001}}.tar"
    run(spec, tmp_path / "whole", records_per_shard=3)
    run(spec, tmp_path / "split", records_per_shard=3, shard_index=1, num_shards=2)
    assert not (tmp_path / "split" / "manifest.json").exists()
    with pytest.raises(ValueError, match=r"processes \[0\] have no manifest"):
        annotate.merge(str(tmp_path / "split"))
    run(spec, tmp_path / "split", records_per_shard=3, shard_index=0, num_shards=2)
    assert sorted(shard_bytes(tmp_path / "split")) == [
        "part-00000-00000.array_record",
        "part-00000-00001.array_record",
        "part-00001-00000.array_record",
        "part-00001-00001.array_record",
    ]
    whole = {r.id: r for r in read_records(tmp_path / "whole")}
    split = read_records(tmp_path / "split")
    assert len(split) == len(whole) == 9 and {r.id for r in split} == set(whole)
    assert all(r == whole[r.id] for r in split)
    merged = annotate.merge(str(tmp_path / "split"))
    assert merged["totals"]["records"] == 9 and merged["processes"] == 2


def test_launcher_folder_with_limit(tmp_path):
    pics = tmp_path / "pics"
    pics.mkdir()
    for n in range(4):
        (pics / f"{n}.png").write_bytes(encoded(n * 40, fmt="PNG"))
        (pics / f"{n}.txt").write_text(f"a white horse in a field number {n}")
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "launch", "prepare_data.py"),
            f"--source=folder:{pics}",
            f"--out={out}",
            "--limit=3",
            "--max_side=64",
            "--noprogress",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 records, 0 rejected" in result.stdout
    assert [r.source for r in read_records(out)] == [f"folder:pics/{n}" for n in range(3)]


def test_load_image_orientation_draft_and_limits(monkeypatch):
    settings = Settings(source="", out="", max_side=64)
    photo = Image.new("RGB", (300, 200), (200, 30, 30))
    exif = photo.getexif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees to view
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", exif=exif)
    upright = annotate.load_image(buffer.getvalue(), settings)
    assert upright.shape == (75, 50, 3)  # decoded at 1/4 scale (still >= 64 px), turned upright
    assert annotate.load_image(np.zeros((40, 50, 3), np.uint8), settings).shape == (40, 50, 3)
    with pytest.raises(annotate.Reject) as caught:
        annotate.load_image(np.zeros((0, 50, 3), np.uint8), settings)
    assert caught.value.reason == "zero_size"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(annotate.Reject) as caught:
        annotate.load_image(encoded(1, (100, 100)), settings)
    assert caught.value.reason == "too_large"
    assert annotate.clean_caption(b" a\tcat \n") == "a cat"


def test_bad_jsonl_rows_are_counted_by_reason_and_the_rest_completes(tmp_path):
    (tmp_path / "one.jpg").write_bytes(encoded(5))
    good = {"image": "one.jpg", "caption": "a small brown dog on a red sofa"}
    lines = [
        json.dumps(good).encode(),
        b'{"image": "one.jpg", "caption": "a dog \\ud800 on a sofa"}',  # a lone surrogate
        json.dumps({"image": "one.jpg", "caption": 42}).encode(),
        json.dumps({"image": ["one.jpg"], "caption": "a list for an image"}).encode(),
        b'{"image": "one.jpg", "caption": "caf\xe9 on a terrace"}',  # not UTF-8
        b'{"image": "one.jpg", "capt',  # cut off
        json.dumps({**good, "caption": "a large black cat sleeping on a wooden chair"}).encode(),
    ]
    (tmp_path / "pairs.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    totals = run(f"jsonl:{tmp_path / 'pairs.jsonl'}", tmp_path / "out")["totals"]
    assert totals["rejects"] == {"non_utf8_caption": 1, "bad_caption": 1, "missing_image": 1, "read_error": 2}
    assert totals["records"] == 2 and totals["inputs"] == 7
    assert [r.caption for r in read_records(tmp_path / "out")] == [
        good["caption"],
        "a large black cat sleeping on a wooden chair",
    ]
