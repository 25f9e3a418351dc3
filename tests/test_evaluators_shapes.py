"""The shapes evaluator end to end on the tiny towers and the oracle generator: the method and its
baselines per kind, the truth upper bound, the row cache, options, results.md, examples.png, the launcher.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from regionedit_jax import evaluators
from regionedit_jax.evaluators import report, shapes
from regionedit_jax.worlds import edits, scenes

ROOT = os.path.join(os.path.dirname(__file__), "..")
N = 14  # 2 edits per kind
BATCH = 7
WORLD = dict(image_size=64, grid=3, max_objects=4, noise=0.02, jitter=0.03)


def oracle_config(tiny_config):
    """configs/tiny.py with the shapes world's oracle generator at 64 px (unlocked)."""
    import ml_collections

    config = ml_collections.ConfigDict(tiny_config.to_dict())
    config.generator = dict(name="oracle", num_steps=1, guidance_scale=1.0, oracle=dict(WORLD))
    config.image_size = 64
    config.edit.max_side = 64
    config.describe.captioner = "none"
    return config


@pytest.fixture(scope="module")
def world_editor(tiny_config, clip_tower, t5_tower):
    import jax

    from regionedit_jax import describe
    from regionedit_jax.editor import Editor
    from regionedit_jax.model import RegionEditModel

    config = oracle_config(tiny_config)
    towers = {"clip": clip_tower, "t5": t5_tower}
    model = RegionEditModel.from_towers(towers, config)
    return Editor(model, model.init(jax.random.key(0)), config, None, describe.make("rules"), towers=towers)


@pytest.fixture(scope="module")
def metric_towers(clip_tower, dino_tower):
    return {"clip": clip_tower, "dino": dino_tower}


def _shapes(metric_towers, tiny_bundle, **options):
    spec = {"type": "shapes", "n": N, "batch_size": BATCH, "clip": os.path.join(tiny_bundle, "clip"), **options}
    return evaluators.build("shapes", spec, metric_towers)


@pytest.fixture(scope="module")
def evaluated(world_editor, metric_towers, tiny_bundle, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("shapes"))
    result = _shapes(metric_towers, tiny_bundle).evaluate(world_editor, workdir=workdir)
    report.write(workdir, result)
    return workdir, result


def test_every_kind_and_method_and_the_truth_bound(evaluated):
    workdir, result = evaluated
    assert result.rows == N and set(result.metrics) == {"iou", "clip_dir", "clip_out", "clip_img", "l1", "mask_area"}
    assert list(result.groups) == list(edits.KINDS) and all(g["rows"] == 2 for g in result.groups.values())
    values = result.info["comparison"]["values"]
    assert list(values) == ["ours", "whole", "random_box", "clip_patches", "truth"]
    for method in values.values():
        assert set(method) == {"overall", *edits.KINDS, "local kinds"}
    assert values["ours"]["overall"] == result.metrics
    test = edits.examples("test", N, 0, scenes.WorldConfig())
    for i, edit in enumerate(test):
        record = json.load(open(os.path.join(workdir, "rows", f"{i:05d}.json")))
        assert record["kind"] == edit.kind and record["instruction"] == edit.instruction
        assert record["scores"]["truth"]["iou"] == 1.0
        whole = record["scores"]["whole"]
        assert whole["mask_area"] == 1.0
        np.testing.assert_allclose(whole["iou"], edit.truth.sum((1, 2)).max() / 64**2)
        assert record["scores"]["clip_patches"]["mask_area"] > 0
        # The method's saved edit keeps the source outside its region.
        edited = np.asarray(Image.open(os.path.join(workdir, "rows", f"{i:05d}.png")))
        mask = np.asarray(Image.open(os.path.join(workdir, "rows", f"{i:05d}.mask.png"))) > 127
        np.testing.assert_array_equal(edited[~mask], shapes.source_image(edit, i, scenes.WorldConfig())[~mask])
        np.testing.assert_allclose(record["scores"]["ours"]["iou"], edits.score_iou(mask, edit))
    assert values["truth"]["overall"]["iou"] == 1.0
    np.testing.assert_allclose(values["truth"]["overall"]["mask_area"], np.mean([e.truth[0].mean() for e in test]))
    assert values["whole"]["global"]["iou"] == 1.0 and values["whole"]["style"]["iou"] == 1.0


def test_sources_match_the_training_records(world_editor):
    import io

    from regionedit_jax.data.sources import ShapesSource

    pair = list(ShapesSource(3, "test"))[2]
    edit = edits.example("test", 2)
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(pair.image))), shapes.source_image(edit, 2, shapes.world_of(world_editor))
    )


def test_a_repeat_run_reads_the_row_cache(evaluated, world_editor, metric_towers, tiny_bundle):
    workdir, first = evaluated
    again = _shapes(metric_towers, tiny_bundle).evaluate(world_editor, workdir=workdir)
    assert again.info["rows_computed_now"] == 0 and again.info["rows_from_cache"] == N
    assert again.info["comparison"] == first.info["comparison"]
    with pytest.raises(ValueError, match=r"other settings \(world_seed: 0 -> 1\)"):
        _shapes(metric_towers, tiny_bundle, world_seed=1).evaluate(world_editor, workdir=workdir)


