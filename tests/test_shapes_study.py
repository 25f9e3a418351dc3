"""``make shapes`` shortened: on a small world the region predictor learns where to edit.

The same stages as ``make shapes`` (worlds/study.py) on 32 px scenes of at most two objects on a
2 x 2 grid: records, a small world CLIP, a short training run, the shapes evaluator with its
baselines on held-out scenes and phrasings. A change that breaks the method (or the gradient
path to the region predictor) drops the local IoU to the random box's and fails here.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from regionedit_jax.worlds import study, world_clip

SMALL = study.Study(
    records=800,
    config_arg="image_size=32,grid=2,max_objects=2,batch=16",
    steps=240,
    clip_steps=800,
    clip_batch_size=16,
    clip_sizes=world_clip.ClipSizes(width=48, vision_layers=2, text_layers=2, heads=2, patch_size=4),
    clip_eval_scenes=0,
    n=140,
    diagnose=False,
    ablations=False,
    progress=False,
)


@pytest.fixture(scope="module")
def result(tmp_path_factory, tiny_bundle):
    root = tmp_path_factory.mktemp("shapes_study")
    os.symlink(tiny_bundle, root / "bundle")  # T5 and DINO come from the session's tiny bundle
    small = dataclasses.replace(SMALL, root=str(root))
    out = study.run(small)
    untrained = study.evaluate(
        study.config_for(small), str(root / "untrained"), None, progress=False, n=small.n, baselines=False
    )
    return str(root), out, untrained


def area(report, kinds) -> float:
    return sum(report.groups[k]["mask_area"] for k in kinds) / len(kinds)


def test_the_region_predictor_learns_where_to_edit(result):
    _, out, untrained = result
    report = out["report"]
    ours = study.local_mean(report)
    values = report.info["comparison"]["values"]
    box = sum(values["random_box"][k]["iou"] for k in study.LOCAL_KINDS) / len(study.LOCAL_KINDS)
    info = (ours, box, study.local_mean(untrained), report.groups)
    # Above the random box and well above the untrained predictor on the local kinds ...
    assert ours > box and ours > 1.4 * study.local_mean(untrained), info
    # ... with regions that shrank to objects there and stayed large for global edits.
    assert area(report, study.LOCAL_KINDS) < 0.7 * area(untrained, study.LOCAL_KINDS), info
    assert area(report, ("global", "style")) > 1.5 * area(report, study.LOCAL_KINDS), info


def test_every_stage_wrote_its_output(result):
    root, out, _ = result
    summary = json.load(open(os.path.join(root, "results.json")))
    assert summary["local_mean_iou"] == pytest.approx(study.local_mean(out["report"]))
    for path in ("README.md", "ablations.md", "clip/world_clip.json", "train/eval/shapes/examples.png"):
        assert os.path.isfile(os.path.join(root, path)), path


def test_the_supervised_probe_fits_the_true_masks(result):
    from regionedit_jax.worlds import probe

    root, _, _ = result
    config = study.config_for(dataclasses.replace(SMALL, root=root), "fusion=decoder,pixels=True,scales=1")
    said = []
    saved = os.path.join(root, "probe_checkpoint")
    curve = probe.train(
        config, examples=96, steps=30, batch_size=16, n_test=28, evaluations=2, say=said.append, save=saved
    )
    assert [c["step"] for c in curve] == [15, 30] and said[0].startswith("inputs of 96 train and 28 test edits")
    assert curve[-1]["loss"] < curve[0]["loss"] and all(0 <= c["local kinds"] <= 1 for c in curve)
    # the fitted predictor is a checkpoint the method can start from (config.train.init_checkpoint)
    import jax
    import numpy as np

    from regionedit_jax import checkpoints

    model, _ = probe.build(config)
    fresh = model.init(jax.random.key(1))
    restored, step = checkpoints.restore_params(saved, fresh)
    assert step == 0 and checkpoints.verify(saved, 0) == [] and set(restored) == {"region", "projector"}
    moved = jax.tree_util.tree_map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), restored, fresh)
    assert any(jax.tree_util.tree_leaves(moved["region"])), "the saved predictor is the fitted one, not a fresh init"
    with pytest.raises(ValueError, match="already exists; give another --out"):  # before any tower loads
        probe.train(config, examples=96, steps=30, save=saved)
    assert set(curve[-1]) >= {"local", "texture", "add", "remove", "background", "global", "style"}
    with pytest.raises(ValueError, match="--steps 0: must be an integer >= 1"):
        probe.train(config, steps=0)


def test_diagnosis_scores_what_the_straight_through_gradient_sees(result):
    from regionedit_jax.worlds import diagnose, edits

    root, _, _ = result
    config = study.config_for(dataclasses.replace(SMALL, root=root))
    found = diagnose.diagnose(config, n=28)
    for kind in edits.KINDS:
        for point in ("empty", "full"):
            for term in diagnose.TERMS:
                assert set(found[f"{point}/{term}/{kind}"]) == {"inside", "outside"}
        assert 0 <= found[f"iou/differs/{kind}"] <= 1 and 0 <= found[f"iou/pulls/{kind}"] <= 1
    # lighting and style repaint every pixel: where G differs from the source is nearly the whole truth
    assert found["iou/differs/global"] > 0.6 and found["iou/differs/style"] > 0.6, found
    # without the oracle's re-drawn background, G differs from the source where the edit is
    clean = diagnose.diagnose(config, n=28, same_draw=True)
    local = lambda d: sum(d[f"iou/differs/{k}"] for k in edits.LOCAL_KINDS) / len(edits.LOCAL_KINDS)
    assert local(clean) > max(0.4, local(found)), (local(clean), local(found))
    # a global edit's truth is the whole image, and repainting it beats repainting nothing
    assert found["objective/truth/global"] == pytest.approx(found["objective/whole image/global"], abs=1e-6)
    assert found["objective/empty/global"] > found["objective/truth/global"], found
    text = diagnose.markdown(found)
    assert "### Pull at the empty mask" in text and "| G differs from the source (> 0.15) |" in text
    assert "### The objective of fixed masks" in text and text.count("**") >= 2 * len(edits.KINDS)


def test_fixed_masks_erode_and_dilate_by_the_four_neighbourhood():
    import numpy as np

    from regionedit_jax.worlds import diagnose

    truth = np.zeros((1, 12, 12), bool)
    truth[0, 3:8, 3:8] = True  # a 5 x 5 square
    masks = diagnose.fixed_masks(truth)
    assert list(masks) == list(diagnose.MASKS)
    inner = np.zeros_like(truth)
    inner[0, 4:7, 4:7] = True
    np.testing.assert_array_equal(masks["eroded 1 px"], inner)
    assert masks["eroded 2 px"].sum() == 1 and masks["eroded 2 px"][0, 5, 5]
    # 4 steps of the cross grow a square of side 5 into an octagon: side 13 clipped to the image
    grown = masks["dilated 4 px"][0]
    assert grown[5, 0] and grown[0, 5] and not grown[0, 0] and grown[3:8, 3:8].all()
    edge = np.zeros_like(truth)
    edge[0, :, 0] = True  # erosion treats beyond the border as outside the mask
    assert not diagnose.fixed_masks(edge)["eroded 1 px"].any()
    assert masks["empty"].sum() == 0 and masks["whole image"].all()
