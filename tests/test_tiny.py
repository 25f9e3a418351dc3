"""The tiny bundle: real layouts, real tokenizers, deterministic for a seed, safe to rewrite."""

import json
import os

import pytest

from regionedit_jax.towers import tiny


def test_layout_is_the_hugging_face_one(tiny_bundle):
    expected = {
        "clip": [
            "config.json",
            "model.safetensors",
            "vocab.json",
            "merges.txt",
            "tokenizer.json",
            "preprocessor_config.json",
        ],
        "t5": ["config.json", "model.safetensors", "spiece.model", "tokenizer.json"],
        "dino": ["config.json", "model.safetensors", "preprocessor_config.json"],
        "sd_inpaint": [
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "scheduler/scheduler_config.json",
        ],
    }
    for tower, names in expected.items():
        for name in names:
            assert os.path.isfile(os.path.join(tiny_bundle, tower, name)), f"{tower}/{name}"
    index = json.load(open(os.path.join(tiny_bundle, "sd_inpaint", "model_index.json")))
    assert index["_class_name"] == "StableDiffusionInpaintPipeline"
    assert json.load(open(os.path.join(tiny_bundle, "t5", "config.json")))["architectures"] == [
        "T5ForConditionalGeneration"
    ]


def test_deterministic_for_a_seed_and_kept_when_complete(tiny_bundle, tmp_path):
    again = tiny.write_bundle(str(tmp_path / "again"), seed=0)
    assert tiny.weights_digest(again) == tiny.weights_digest(tiny_bundle)
    other = tiny.write_bundle(str(tmp_path / "other"), seed=1)
    assert tiny.weights_digest(other) != tiny.weights_digest(tiny_bundle)
    marker = os.path.join(again, "bundle.json")
    before = os.path.getmtime(marker)
    tiny.write_bundle(again, seed=0)  # complete and identical: kept
    assert os.path.getmtime(marker) == before
    with pytest.raises(tiny.BundleFolderError, match="seed 0 .*not seed 2.*--force"):
        tiny.write_bundle(again, seed=2)  # another seed: refused, the old bundle kept
    assert json.load(open(marker))["seed"] == 0
    tiny.write_bundle(again, seed=2, force=True)
    assert json.load(open(marker))["seed"] == 2


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_that_is_not_a_bundle_is_never_touched(tmp_path, force):
    folder = tmp_path / "my_photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(tiny.BundleFolderError, match="holds no tiny bundle.*untouched"):
        tiny.write_bundle(str(folder), seed=0, force=force)
    assert os.listdir(folder) == ["holiday.jpg"]
    assert (folder / "holiday.jpg").read_bytes() == b"precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(tiny.BundleFolderError, match="not a folder"):
        tiny.write_bundle(str(tmp_path / "file"), seed=0, force=force)
    assert (tmp_path / "file").read_text() == "x"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tiny")]


def test_an_empty_folder_becomes_a_bundle(tmp_path):
    (tmp_path / "empty").mkdir()
    tiny.write_bundle(str(tmp_path / "empty"), seed=0)
    assert tiny.read_manifest(str(tmp_path / "empty"))["seed"] == 0


def test_t5_tokenizer_uses_t5_ids(t5_tower):
    backend = t5_tower.tokenizer.backend
    assert [backend.token_to_id(t) for t in ("<pad>", "</s>", "<unk>")] == [0, 1, 2]
    assert backend.encode("replace the cookies").tokens[0] == "▁re"  # first word gets "▁", as in SentencePiece
    assert backend.token_to_id("<extra_id_0>") == t5_tower.tokenizer.vocab_size - 1


def test_cli(tmp_path, capsys):
    tiny.main(["--out", str(tmp_path / "b"), "--seed", "0"])
    assert "tiny bundle in" in capsys.readouterr().out
    assert os.path.isfile(tmp_path / "b" / "bundle.json")