def test_options_are_validated(metric_towers, tiny_bundle):
    with pytest.raises(ValueError, match="unknown option 'dataset' for type 'shapes'"):
        _shapes(metric_towers, tiny_bundle, dataset="x")
    with pytest.raises(ValueError, match=r"config.evals.shapes.baselines must be a bool"):
        _shapes(metric_towers, tiny_bundle, baselines="yes")
    with pytest.raises(ValueError, match=r"config.evals.shapes.n must be a int"):
        _shapes(metric_towers, tiny_bundle, n=1.5)
    with pytest.raises(ValueError, match="n must be positive"):
        _shapes(metric_towers, tiny_bundle, n=0)
    with pytest.raises(ValueError, match="cannot score a predictions folder"):
        _shapes(metric_towers, tiny_bundle).evaluate(predictions="somewhere")
    with pytest.raises(ValueError, match=r"threshold in \[0, 1\)"):
        _shapes(metric_towers, tiny_bundle, threshold=1)
    assert _shapes(metric_towers, tiny_bundle, threshold=0).options["threshold"] == 0.0  # ints become floats


def test_clip_phrases_and_masks():
    world = scenes.WorldConfig()
    caption = "a small red circle at the top left on a speckled grey background"
    assert shapes.clip_phrase("make the striped red circle blue", caption, world) == "a striped red circle"
    assert shapes.clip_phrase("remove the star at the top left", caption, world) == "a star at the top left"
    assert shapes.clip_phrase("add a large dotted orange star", caption, world) == "a large dotted orange star"
    assert shapes.clip_phrase("make the background navy", caption, world) == "a grey background"
    assert shapes.clip_phrase("make it foggy", caption, world) is None
    cosines = np.array([[0.1, 0.9, 0.2, 0.6]])  # midpoint 0.5: patches 1 and 3
    mask = shapes.patch_masks(cosines, 2, 4)[0]
    np.testing.assert_array_equal(mask, [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]])
    box = shapes.random_box(0.25, 64, np.random.default_rng(0))
    assert box.sum() == 32 * 32 and box.any(0).sum() == 32


def test_markdown_and_examples(evaluated):
    workdir, result = evaluated
    md = open(os.path.join(workdir, "results.md")).read()
    assert "Paper's published numbers" not in md
    header = "| Method | local | texture | add | remove | background | global | style | local kinds | overall |"
    assert header in md and "| true mask (upper bound) | 1.0000 | 1.0000 |" in md
    assert "| Method | CLIPdir ↑ | CLIPout ↑ | CLIPimg ↑ | L1 ↓ | mask area |" in md
    for label in ("ours (predicted region)", "whole image", "random box", "CLIP patches"):
        assert md.count(f"| {label} |") == 2
    assert "best alternative" in md and "random box: a square of the mean true area" in md
    assert "CLIP patches: the instruction's object phrase" in md and "'comparison'" not in md
    assert len(result.examples) == 2 * len(edits.KINDS)
    assert [label for label, _ in result.examples[0].panels] == [
        "source",
        "true mask",
        "probability",
        "predicted mask",
        "edited",
    ]
    picture = Image.open(os.path.join(workdir, "examples.png"))
    assert picture.width == 5 * report.PANEL + 6 * 4 and picture.height > 14 * report.PANEL


CONFIG = """
import ml_collections
from regionedit_jax.configs import tiny

def get_config():
    config = tiny.get_config("bundle={bundle}")
    config.unlock()
    config.generator = ml_collections.ConfigDict(dict(name="oracle", num_steps=1, guidance_scale=1.0,
                                                      oracle={world}))
    config.image_size = 64
    config.edit.max_side = 64
    config.describe.captioner = "none"
    config.evals = ml_collections.ConfigDict(dict(shapes=dict(
        type="shapes", n={n}, batch_size={batch}, clip="{bundle}/clip", dino="{bundle}/dino", examples=1,
        baselines=True)))
    config.lock()
    return config
"""


def test_launcher_runs_it_from_a_config(tiny_bundle, tmp_path):
    path = tmp_path / "shapes_config.py"
    path.write_text(CONFIG.format(bundle=tiny_bundle, world=WORLD, n=N, batch=BATCH))
    args = [
        sys.executable,
        "launch/evaluate.py",
        f"--config={path}",
        f"--workdir={tmp_path / 'out'}",
        "--limit=7",
        "--config.evals.shapes.baselines=False",
    ]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "shapes: 7 rows: IoU" in done.stdout
    summary = json.load(open(tmp_path / "out" / "results.json"))
    assert summary["shapes"]["rows"] == 7 and list(summary["shapes"]["info"]["comparison"]["values"]) == ["ours"]
    for name in ("results.md", "examples.png", "rows/00006.json"):
        assert os.path.isfile(tmp_path / "out" / "shapes" / name)
