"""Emu Edit and MagicBrush end to end on tiny local copies in the exact hub schemas and the tiny towers:
our edits (both MagicBrush protocols), other systems' folders, resume, the launcher, and clear errors.
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from regionedit_jax import evaluators
from regionedit_jax.evaluators import report

ROOT = os.path.join(os.path.dirname(__file__), "..")
SIZE = (40, 48)  # H, W of every image: one compiled shape for the metric towers
BATCH = 2  # rows per edit call: one compiled edit shape for every test

EMU_ROWS = [  # idx, task, instruction, input caption, output caption
    (104, "add", "add a hat", "a cat on a sofa", "a cat with a hat on a sofa"),
    (7, "remove", "remove the cup", "a cup of coffee", "a saucer"),
    (31, "style", "make it a painting", "an astronaut", "a painting of an astronaut"),
    (12, "add", "add a dog", "a cat", "a cat and a dog"),
    (55, "background", "make the sky blue", "a cat", "a cat under a blue sky"),
]
# MagicBrush sessions (img_id -> instructions by turn), listed out of order in the table.
MB_SESSIONS = {
    "327726": ["turn the cat into a dog", "make the dog red", "asdf qwer zxcv"],
    "100": ["add a hat"],
    "42": ["make it winter", "turn the car into a bus"],
}
MB_ORDER = [("327726", 2), ("100", 1), ("327726", 1), ("42", 1), ("327726", 3), ("42", 2)]


def _photo(k: int) -> np.ndarray:
    from regionedit_jax.data import samples

    names = ("skimage:chelsea", "skimage:astronaut", "skimage:coffee")
    image = samples.load_image(names[k % 3])
    image = image[:, ::-1] if k // 3 % 2 else image
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(SIZE[::-1], Image.BICUBIC))


def _edit(image: np.ndarray, k: int) -> np.ndarray:
    """A stand-in ground-truth edit: a coloured box."""
    out = image.copy()
    out[5 + k : 20 + k, 8:30] = (40 * k % 256, 200, 90)
    return out


def _write(rows: dict, features: dict, folder: str, layout: str) -> str:
    import datasets

    data = datasets.Dataset.from_dict(rows, features=datasets.Features(features))
    if layout == "parquet":
        os.makedirs(os.path.join(folder, "data"), exist_ok=True)
        data.to_parquet(os.path.join(folder, "data", "test-00000-of-00001.parquet"))
    else:
        data.save_to_disk(folder)
    return folder


def emu_copy(
    folder: str, layout: str = "parquet", rows=EMU_ROWS, drop: str | None = None, broken: int | None = None
) -> str:
    """A tiny Emu Edit test split in the hub schema (``broken``: that row's image bytes are garbage)."""
    import datasets

    s, v = datasets.Value("string"), datasets.Value
    table = {
        "instruction": [r[2] for r in rows],
        "image": [
            {"bytes": b"not a png", "path": None} if r[0] == broken else Image.fromarray(_photo(k))
            for k, r in enumerate(rows)
        ],
        "task": [r[1] for r in rows],
        "split": ["test"] * len(rows),
        "idx": [r[0] for r in rows],
        "hash": [f"h{r[0]}" for r in rows],
        "input_caption": [r[3] for r in rows],
        "output_caption": [r[4] for r in rows],
    }
    features = {
        "instruction": s,
        "image": datasets.Image(),
        "task": s,
        "split": s,
        "idx": v("int64"),
        "hash": s,
        "input_caption": s,
        "output_caption": s,
    }
    if drop:
        del table[drop], features[drop]
    return _write(table, features, folder, layout)


def mb_truth(img_id: str, turn: int) -> np.ndarray:
    """The ground-truth image after ``turn`` turns of a session (turn 0: the original)."""
    image = _photo(list(MB_SESSIONS).index(img_id) + 3)
    for t in range(1, turn + 1):
        image = _edit(image, t)
    return image


def mb_copy(folder: str, layout: str = "save_to_disk", order=MB_ORDER) -> str:
    """A tiny MagicBrush split in the hub schema: each turn's source is the previous ground truth."""
    import datasets

    mask = np.zeros(SIZE, np.uint8)
    mask[5:25, 8:30] = 255
    table = {
        "img_id": [i for i, _ in order],
        "turn_index": [t for _, t in order],
        "source_img": [Image.fromarray(mb_truth(i, t - 1)) for i, t in order],
        "mask_img": [Image.fromarray(mask)] * len(order),
        "instruction": [MB_SESSIONS[i][t - 1] for i, t in order],
        "target_img": [Image.fromarray(mb_truth(i, t)) for i, t in order],
    }
    features = {
        "img_id": datasets.Value("string"),
        "turn_index": datasets.Value("int32"),
        "source_img": datasets.Image(),
        "mask_img": datasets.Image(),
        "instruction": datasets.Value("string"),
        "target_img": datasets.Image(),
    }
    return _write(table, features, folder, layout)


@pytest.fixture(scope="module")
def metric_towers(clip_tower, dino_tower):
    return {"clip": clip_tower, "dino": dino_tower}


@pytest.fixture(scope="module")
def emu_dir(tmp_path_factory):
    return emu_copy(str(tmp_path_factory.mktemp("emu")))


@pytest.fixture(scope="module")
def mb_dir(tmp_path_factory):
    return mb_copy(str(tmp_path_factory.mktemp("mb")))


def _emu(metric_towers, dataset, tiny_bundle, **options):
    return evaluators.build(
        "emu_edit",
        {
            "type": "emu_edit",
            "dataset": dataset,
            "batch_size": BATCH,
            "clip": os.path.join(tiny_bundle, "clip"),
            **options,
        },
        metric_towers,
    )


def _mb(metric_towers, dataset, protocol, **options):
    return evaluators.build(
        f"mb_{protocol}",
        {"type": "magicbrush", "dataset": dataset, "protocol": protocol, "batch_size": BATCH, **options},
        metric_towers,
    )


def test_emu_edit_end_to_end_and_resume(editor, metric_towers, emu_dir, tiny_bundle, tmp_path):
    evaluator = _emu(metric_towers, emu_dir, tiny_bundle)
    workdir = str(tmp_path / "emu")
    first = evaluator.evaluate(editor, workdir=workdir, limit=3)
    assert first.rows == 3 and first.info["rows_computed_now"] == 3
    full = evaluator.evaluate(editor, workdir=workdir)  # resumes: batches [0, 1] skip, [2, 3] and [4] run
    assert full.rows == 5 and full.info["rows_computed_now"] == 3 and full.info["rows_from_cache"] == 2
    again = evaluator.evaluate(editor, workdir=workdir)
    assert again.info["rows_computed_now"] == 0 and again.metrics == full.metrics
    assert again.info["rows_per_second"] == full.info["rows_per_second"] > 0  # from the rows' saved times
    assert set(full.metrics) == {"clip_dir", "clip_out", "l1", "clip_img", "dino"}
    assert list(full.groups) == ["background", "style", "remove", "add"]  # the paper's task order
    assert full.groups["add"]["rows"] == 2
    rows = [json.load(open(os.path.join(workdir, "rows", f"{r[0]}.json"))) for r in EMU_ROWS]
    np.testing.assert_allclose(full.metrics["l1"], np.mean([r["l1"] for r in rows]))
    np.testing.assert_allclose(full.groups["add"]["dino"], np.mean([rows[0]["dino"], rows[3]["dino"]]))
    assert rows[0]["output_caption"] == EMU_ROWS[0][4]  # the dataset's captions, not the describers'
    # The saved edit keeps the source outside its region and gives the row's L1.
    edited = np.asarray(Image.open(os.path.join(workdir, "rows", "104.png")))
    mask = np.asarray(Image.open(os.path.join(workdir, "rows", "104.mask.png"))) > 127
    np.testing.assert_array_equal(edited[~mask], _photo(0)[~mask])
    np.testing.assert_allclose(rows[0]["l1"], np.abs(edited / 255 - _photo(0) / 255).mean(), rtol=1e-5)
    # A run with another seed refuses the cached rows.
    with pytest.raises(ValueError, match=r"holds rows made with other settings \(seed: 0 -> 1\)"):
        _emu(metric_towers, emu_dir, tiny_bundle, seed=1).evaluate(editor, workdir=workdir)
    report.write(workdir, full)
    md = open(os.path.join(workdir, "results.md")).read()
    assert "| Paper's published numbers (not this run) | 0.1088 | 0.2842 | 0.0723 | 0.8913 | 0.8337 |" in md
    assert "| This run: ours, 5 rows |" in md and "| add | 2 |" in md and "tiny random towers" in md
    assert json.load(open(os.path.join(workdir, "results.json")))["rows"] == 5
    assert Image.open(os.path.join(workdir, "examples.png")).height > 5 * 160
    metrics = evaluator.run(editor)  # in memory, as a training loop would call it
    assert metrics["rows"] == 5 and "add/clip_dir" in metrics


def test_emu_edit_scores_another_systems_folder(metric_towers, tiny_bundle, tmp_path):
    dataset = emu_copy(str(tmp_path / "emu_sd"), layout="save_to_disk")
    evaluator = _emu(metric_towers, dataset, tiny_bundle)
    same = tmp_path / "identity"
    same.mkdir()
    for k, row in enumerate(EMU_ROWS):  # the sources themselves: a perfect-preservation system
        Image.fromarray(_photo(k)).save(same / f"{row[0]}.png")
    Image.fromarray(_photo(0)).save(same / "9999.png")
    with pytest.warns(UserWarning, match="1 images in .* match no Emu Edit row.*'9999'"):
        result = evaluator.evaluate(predictions=str(same))
    assert result.info["extra_files"] == 1 and result.info["system"] == "predictions"
    assert result.metrics["l1"] == 0 and result.metrics["clip_dir"] == 0
    np.testing.assert_allclose([result.metrics["clip_img"], result.metrics["dino"]], 1, atol=1e-5)
    # Smaller outputs are resized to the source size (PIL bicubic) before scoring.
    other = tmp_path / "other"
    other.mkdir()
    for k, row in enumerate(EMU_ROWS):
        Image.fromarray(_edit(_photo(k), k)).resize((24, 20), Image.BICUBIC).save(other / f"{row[0]}.png")
    scored = evaluator.evaluate(predictions=str(other), workdir=str(tmp_path / "w"))
    up = np.asarray(Image.open(other / "7.png").resize(SIZE[::-1], Image.BICUBIC)) / 255
    record = json.load(open(tmp_path / "w" / "rows" / "7.json"))
    np.testing.assert_allclose(record["l1"], np.abs(up - _photo(1) / 255).mean(), rtol=1e-5)
    assert 0 < scored.metrics["l1"] < 0.5
    (other / "12.png").unlink()
    with pytest.raises(ValueError, match=r"1 of 5 Emu Edit rows have no image in .*: ids '12'"):
        evaluator.evaluate(predictions=str(other))


def test_magicbrush_both_protocols(editor, metric_towers, mb_dir, tmp_path):
    single = _mb(metric_towers, mb_dir, "single").evaluate(editor, workdir=str(tmp_path / "s"))
    assert single.rows == 6 and single.info["sessions"] == 3
    assert set(single.metrics) == {"l1", "l2", "clip_i", "dino"} and single.paper["l2"] == 0.0212
    assert single.info["caption_fallbacks"] >= 1  # "asdf qwer zxcv" has no edit the rules rewriter knows
    record = json.load(open(tmp_path / "s" / "rows" / "327726_3.json"))
    assert record["caption_fallbacks"] == 1 and record["captions"][0][1].endswith(", asdf qwer zxcv")
    assert record["captions"][0][0].startswith("a photo of a ")  # the CLIP zero-shot captioner
    truth = mb_truth("327726", 3) / 255
    edited = np.asarray(Image.open(tmp_path / "s" / "rows" / "327726_3.png")) / 255
    np.testing.assert_allclose(record["l2"], np.square(edited - truth).mean(), rtol=1e-5)
    # Multi-turn: each session chains our own outputs; only its final turn is scored.
    multi = _mb(metric_towers, mb_dir, "multi").evaluate(editor, workdir=str(tmp_path / "m"))
    assert multi.rows == 3 and multi.paper["dino"] == 0.7962
    session = json.load(open(tmp_path / "m" / "rows" / "327726_3.json"))
    assert session["turns"] == 3 and len(session["captions"]) == 3
    assert session["captions"][1][0] == session["captions"][0][1]  # previous target -> next source
    assert session["captions"][1][1] != session["captions"][1][0]
    turn2 = np.asarray(Image.open(tmp_path / "m" / "rows" / "327726_3.turn2.png"))
    final_mask = np.asarray(Image.open(tmp_path / "m" / "rows" / "327726_3.mask.png")) > 127
    final = np.asarray(Image.open(tmp_path / "m" / "rows" / "327726_3.png"))
    np.testing.assert_array_equal(final[~final_mask], turn2[~final_mask])  # turn 3 edited our turn-2 output
    assert sorted(os.listdir(tmp_path / "m" / "rows")).count("42_2.turn1.png") == 1
    assert (
        _mb(metric_towers, mb_dir, "multi").evaluate(editor, workdir=str(tmp_path / "m")).info["rows_computed_now"] == 0
    )
    report.write(str(tmp_path / "m"), multi)
    md = open(tmp_path / "m" / "results.md").read()
    assert "MagicBrush test (multi-turn)" in md and "| 0.0972 | 0.0332 | 0.8985 | 0.7962 |" in md
    assert "MagicBrush has no captions" in md


def test_magicbrush_scores_another_systems_folder(metric_towers, mb_dir, tmp_path):
    native, flat = tmp_path / "native", tmp_path / "flat"
    for img_id, turns in MB_SESSIONS.items():  # MagicBrush's own layout, holding the ground truth
        (native / img_id).mkdir(parents=True)
        for t in range(1, len(turns) + 1):
            names = [f"{img_id}_1"] if t == 1 else [f"{img_id}_inde_{t}", f"{img_id}_iter_{t}"]
            for name in names:
                Image.fromarray(mb_truth(img_id, t)).save(native / img_id / f"{name}.png")
    for protocol in ("single", "multi"):
        result = _mb(metric_towers, mb_dir, protocol).evaluate(predictions=str(native))
        assert result.rows == (6 if protocol == "single" else 3) and result.info["extra_files"] == 0
        assert result.metrics["l1"] == 0 and result.metrics["l2"] == 0
        np.testing.assert_allclose([result.metrics["clip_i"], result.metrics["dino"]], 1, atol=1e-5)
    flat.mkdir()
    for img_id, t in MB_ORDER:  # <img_id>_<turn_index>.png, each the row's unedited source
        Image.fromarray(mb_truth(img_id, t - 1)).save(flat / f"{img_id}_{t}.png")
    result = _mb(metric_towers, mb_dir, "single").evaluate(predictions=str(flat))
    assert result.metrics["l1"] > 0 and result.metrics["clip_i"] < 1
    (flat / "42_2.png").rename(flat / "42_7.png")
    with pytest.raises(ValueError, match=r"rows have no image in .*: ids '42_2'.*match no MagicBrush.*'42_7'"):
        _mb(metric_towers, mb_dir, "single").evaluate(predictions=str(flat))


def test_bad_datasets_fail_naming_the_column_or_row(metric_towers, tiny_bundle, tmp_path):
    missing = emu_copy(str(tmp_path / "no_task"), drop="task")
    with pytest.raises(ValueError, match="has no column 'task'"):
        _emu(metric_towers, missing, tiny_bundle).table()
    broken = emu_copy(str(tmp_path / "broken"), broken=31)
    preds = tmp_path / "preds"
    preds.mkdir()
    for k, row in enumerate(EMU_ROWS):
        Image.fromarray(_photo(k)).save(preds / f"{row[0]}.png")
    with pytest.raises(ValueError, match=r"Emu Edit row idx=31, column 'image': the image cannot be decoded"):
        _emu(metric_towers, broken, tiny_bundle).evaluate(predictions=str(preds))
    duplicated = emu_copy(str(tmp_path / "dup"), rows=EMU_ROWS + [EMU_ROWS[0]])
    with pytest.raises(ValueError, match="share idx=104"):
        _emu(metric_towers, duplicated, tiny_bundle).table()
    with pytest.raises(FileNotFoundError, match="no parquet files for split 'validation'"):
        _emu(metric_towers, emu_dir_of(tmp_path), tiny_bundle, split="validation").table()
    with pytest.raises(FileNotFoundError, match="cannot load the Emu Edit dataset 'nobody/no_such_set'"):
        _emu(metric_towers, "nobody/no_such_set", tiny_bundle).table()
    gap = mb_copy(str(tmp_path / "gap"), order=[o for o in MB_ORDER if o != ("327726", 2)])
    with pytest.raises(ValueError, match=r"session img_id=327726 has turns \[1, 3\]"):
        _mb(metric_towers, gap, "multi").table()


def emu_dir_of(tmp_path):
    return emu_copy(str(tmp_path / "plain"), rows=EMU_ROWS[:1])


def test_launcher_scores_a_predictions_folder(tiny_bundle, emu_dir, tmp_path):
    """launch/evaluate.py end to end (no model loads in predictions mode)."""
    preds = tmp_path / "preds"
    preds.mkdir()
    for k, row in enumerate(EMU_ROWS):
        Image.fromarray(_edit(_photo(k), k)).save(preds / f"{row[0]}.png")
    config = f"configs/eval_emu.py:bundle={tiny_bundle},dataset={emu_dir},batch_size={BATCH}"
    args = [
        sys.executable,
        "launch/evaluate.py",
        f"--config={config}",
        f"--workdir={tmp_path / 'out'}",
        f"--predictions={preds}",
        "--limit=4",
    ]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "emu_edit: 4 rows: CLIPdir" in done.stdout
    summary = json.load(open(tmp_path / "out" / "results.json"))
    assert summary["emu_edit"]["rows"] == 4 and summary["emu_edit"]["info"]["system"] == "predictions"
    for name in ("results.md", "results.json", "examples.png", "rows/104.json"):
        assert os.path.isfile(tmp_path / "out" / "emu_edit" / name)
    bad = subprocess.run(
        args[:3] + [f"--workdir={tmp_path / 'x'}", f"--predictions={tmp_path / 'none'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "predictions folder" in bad.stderr and "does not exist" in bad.stderr


def test_tables_read_images_by_row(emu_dir):
    from regionedit_jax.evaluators import tables

    data = tables.load(emu_dir, "test", what="Emu Edit", columns=["idx", "image"], image_columns=["image"])
    image = tables.decode_image(data[0]["image"], "row 0")
    np.testing.assert_array_equal(image, _photo(0))
    with pytest.raises(ValueError, match="row 9: the image cannot be decoded"):
        tables.decode_image({"bytes": io.BytesIO(b"x").getvalue(), "path": None}, "row 9")
