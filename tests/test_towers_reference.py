"""The JAX towers against PyTorch: outputs and weight files match ``fixtures/torch_reference.npz``.

The fixture comes from ``tests/make_torch_reference.py`` (torch, transformers and diffusers
PyTorch classes on the same tiny bundle); it needs no torch here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import numpy as np
import pytest

from regionedit_jax.towers import convert, tiny

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "torch_reference.npz")
RERUN = "the tiny bundle changed: rerun tests/make_torch_reference.py"
TIGHT, LOOSE = 1e-5, 1e-4  # encoders; UNet and VAE (deeper, with group norms and convolutions)


@pytest.fixture(scope="module")
def ref(tiny_bundle) -> dict[str, np.ndarray]:
    """The fixture's arrays, once the bundle is known to be the one it was made from."""
    with np.load(FIXTURE) as data:
        out = {k: data[k] for k in data.files}
    if tiny.weights_digest(tiny_bundle) != str(out["bundle_sha256"]):
        pytest.fail(RERUN)
    return out


def assert_close(ours, theirs, atol: float, what: str) -> None:
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    err = float(np.max(np.abs(ours - theirs)))
    assert err <= atol, f"{what}: max abs error {err:.3g} vs torch exceeds {atol:g}"


def test_weight_files_are_what_save_pretrained_writes(ref, tiny_bundle):
    expected = json.loads(str(ref["manifests"]))
    for rel, manifest in expected.items():
        assert convert.safetensors_manifest(os.path.join(tiny_bundle, rel)) == manifest, rel


def test_tokenizers(ref, clip_tower, t5_tower, sd_tower):
    ids, mask = clip_tower.tokenize(list(ref["clip_texts"]))
    np.testing.assert_array_equal(ids, ref["clip_input_ids"])
    np.testing.assert_array_equal(mask, ref["clip_attention_mask"])
    ids, mask = t5_tower.tokenize(list(ref["t5_texts"]))
    np.testing.assert_array_equal(ids, ref["t5_input_ids"])
    np.testing.assert_array_equal(mask, ref["t5_attention_mask"])
    np.testing.assert_array_equal(sd_tower.tokenize(list(ref["sd_texts"])), ref["sd_input_ids"])


def test_clip_text(ref, clip_tower):
    out = jax.jit(clip_tower.encode_text)(clip_tower.params, ref["clip_input_ids"], ref["clip_attention_mask"])
    assert_close(out, ref["clip_text_embeds"], TIGHT, "CLIP text embeds")


def test_clip_image(ref, clip_tower):
    assert ref["clip_images"].shape[1] == clip_tower.image_size  # the resize is the identity
    cls, patches = jax.jit(clip_tower.encode_image)(clip_tower.params, ref["clip_images"])
    assert_close(cls, ref["clip_image_cls"], TIGHT, "CLIP image CLS")
    assert_close(patches, ref["clip_image_patches"], TIGHT, "CLIP patch tokens")


def test_t5_encoder(ref, t5_tower):
    out = jax.jit(t5_tower.encode)(t5_tower.params, ref["t5_input_ids"], ref["t5_attention_mask"])
    assert_close(out, ref["t5_hidden"], TIGHT, "T5 encoder states")


def test_dino_cls(ref, dino_tower):
    # The tower resizes the shorter side to 256/224 of the crop first; at the crop size it is the identity.
    tower = dataclasses.replace(dino_tower, resize=dino_tower.image_size)
    assert ref["dino_images"].shape[1] == tower.image_size
    out = jax.jit(tower.encode_image)(tower.params, ref["dino_images"])
    assert_close(out, ref["dino_cls"], TIGHT, "ViT CLS")


def test_sd_unet(ref, sd_tower):
    out = jax.jit(sd_tower.unet)(sd_tower.params, ref["unet_sample"], ref["unet_timesteps"], ref["unet_text"])
    assert_close(out, ref["unet_eps"], LOOSE, "UNet noise prediction")


