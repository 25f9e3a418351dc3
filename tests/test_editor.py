"""The Editor and the edit CLI: preservation outside the region, reproducibility, masks, errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from regionedit_jax import checkpoints, edit_cli
from regionedit_jax.data import samples

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.fixture(scope="module")
def photo():
    return samples.load_image("skimage:chelsea")[:120, :160]  # [H, W, 3] uint8, not square


@pytest.fixture(scope="module")
def first(editor, photo):
    return editor.edit(photo, "turn the cat into a dog", seed=0, source_caption="a cat on a sofa")


def test_edit_keeps_everything_outside_the_region(first, photo):
    assert first.image.shape == photo.shape and first.image.dtype == np.uint8
    assert first.mask.shape == first.probs.shape == photo.shape[:2]
    np.testing.assert_array_equal(first.image[~first.mask], photo[~first.mask])
    assert first.target_caption == "a dog on a sofa"
    assert set(first.timings) == {"describe", "compile", "edit", "total"}


def test_same_seed_same_image_and_cached_compile(editor, photo, first):
    again = editor.edit(photo, "turn the cat into a dog", seed=0, source_caption="a cat on a sofa")
    np.testing.assert_array_equal(again.image, first.image)
    assert again.timings["compile"] == 0.0


def test_mixed_shapes_edit_at_their_own_aspect_in_one_bucket_each(editor, photo):
    """Working shapes keep the aspect under edit.max_side (32, multiple 4); output at each source's size."""
    tall = np.ascontiguousarray(photo[:, :60])  # 120 x 60
    shapes = [editor.working_images([x])[0].shape[:2] for x in (photo, tall, photo)]
    assert shapes == [(24, 32), (32, 16), (24, 32)]
    before = len(editor.compile_seconds)
    results = editor.edit_batch(
        [photo, tall, photo],
        ["make it red"] * 3,
        seed=1,
        source_captions=["a cat"] * 3,
        target_captions=["a red cat"] * 3,
    )
    assert len(editor.compile_seconds) - before <= 2  # one compiled call per working shape
    for source, result in zip([photo, tall, photo], results, strict=True):
        assert result.image.shape == source.shape
        np.testing.assert_array_equal(result.image[~result.mask], source[~result.mask])
    np.testing.assert_array_equal(results[0].probs, results[2].probs)  # same image, same region


def test_user_mask_is_the_region(editor, photo):
    mask = np.zeros(photo.shape[:2], bool)
    mask[20:60, 30:90] = True
    result = editor.edit(photo, "make it red", mask=mask, source_caption="a cat", target_caption="a red cat")
    np.testing.assert_array_equal(result.mask, mask)
    np.testing.assert_array_equal(result.image[~mask], photo[~mask])
    assert not np.array_equal(result.image[mask], photo[mask])
    with pytest.raises(ValueError, match="mask is 10x10 .* image is 160x120"):
        editor.edit(photo, "make it red", mask=np.ones((10, 10), bool), source_caption="a cat")


def test_batch_multi_turn_and_captioner(editor, photo):
    results = editor.edit_batch([photo, photo[:, ::-1]], ["make it winter", "add a hat"], seed=3)
    assert len(results) == 2 and all(r.source_caption.startswith("a photo of a ") for r in results)
    turns = editor.edit_turns(
        photo, ["turn the cat into a dog", "make the dog red"], seed=1, source_caption="a cat on a sofa"
    )
    assert [t.target_caption for t in turns] == ["a dog on a sofa", "a red dog on a sofa"]
    assert turns[1].source_caption == turns[0].target_caption


def test_bad_requests_are_refused_clearly(editor, photo):
    with pytest.raises(ValueError, match="instruction 0 is empty"):
        editor.edit(photo, "  ", source_caption="a cat")
    with pytest.raises(ValueError, match="cannot turn the instruction"):
        editor.edit(photo, "asdf qwer zxcv", source_caption="a cat")
    with pytest.raises(ValueError, match="one instruction per image"):
        editor.edit_batch([photo], ["a", "b"])


def test_unreachable_describe_server_names_the_url(editor, photo):
    from regionedit_jax import describe

    dead = describe.make("openai", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=0.5)
    saved, editor.rewriter = editor.rewriter, dead
    try:
        with pytest.raises(describe.BackendError, match="127.0.0.1:9"):
            editor.edit(photo, "make it red", source_caption="a cat")
    finally:
        editor.rewriter = saved


def test_checkpointed_params_round_trip(editor, tmp_path):
    import jax

    checkpoints.save_params(str(tmp_path / "ckpt"), 7, editor.params)
    restored, step = checkpoints.restore_params(str(tmp_path / "ckpt"), editor.params)
    assert step == 7
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(editor.params), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoints.restore_params(str(tmp_path / "none"), editor.params)


