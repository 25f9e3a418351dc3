"""The world CLIP: trains on the shapes world, saves the Hugging Face layout, scores zero-shot."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from regionedit_jax.towers import clip
from regionedit_jax.worlds import render, scenes, world_clip

# One object on a 2 x 2 grid at 32 px on a plain grey ground, and a CLIP small enough to
# learn its colours in seconds.
WORLD = scenes.WorldConfig(
    image_size=32,
    grid=2,
    max_objects=1,
    backgrounds=(("grey", (0.52, 0.52, 0.52)),),
    textures=("plain",),
    patterns=("plain",),
    lightings=(("none", ""), ("night", "at night")),
    styles=(("none", ""), ("pastel", "in pastel colours")),
)
SIZES = world_clip.ClipSizes(width=32, vision_layers=1, text_layers=1, heads=2, patch_size=8)
STEPS = 200
RECIPE = world_clip.Recipe(group=1, region_weight=0.3, hard_negatives=1, pairs=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("world_clip") / "clip")
    summary = world_clip.train(
        out, WORLD, steps=STEPS, batch_size=32, seed=0, sizes=SIZES, recipe=RECIPE, progress=False
    )
    return out, summary


def test_the_folder_has_the_hugging_face_layout_and_loads(trained):
    out, summary = trained
    for name in (
        "config.json",
        "model.safetensors",
        "vocab.json",
        "merges.txt",
        "tokenizer.json",
        "preprocessor_config.json",
        world_clip.MANIFEST,
    ):
        assert os.path.isfile(os.path.join(out, name)), name
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["model_type"] == "clip" and config["vision_config"]["image_size"] == WORLD.image_size
    assert json.load(open(os.path.join(out, world_clip.MANIFEST)))["steps"] == STEPS == summary["steps"]
    tower = clip.load(out)
    tokens = np.stack([scenes.encode(scenes.sample_scene(np.random.default_rng(i), WORLD), WORLD) for i in range(3)])
    features = tower.encode_image(tower.params, render.render(tokens, jax.random.key(0), WORLD))
    grid = WORLD.image_size // SIZES.patch_size
    assert features.cls.shape == (3, SIZES.width) and features.patches.shape == (3, grid * grid, SIZES.width)
    assert tower.embed_texts(["a small red circle at the top left on a grey background"]).shape == (1, SIZES.width)
    assert not [p for p in os.listdir(os.path.dirname(out)) if p.startswith(".world-clip")]


def test_training_lowers_the_loss_on_a_fixed_batch(trained):
    _, summary = trained
    assert summary["probe_loss_after"] < summary["probe_loss_before"] - 0.5, summary
    assert summary["loss_final"] < summary["loss_first"]
    assert summary["steps_per_second"] > 0 and summary["train_seconds"] > 0


def test_zero_shot_beats_chance_on_colour_in_the_image_and_its_patches(trained):
    out, _ = trained
    result = world_clip.zero_shot(out, WORLD, n=48, seed=0)
    scored = [a for a in world_clip.ATTRIBUTES if result[f"{a}/trials"]]
    assert set(scored) == {"shape", "colour", "size", "position", "lighting", "style"}  # the rest have one value
    for attribute in scored:
        assert 0 <= result[attribute] <= 1 and 0 < result[f"{attribute}/chance"] < 1
    assert result["colour/chance"] == pytest.approx(1 / len(WORLD.colours))
    assert result["colour"] > result["colour/chance"] + 0.3, result
    assert result["patch/colour"] > result["patch/colour/chance"] + 0.3, result  # patch tokens know it too
    assert "colour" in world_clip.format_table(result)


def test_variants_differ_in_exactly_one_attribute():
    scene = scenes.Scene(
        (scenes.Obj("circle", "red", "small", 0, "striped"), scenes.Obj("star", "blue", "large", 3)),
        "grey",
        "speckled",
        "night",
        "none",
    )
    cfg = scenes.WorldConfig(grid=2, max_objects=2)
    colours = world_clip.variants(scene, "colour", cfg, index=1)
    assert len(colours) == len(cfg.colours) - 1
    assert {v.objects[1].colour for v in colours} == set(cfg.colour_names) - {"blue"}
    moved = world_clip.variants(scene, "position", cfg, index=0)
    assert sorted(o.cell for v in moved for o in v.objects if o.shape == "circle") == [1, 2]
    assert len(world_clip.variants(scene, "lighting", cfg)) == len(cfg.lightings) - 1
    removed = world_clip.variants(scene, "presence", cfg, index=0)
    assert removed == [dataclasses.replace(scene, objects=scene.objects[1:])]  # max_objects 2: nothing to add
    one = dataclasses.replace(scene, objects=scene.objects[:1])
    added = world_clip.variants(one, "presence", cfg, index=0)  # a lone object is never removed
    assert len(added) == 3 * len(cfg.colours) and all(len(v.objects) == 2 for v in added)
    assert {v.objects[1].cell for v in added} == {1, 2, 3}
    negative = world_clip.hard_negative(np.random.default_rng(0), scene, cfg)
    assert negative != scene and scenes.caption(negative, cfg) != scenes.caption(scene, cfg)


def test_pairs_differ_in_one_attribute_and_duplicates_are_not_negatives():
    cfg = scenes.WorldConfig()
    batch = world_clip.sample_batch(np.random.default_rng(0), cfg, 8, hard_negatives=1, pairs=True)
    decoded = [scenes.decode(t, cfg) for t in batch.tokens]
    for a, b in zip(decoded[::2], decoded[1::2], strict=True):
        changed = [f for f in world_clip.SCENE_ATTRIBUTES if getattr(a, f) != getattr(b, f)]
        only_a, only_b = set(a.objects) - set(b.objects), set(b.objects) - set(a.objects)
        # one object changed in place, or one added or removed (presence)
        assert len(changed) + max(len(only_a), len(only_b)) == 1, (a, b)
    texts = ["a", "b", "a", "c", "b"]
    same = world_clip.same_text(texts, 3)
    np.testing.assert_array_equal(same, [[0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]])


def test_contrastive_loss_drops_false_negatives_exactly():
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    image, text = unit(rng.normal(size=(3, 4))), unit(rng.normal(size=(5, 4)))
    same = world_clip.same_text(["a", "b", "a", "c", "b"], 3)
    got = float(world_clip.contrastive_loss(image, text, np.log(10.0), same=same))
    logits = 10.0 * image @ text.T
    expected = 0.0
    for i in range(3):  # an independent InfoNCE: leave out the columns (rows) holding row i's text
        keep = [j for j in range(5) if not same[i, j]]
        expected += -logits[i, i] + np.log(np.exp(logits[i, keep]).sum())
        keep = [j for j in range(3) if not same[j, i]]
        expected += -logits[i, i] + np.log(np.exp(logits[keep, i]).sum())
    assert got == pytest.approx(expected / 6, rel=1e-5)


def test_a_folder_it_did_not_write_is_never_touched(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(world_clip.WorldClipFolderError, match="did not write.*untouched"):
        world_clip.train(str(folder), WORLD, steps=1, sizes=SIZES, progress=False)
    assert os.listdir(folder) == ["holiday.jpg"] and (folder / "holiday.jpg").read_bytes() == b"precious"
    assert world_clip.main(["--out", str(folder), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    (tmp_path / "file").write_text("x")
    with pytest.raises(world_clip.WorldClipFolderError, match="not a folder"):
        world_clip.train(str(tmp_path / "file"), WORLD, steps=1, sizes=SIZES, progress=False)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".world-clip")]


def test_cli_trains_prints_the_table_and_rewrites_its_own_folder(tmp_path, capsys):
    out = str(tmp_path / "clip")
    small = "--image_size 32 --grid 2 --max_objects 1 --width 32 --vision_layers 1 --text_layers 1 --heads 2"
    args = ["--out", out, *small.split(), "--patch_size", "8", "--no_progress"]
    assert world_clip.main(args + ["--steps", "3", "--batch_size", "8", "--eval_scenes", "4"]) == 0
    printed = capsys.readouterr().out
    assert "3 steps" in printed and "final loss" in printed and "patch/colour" in printed
    assert json.load(open(os.path.join(out, world_clip.MANIFEST)))["steps"] == 3
    assert world_clip.main(args + ["--steps", "0", "--eval_scenes", "0"]) == 0  # its own folder: replaced
    assert "untrained world CLIP" in capsys.readouterr().out
    manifest = json.load(open(os.path.join(out, world_clip.MANIFEST)))
    assert manifest["steps"] == 0 and manifest["probe_loss_after"] == manifest["probe_loss_before"]
    assert clip.load(out).grid == 4


def test_presence_pairs_only_when_the_recipe_asks():
    cfg = scenes.WorldConfig()

    def counts(recipe):
        batch = world_clip.sample_batch(np.random.default_rng(1), cfg, 64, pairs=True, attributes=recipe.attributes())
        decoded = [scenes.decode(t, cfg) for t in batch.tokens]
        return [len(a.objects) != len(b.objects) for a, b in zip(decoded[::2], decoded[1::2], strict=True)]

    assert "presence" not in world_clip.Recipe().attributes()
    assert not any(counts(world_clip.Recipe()))
    assert any(counts(world_clip.Recipe(presence=True)))


def test_sincos_positions_code_row_and_column():
    code = world_clip.sincos_positions(grid=4, width=16, scale=3.0)
    assert code.shape == (17, 16) and not code[0].any()  # the class token's row is zero
    patches = code[1:].reshape(4, 4, 16)
    np.testing.assert_array_equal(patches[:, 0, :8], patches[:, 3, :8])  # first half: the row
    np.testing.assert_array_equal(patches[0, :, 8:], patches[3, :, 8:])  # second half: the column
    assert len({tuple(np.round(p, 6)) for p in code[1:]}) == 16  # every patch its own code
    np.testing.assert_allclose(patches[0, 0, [4, 5, 6, 7]], 3.0)  # cos(0) at every frequency, times scale


def test_sincos_positions_are_what_an_untrained_clip_is_saved_with(tmp_path):
    out = str(tmp_path / "clip")
    small = "--image_size 32 --grid 2 --max_objects 1 --width 32 --vision_layers 1 --text_layers 1 --heads 2"
    args = ["--out", out, *small.split(), "--patch_size", "8", "--no_progress", "--steps", "0", "--eval_scenes", "0"]
    assert world_clip.main(args + ["--positions", "sincos", "--position_scale", "2"]) == 0
    saved = clip.load(out).params["vision_model"]["embeddings"]["position_embedding"]["embedding"]
    np.testing.assert_allclose(saved, world_clip.sincos_positions(4, 32, 2.0), atol=1e-7)
    with pytest.raises(ValueError, match="positions must be 'random' or 'sincos'"):
        world_clip.ClipSizes(positions="learned").config(32)
    with pytest.raises(ValueError, match="width divisible by 4"):
        world_clip.ClipSizes(width=42, heads=2, positions="sincos").config(32)
