"""The towers' contracts: shapes, the image boundary, gradients, dtypes and clear errors."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regionedit_jax.towers import bundle, clip, dino, files, sd_inpaint, t5


@pytest.fixture(scope="module")
def clip_image_fn(clip_tower):
    return jax.jit(clip_tower.encode_image)


def _photo(h=40, w=56, c=3, seed=0):
    return np.random.default_rng(seed).uniform(size=(h, w, c)).astype(np.float32)


def test_clip_shapes_and_normalisation(clip_tower, clip_image_fn):
    feats = clip_image_fn(clip_tower.params, _photo())
    assert feats.cls.shape == (1, clip_tower.dim)
    assert feats.patches.shape == (1, clip_tower.grid**2, clip_tower.dim)
    np.testing.assert_allclose(jnp.linalg.norm(feats.cls, axis=-1), 1.0, rtol=1e-5)
    text = clip_tower.embed_texts(["a cat on a sofa", "a dog on a sofa"])
    assert text.shape == (2, clip_tower.dim)
    np.testing.assert_allclose(jnp.linalg.norm(text, axis=-1), 1.0, rtol=1e-5)


def test_real_clip_tokenizer(clip_tower):
    ids, mask = clip_tower.tokenize(["change the cat into a dog"])
    assert ids.shape == (1, 77) and ids.dtype == np.int32
    assert list(ids[0, :8]) == [49406, 1799, 518, 2368, 1095, 320, 1929, 49407]
    assert mask[0].sum() == 8


def test_image_boundary_conversions_give_the_same_features(clip_tower, clip_image_fn):
    rgb = (_photo() * 255).round().astype(np.uint8)
    reference = clip_image_fn(clip_tower.params, rgb.astype(np.float32) / 255).cls
    np.testing.assert_allclose(clip_image_fn(clip_tower.params, rgb).cls, reference, atol=1e-6)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    np.testing.assert_allclose(clip_image_fn(clip_tower.params, rgba).cls, reference, atol=1e-6)
    gray = rgb[..., :1]
    np.testing.assert_allclose(
        clip_image_fn(clip_tower.params, gray).cls,
        clip_image_fn(clip_tower.params, np.repeat(gray, 3, -1)).cls,
        atol=1e-6,
    )


def test_bad_images_are_refused_clearly(clip_tower):
    with pytest.raises(ValueError, match=r"\[0, 1\].*Divide 0..255"):
        clip_tower.encode_image(clip_tower.params, _photo() * 255)
    with pytest.raises(ValueError, match="channels last"):
        clip_tower.encode_image(clip_tower.params, np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="C in 1, 3 or 4"):
        clip_tower.encode_image(clip_tower.params, np.zeros((32, 32, 2), np.float32))


def test_gradient_reaches_the_pixels(clip_tower):
    text = clip_tower.embed_texts(["a red apple"])
    loss = lambda x: 1 - jnp.sum(clip_tower.encode_image(clip_tower.params, x).cls * text)
    grad = jax.jit(jax.grad(loss))(_photo(37, 45))
    assert grad.shape == (37, 45, 3) and bool(jnp.all(jnp.isfinite(grad)))
    assert float(jnp.abs(grad).max()) > 0


def test_empty_or_non_string_text_is_refused(clip_tower, t5_tower, sd_tower):
    for tokenize in (clip_tower.tokenize, t5_tower.tokenize, sd_tower.tokenize):
        with pytest.raises(ValueError, match="list of texts is empty"):
            tokenize([])
    with pytest.raises(TypeError, match="item 1 is int"):
        t5_tower.tokenize(["ok", 3])


def test_t5_tokens_and_mask(t5_tower):
    tokens, mask = t5_tower.embed_texts(["replace the cookies with candles", "add a hat"])
    assert tokens.shape == (2, 77, t5_tower.dim) and mask.shape == (2, 77)
    ids, _ = t5_tower.tokenize(["add a hat"])
    assert ids[0, mask[1].sum() - 1] == 1 and ids[0, -1] == 0  # eos 1, then pad 0
    assert bool(jnp.all(jnp.isfinite(tokens)))


def test_dino_features(dino_tower):
    feats = dino_tower.encode_image(dino_tower.params, _photo(50, 30))
    assert feats.shape == (1, dino_tower.dim)
    assert dino_tower.resize == round(dino_tower.image_size * 256 / 224)


def test_sd_vae_round_trip_shapes_and_size_check(sd_tower):
    x = _photo(32, 48)[None]
    z = sd_tower.vae_encode(sd_tower.params, x)
    assert z.shape == (1, 32 // sd_tower.vae_factor, 48 // sd_tower.vae_factor, 4)
    sampled = sd_tower.vae_encode(sd_tower.params, x, rng=jax.random.key(0))
    assert not np.allclose(sampled, z)
    out = sd_tower.vae_decode(sd_tower.params, z)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(ValueError, match="multiple of 2"):
        sd_tower.vae_encode(sd_tower.params, _photo(33, 32))


def test_sd_schedule_matches_sd_training():
    schedule = sd_inpaint.NoiseSchedule.from_config(
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
    )
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    np.testing.assert_allclose(schedule.alphas_cumprod, np.cumprod(1 - betas))
    assert schedule.alphas_cumprod[-1] == pytest.approx(0.0047, abs=1e-4)
    with pytest.raises(ValueError, match="unsupported beta_schedule"):
        sd_inpaint.NoiseSchedule.from_config({"beta_schedule": "cosine"})


def test_bf16_towers_track_fp32(tiny_bundle, clip_tower):
    bf16 = clip.load(os.path.join(tiny_bundle, "clip"), dtype=jnp.bfloat16)
    assert jax.tree_util.tree_leaves(bf16.params)[0].dtype == jnp.bfloat16
    x = _photo(32, 32)
    a = clip_tower.encode_image(clip_tower.params, x).cls
    b = bf16.encode_image(bf16.params, x).cls
    assert b.dtype == jnp.float32 and float(jnp.sum(a * b)) > 0.98


# ------------------------------------------------------------------------------ errors


def test_missing_folder(tmp_path):
    with pytest.raises(files.TowerFilesError, match="does not exist.*tiny --out"):
        clip.load(str(tmp_path / "nowhere"))


def test_uncached_hub_id_offline():
    with pytest.raises(files.TowerFilesError, match="neither a local folder nor a hub id in the local cache"):
        dino.load("someone/not-a-cached-model")


def test_folder_of_another_model_type(tiny_bundle):
    with pytest.raises(files.TowerFilesError, match="describes a 'vit' model, expected 'clip'"):
        clip.load(os.path.join(tiny_bundle, "dino"))
    with pytest.raises(files.TowerFilesError, match="no model_index.json"):
        sd_inpaint.load(os.path.join(tiny_bundle, "clip"))


def test_missing_weights_file_names_it(tiny_bundle, tmp_path):
    copy = shutil.copytree(os.path.join(tiny_bundle, "t5"), tmp_path / "t5")
    os.remove(copy / "model.safetensors")
    (copy / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(files.TowerFilesError, match=r"no model.safetensors .*converted to safetensors"):
        t5.load(str(copy))


def test_missing_sd_subfolder_and_text_to_image_unet(tiny_bundle, tmp_path):
    import json

    copy = shutil.copytree(os.path.join(tiny_bundle, "sd_inpaint"), tmp_path / "sd")
    shutil.rmtree(copy / "scheduler")
    with pytest.raises(files.TowerFilesError, match="scheduler/.*does not exist"):
        sd_inpaint.load(str(copy))
    config = json.loads((copy / "unet" / "config.json").read_text())
    (copy / "unet" / "config.json").write_text(json.dumps({**config, "in_channels": 4}))
    with pytest.raises(files.TowerFilesError, match="an inpainting UNet takes 9"):
        sd_inpaint.load(str(copy))


def test_bundle_loader_checks_names_and_dtypes():
    with pytest.raises(ValueError, match="unknown towers"):
        bundle.load({"bundle": ""}, ("clip", "vae"))
    with pytest.raises(ValueError, match="dtype must be one of"):
        bundle.dtype_of("float16")
