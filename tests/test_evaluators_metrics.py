"""Editing metrics against independent numpy computations, their invariants, and the evaluator registry."""

import numpy as np
import pytest
from PIL import Image

from regionedit_jax import evaluators
from regionedit_jax.evaluators import metrics

SIZE = (40, 48)  # H, W of every test image here and in test_evaluators.py: one compiled encoder shape


def _np_cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-8)


@pytest.fixture(scope="module")
def scorer(clip_tower, dino_tower):
    return metrics.Scorer(clip_tower, dino_tower, batch_size=2)


@pytest.fixture(scope="module")
def photos():
    from regionedit_jax.data import samples

    out = []
    for name in ("skimage:chelsea", "skimage:astronaut", "skimage:coffee"):
        image = samples.load_image(name)
        out.append(np.asarray(Image.fromarray(image).resize(SIZE[::-1], Image.BICUBIC)))
    return out


def test_pure_functions_match_numpy():
    rng = np.random.default_rng(0)
    e_src, e_edit, t_in, t_out = (rng.normal(size=(5, 7)).astype(np.float32) for _ in range(4))
    np.testing.assert_allclose(metrics.cosine(e_src, e_edit), _np_cos(e_src, e_edit), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        metrics.clip_direction(e_src, e_edit, t_in, t_out), _np_cos(e_edit - e_src, t_out - t_in), rtol=1e-5, atol=1e-6
    )
    a, b = (rng.integers(0, 256, size=(3, 6, 5, 3), dtype=np.uint8) for _ in range(2))
    l1, l2 = metrics.pixel_distances(a, b)
    diff = a.astype(np.float64) / 255 - b.astype(np.float64) / 255
    np.testing.assert_allclose(l1, np.abs(diff).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(l2, np.square(diff).mean(axis=(1, 2, 3)), rtol=1e-5)  # MSE, not its root


def test_emu_edit_metrics_match_numpy_from_the_same_embeddings(scorer, photos):
    sources, edited = photos[:3], [photos[1], photos[2], photos[0][:, ::-1].copy()]
    ins, outs = ["a cat on a sofa", "an astronaut", "a cup of coffee"], ["a dog on a sofa", "a robot", "tea"]
    got = scorer.emu_edit(sources, edited, ins, outs)
    e_src, d_src = scorer.image_features(sources)
    e_edit, d_edit = scorer.image_features(edited)
    t_in, t_out = scorer.text_features(ins), scorer.text_features(outs)
    np.testing.assert_allclose(np.linalg.norm(e_src, axis=-1), 1, rtol=1e-5)  # normalised before differences
    np.testing.assert_allclose(got["clip_dir"], _np_cos(e_edit - e_src, t_out - t_in), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["clip_out"], _np_cos(e_edit, t_out), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["clip_img"], _np_cos(e_edit, e_src), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["dino"], _np_cos(d_edit, d_src), rtol=1e-4, atol=1e-6)
    l1 = [np.abs(e / 255 - s / 255).mean() for e, s in zip(edited, sources, strict=True)]
    np.testing.assert_allclose(got["l1"], l1, rtol=1e-5)
    # Batching and padding do not change a row's features.
    alone = scorer.image_features([sources[2]])[0]
    np.testing.assert_allclose(alone[0], e_src[2], rtol=1e-5, atol=1e-6)


def test_invariants(scorer, photos):
    same = scorer.emu_edit(photos, photos, ["a cat"] * 3, ["a dog"] * 3)
    np.testing.assert_allclose(same["l1"], 0, atol=0)
    np.testing.assert_allclose(same["clip_img"], 1, atol=1e-5)
    np.testing.assert_allclose(same["dino"], 1, atol=1e-5)
    np.testing.assert_allclose(same["clip_dir"], 0, atol=1e-6)  # no image change: no direction
    # CLIPdir = cos(dE, dT): swapping the images (or the captions) flips dE (or dT) and so its sign;
    # swapping both flips both differences and leaves it unchanged.
    forward = scorer.emu_edit(photos[:2], photos[1:3], ["a cat", "a man"], ["a dog", "a cup"])
    images_swapped = scorer.emu_edit(photos[1:3], photos[:2], ["a cat", "a man"], ["a dog", "a cup"])
    captions_swapped = scorer.emu_edit(photos[:2], photos[1:3], ["a dog", "a cup"], ["a cat", "a man"])
    both_swapped = scorer.emu_edit(photos[1:3], photos[:2], ["a dog", "a cup"], ["a cat", "a man"])
    assert np.all(np.abs(forward["clip_dir"]) > 1e-3)
    np.testing.assert_allclose(images_swapped["clip_dir"], -forward["clip_dir"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(captions_swapped["clip_dir"], -forward["clip_dir"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(both_swapped["clip_dir"], forward["clip_dir"], rtol=1e-4, atol=1e-6)
    gt = scorer.against_target(photos, photos)
    np.testing.assert_allclose(gt["l1"], 0, atol=0)
    np.testing.assert_allclose(gt["l2"], 0, atol=0)
    np.testing.assert_allclose(gt["clip_i"], 1, atol=1e-5)
    np.testing.assert_allclose(gt["dino"], 1, atol=1e-5)


def test_against_target_resizes_the_output_to_the_target_size(scorer, photos):
    small = np.asarray(Image.fromarray(photos[0]).resize((20, 17), Image.BICUBIC))
    got = scorer.against_target([small], [photos[1]])
    resized = np.asarray(Image.fromarray(small).resize(SIZE[::-1], Image.BICUBIC)).astype(np.float64) / 255
    diff = resized - photos[1] / 255
    np.testing.assert_allclose(got["l1"], [np.abs(diff).mean()], rtol=1e-5)
    np.testing.assert_allclose(got["l2"], [np.square(diff).mean()], rtol=1e-5)
    e, d = scorer.image_features([(resized * 255).round().astype(np.uint8), photos[1]])
    np.testing.assert_allclose(got["clip_i"], _np_cos(e[:1], e[1:]), rtol=1e-4)
    np.testing.assert_allclose(got["dino"], _np_cos(d[:1], d[1:]), rtol=1e-4)


def test_registry_validates_type_and_options():
    built = evaluators.build("mb", {"type": "magicbrush", "protocol": "multi", "batch_size": 2})
    assert isinstance(built, evaluators.MagicBrush) and built.options["protocol"] == "multi"
    assert built.options["clip"] == "openai/clip-vit-base-patch32"  # MagicBrush's CLIP-I convention
    assert evaluators.build("e", {"type": "emu_edit"}).options["clip"] == "openai/clip-vit-large-patch14"
    with pytest.raises(ValueError, match=r"config.evals.x.type must be one of \['emu_edit', 'magicbrush', 'shapes'\]"):
        evaluators.build("x", {"type": "emu"})
    with pytest.raises(ValueError, match="unknown option 'batchsize' for type 'emu_edit'"):
        evaluators.build("x", {"type": "emu_edit", "batchsize": 2})
    with pytest.raises(ValueError, match=r"config.evals.x.batch_size must be a int"):
        evaluators.build("x", {"type": "emu_edit", "batch_size": "2"})
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluators.build("x", {"type": "magicbrush", "protocol": "both"})
    with pytest.raises(ValueError, match="unknown option 'protocol' for type 'emu_edit'"):
        evaluators.build("x", {"type": "emu_edit", "protocol": "single"})
    with pytest.raises(ValueError, match="give an Editor to evaluate, or a predictions folder"):
        evaluators.EmuEdit(dataset="unused").evaluate(None)


def test_eval_configs_build_their_evaluators():
    from regionedit_jax.configs import eval_emu, eval_magicbrush

    config = eval_magicbrush.get_config("bundle=b,protocol=single,clip=openai/clip-vit-large-patch14")
    built = evaluators.build_all(config.evals)
    assert list(built) == ["magicbrush_single"] and built["magicbrush_single"].options["clip"] == "b/clip"
    assert set(evaluators.build_all(eval_magicbrush.get_config().evals)) == {"magicbrush_single", "magicbrush_multi"}
    emu = eval_emu.get_config("limit=5")
    assert emu.evals.emu_edit.limit == 5 and emu.image_size == 512 and emu.towers.bundle == ""
    assert eval_emu.get_config("bundle=b").image_size == 32  # the tiny config
    with pytest.raises(ValueError, match="protocol must be one of"):
        eval_magicbrush.get_config("protocol=three")


def test_row_cache_refuses_rows_made_with_other_settings(tmp_path):
    from regionedit_jax.evaluators.cache import RowCache

    cache = RowCache(str(tmp_path), {"seed": 0, "editor": {"params": "aa", "sampler": {"num_steps": 4}}})
    cache.save("7", {"l1": np.float32(0.5)}, {"": np.zeros((4, 5, 3), np.uint8), "mask": np.ones((4, 5), bool)})
    again = RowCache(str(tmp_path), {"seed": 0, "editor": {"params": "aa", "sampler": {"num_steps": 4}}})
    assert again.done("7") and again.record("7") == {"l1": 0.5} and again.image("7", "mask").all()
    with pytest.raises(ValueError, match=r"other settings \(editor.params: 'aa' -> 'bb'\)"):
        RowCache(str(tmp_path), {"seed": 0, "editor": {"params": "bb", "sampler": {"num_steps": 4}}})
    with pytest.raises(ValueError, match="row id '../x' cannot name a file"):
        cache.save("../x", {})