def test_sd_vae(ref, sd_tower):
    latents = jax.jit(sd_tower.vae_encode)(sd_tower.params, ref["vae_images"])
    assert_close(latents, ref["vae_latents_mean"], LOOSE, "VAE encode (scaled posterior mean)")
    images = jax.jit(sd_tower.vae_decode)(sd_tower.params, ref["vae_latents"])
    assert_close(images, ref["vae_decoded"], LOOSE, "VAE decode")


def test_sd_text_encoder(ref, sd_tower):
    out = jax.jit(sd_tower.encode_text)(sd_tower.params, ref["sd_input_ids"])
    assert_close(out, ref["sd_text_hidden"], TIGHT, "SD text encoder states")


# Folders saved by the current libraries ---------------------------------------------------------


def _current_layout(bundle: str, saved: dict, out: str) -> str:
    """The bundle as transformers 5 / diffusers 0.4x save it: their config and tokenizer files (CLIP's
    49k vocabulary and merges are taken from the bundle, the fixture leaves them out), the same
    weight files, no ``vocab.json`` / ``merges.txt`` / ``spiece.model``."""
    subs = ("text_encoder", "tokenizer", "unet", "vae", "scheduler")
    towers = {"clip", "t5", "dino", "sd_inpaint", *(f"sd_inpaint/{sub}" for sub in subs)}
    for rel in towers:
        os.makedirs(os.path.join(out, rel), exist_ok=True)
    for rel, what in saved.items():
        folder = rel if rel in towers else os.path.dirname(rel)
        for name, content in what["json"].items():
            if name == "tokenizer.json" and content["model"]["type"] == "BPE":
                with open(os.path.join(bundle, folder, name), encoding="utf-8") as f:
                    bundle_model = json.load(f)["model"]
                content = {
                    **content,
                    "model": {**content["model"], **{k: bundle_model[k] for k in ("vocab", "merges")}},
                }
            with open(os.path.join(out, folder, name), "w", encoding="utf-8") as f:
                json.dump(content, f)
        if "manifest" in what:
            shutil.copy(os.path.join(bundle, rel), os.path.join(out, rel))
    for rel in (
        "clip/preprocessor_config.json",
        "dino/preprocessor_config.json",
        "sd_inpaint/scheduler/scheduler_config.json",
    ):
        shutil.copy(os.path.join(bundle, rel), os.path.join(out, rel))
    return out


def test_folders_saved_by_current_libraries_load(
    ref, tiny_bundle, tmp_path, clip_tower, t5_tower, dino_tower, sd_tower
):
    """Same weights, same outputs; the tokenizers come from tokenizer.json alone."""
    from regionedit_jax.towers import clip, dino, sd_inpaint, t5

    saved = json.loads(str(ref["saved"]))
    assert sorted(saved["clip"]["files"]) == ["tokenizer.json", "tokenizer_config.json"]
    folder = _current_layout(tiny_bundle, saved, str(tmp_path / "current"))
    loaded = {
        "clip": (clip.load(os.path.join(folder, "clip")), clip_tower),
        "t5": (t5.load(os.path.join(folder, "t5")), t5_tower),
        "dino": (dino.load(os.path.join(folder, "dino")), dino_tower),
        "sd": (sd_inpaint.load(os.path.join(folder, "sd_inpaint")), sd_tower),
    }
    for name, (current, bundled) in loaded.items():
        same = jax.tree_util.tree_map(
            lambda a, b: bool((np.asarray(a) == np.asarray(b)).all()), current.params, bundled.params
        )
        assert all(jax.tree_util.tree_leaves(same)), f"{name}: parameters differ"
    np.testing.assert_array_equal(loaded["clip"][0].tokenize(list(ref["clip_texts"]))[0], ref["clip_input_ids"])
    np.testing.assert_array_equal(loaded["t5"][0].tokenize(list(ref["t5_texts"]))[0], ref["t5_input_ids"])
    np.testing.assert_array_equal(loaded["sd"][0].tokenize(list(ref["sd_texts"])), ref["sd_input_ids"])
    for current, bundled in [loaded[n] for n in ("clip", "t5", "dino")]:
        assert current.module == bundled.module  # the same settings read from the newer config.json
    current, bundled = loaded["sd"]
    assert (current.unet_module, current.vae_module, current.text_module) == (
        bundled.unet_module,
        bundled.vae_module,
        bundled.text_module,
    )