def test_cli_batch_writes_every_picture(editor, photo, tmp_path):
    Image.fromarray(photo).save(tmp_path / "cat.png")
    lines = [
        {"image": "cat.png", "instruction": "make it winter", "source_caption": "a cat"},
        {"image": "cat.png", "instruction": "add a hat", "source_caption": "a cat"},
    ]
    (tmp_path / "edits.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    rows, bad = edit_cli.read_batch(str(tmp_path / "edits.jsonl"))
    assert bad == [] and edit_cli.validate(rows) == []
    entries = edit_cli.run(
        editor, rows, str(tmp_path / "out"), seed=0, num_steps=None, guidance_scale=None, threshold=None, progress=False
    )
    folders = [e["folder"] for e in entries]
    assert folders == [str(tmp_path / "out" / "00000"), str(tmp_path / "out" / "00001")]
    assert edit_cli.failure_summary(entries, str(tmp_path / "out")) is None
    for folder in folders:
        assert sorted(os.listdir(folder)) == ["edited.png", "mask.png", "overlay.png", "result.json"]
        info = json.load(open(os.path.join(folder, "result.json")))
        assert info["source_caption"] == "a cat" and info["num_steps"] == 4
        assert Image.open(os.path.join(folder, "overlay.png")).size == (160, 120)


def test_cli_replaces_links_inside_out_and_never_writes_through_them(editor, photo, tmp_path):
    Image.fromarray(photo).save(tmp_path / "cat.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.png").write_bytes(b"precious")
    out = tmp_path / "out"
    (out / "00000").mkdir(parents=True)
    os.symlink(outside / "keep.png", out / "00000" / "edited.png")  # a file link inside a row folder
    os.symlink(outside, out / "00001")  # a row folder that is a link
    lines = [{"image": "cat.png", "instruction": "add a hat", "source_caption": "a cat"}] * 2
    (tmp_path / "edits.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    rows, _ = edit_cli.read_batch(str(tmp_path / "edits.jsonl"))
    edit_cli.run(editor, rows, str(out), seed=0, num_steps=None, guidance_scale=None, threshold=None, progress=False)
    assert sorted(os.listdir(outside)) == ["keep.png"] and (outside / "keep.png").read_bytes() == b"precious"
    for row in ("00000", "00001"):
        assert not os.path.islink(out / row) and sorted(os.listdir(out / row)) == sorted(edit_cli.OUTPUT_FILES)
        assert not any(os.path.islink(out / row / name) for name in edit_cli.OUTPUT_FILES)
    assert Image.open(out / "00000" / "edited.png").size == (160, 120)
    assert not [p for p in os.listdir(out) if p.startswith(".partial")]


def test_cli_batch_reports_each_bad_row_and_edits_the_others(editor, photo, tmp_path):
    Image.fromarray(photo).save(tmp_path / "cat.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small_mask.png")
    Image.fromarray(np.zeros((120, 160), np.uint8)).save(tmp_path / "black_mask.png")
    good = {"image": "cat.png", "instruction": "add a hat", "source_caption": "a cat"}
    lines = [
        json.dumps(good).encode(),
        b'{"image": "cat.png", "instruction": ',  # cut off
        json.dumps({"image": "missing.png", "instruction": "add a hat"}).encode(),
        json.dumps({"image": 7, "instruction": "add a hat"}).encode(),
        b'{"image": "cat.png", "instruction": "add a \\ud800 hat"}'.replace(b"\\\\", b"\\"),
        "caf\u00e9".encode("latin-1") + b' {"image": "cat.png"}',  # not UTF-8
        json.dumps({**good, "mask": "small_mask.png"}).encode(),
        json.dumps({**good, "mask": "black_mask.png"}).encode(),
        b"",
        json.dumps({**good, "instruction": "make it winter"}).encode(),
    ]
    (tmp_path / "edits.jsonl").write_bytes(b"\n".join(lines))
    rows, bad = edit_cli.read_batch(str(tmp_path / "edits.jsonl"))
    bad += edit_cli.validate(rows)
    rows = [r for r in rows if r["index"] not in {b["index"] for b, _ in bad}]
    assert [r["line"] for r in rows] == [1, 10]
    out = tmp_path / "out"
    entries = edit_cli.run(
        editor, rows, str(out), seed=0, num_steps=None, guidance_scale=None, threshold=None, progress=False, bad=bad
    )
    report = json.loads((out / "batch_report.json").read_text())["rows"]
    assert report == entries and [e["index"] for e in entries] == list(range(9))
    errors = {e["line"]: e["error"] for e in entries if "error" in e}
    assert errors[2].startswith("not JSON")
    assert "does not exist" in errors[3]
    assert errors[4] == '"image" must be a string, not int'
    assert "lone surrogate" in errors[5]
    assert errors[6] == "the line is not UTF-8 text"
    assert "the mask is 10x10 (WxH) but the image is 160x120" in errors[7]
    assert errors[8].startswith("the mask is all black, so nothing would be repainted")
    assert sorted(os.listdir(out)) == ["00000", "00008", "batch_report.json"]  # only whole rows
    summary = edit_cli.failure_summary(entries, str(out))
    assert summary.startswith("7 of 9 rows could not be edited (the other 2 were written): line 2: not JSON")
    assert summary.endswith("batch_report.json") and "+4 more" in summary


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "missing.png", "--instruction", "add a hat"], "does not exist"),
        (["--image", "corrupt.png", "--instruction", "add a hat"], "cannot be decoded"),
        (["--image", "cat.png", "--instruction", ""], "instruction is empty"),
        ([], "give --image and --instruction"),
    ],
)
def test_cli_errors_exit_cleanly_before_loading_models(tmp_path, photo, args, message):
    Image.fromarray(photo).save(tmp_path / "cat.png")
    (tmp_path / "corrupt.png").write_bytes((tmp_path / "cat.png").read_bytes()[:400])
    args = [a if not a.endswith(".png") else str(tmp_path / a) for a in args]
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch", "edit.py"), *args, f"--out={tmp_path / 'out'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
