"""PyTorch-layout <-> Flax conversion: exact round trips for every tower kind, and clear errors."""

import numpy as np
import pytest
from flax import traverse_util

from regionedit_jax.nn import clip, t5, unet, vae, vit
from regionedit_jax.towers import convert, tiny


def _shapes(kind):
    """(parameter shapes of a small model of ``kind`` from the project's own modules, naming)."""
    if kind == "unet":
        return unet.UNet(unet.UNetSettings.from_config(tiny.UNET_CONFIG)).shapes(), "diffusers"
    if kind == "vae":
        return vae.AutoencoderKL(vae.VAESettings.from_config(tiny.VAE_CONFIG)).shapes(), "diffusers"
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    if kind == "clip":
        config = {"text_config": small, "vision_config": dict(small, image_size=32, patch_size=8), "projection_dim": 16}
        return clip.ClipModel(clip.ClipSettings.from_config(config)).shapes(), "transformers"
    if kind == "t5":
        settings = t5.T5Settings(vocab_size=64, width=32, head_dim=8, mlp=64, depth=2, heads=4)
        return tiny.t5_with_decoder(t5.T5Encoder(settings).shapes(), 64, 32), "transformers"
    return vit.ViTModel(vit.ViTSettings.from_config(dict(small, image_size=32, patch_size=8))).shapes(), "transformers"


@pytest.mark.parametrize("kind", ["clip", "t5", "vit", "unet", "vae"])
def test_round_trip_is_exact(kind):
    shapes, naming = _shapes(kind)
    params = tiny.random_params(shapes, seed=1)
    state = convert.flax_to_torch(params, naming=naming)
    back = traverse_util.flatten_dict(convert.torch_to_flax(state, shapes, naming=naming))
    flat = traverse_util.flatten_dict(params)
    assert back.keys() == flat.keys()
    for key, value in flat.items():
        np.testing.assert_array_equal(back[key], value)


def test_torch_layout_conventions():
    shapes, _ = _shapes("vae")
    state = convert.flax_to_torch(tiny.random_params(shapes, seed=0), naming="diffusers")
    conv = state["encoder.conv_in.weight"]
    assert conv.shape == (32, 3, 3, 3)  # [out, in, kh, kw]
    assert state["encoder.mid_block.attentions.0.to_q.weight"].shape == (64, 64)
    assert "encoder.down_blocks.0.resnets.0.norm1.weight" in state  # GroupNorm scale -> weight
    assert "decoder.up_blocks.1.upsamplers.0.conv.bias" not in state  # the last up block has none
    assert "decoder.up_blocks.0.upsamplers.0.conv.bias" in state


def test_old_vae_attention_names_and_1x1_convs_load():
    """Early SD checkpoints store the VAE attention as query/key/value/proj_attn (some as 1x1 convs)."""
    shapes, _ = _shapes("vae")
    params = tiny.random_params(shapes, seed=0)
    state = convert.flax_to_torch(params, naming="diffusers")
    old = {}
    for key, value in state.items():
        for new, legacy in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            if f".{new}." in key:
                key = key.replace(f".{new}.", f".{legacy}.")
                if value.ndim == 2:
                    value = value[:, :, None, None]
        old[key] = value
    back = traverse_util.flatten_dict(convert.torch_to_flax(old, shapes, naming="diffusers"))
    for key, value in traverse_util.flatten_dict(params).items():
        np.testing.assert_array_equal(back[key], value)


def test_errors_name_missing_unexpected_and_mismatched_weights():
    shapes, naming = _shapes("vit")
    state = convert.flax_to_torch(tiny.random_params(shapes, seed=0), naming=naming)
    del state["layernorm.bias"]
    state["head.weight"] = np.zeros((3, 3), np.float32)
    state["embeddings.cls_token"] = np.zeros((1, 1, 7), np.float32)
    with pytest.raises(convert.WeightsError) as info:
        convert.torch_to_flax(state, shapes, naming=naming, source="vit/model.safetensors")
    message = str(info.value)
    assert "vit/model.safetensors" in message
    assert "layernorm/bias" in message and "head.weight" in message
    assert "embeddings.cls_token (1, 1, 7)" in message and "expects (1, 1, 32)" in message


def test_ignored_keys_and_stripped_prefixes():
    shapes, naming = _shapes("vit")
    state = convert.flax_to_torch(tiny.random_params(shapes, seed=0), naming=naming)
    prefixed = {f"vit.{k}": v for k, v in state.items()}
    prefixed["classifier.weight"] = np.zeros((2, 32), np.float32)
    params = convert.torch_to_flax(prefixed, shapes, naming=naming, strip_prefixes=["vit"], ignore=[r"^classifier\."])
    assert traverse_util.flatten_dict(params).keys() == traverse_util.flatten_dict(shapes).keys()


def test_safetensors_files_and_sharded_index(tmp_path):
    import json

    state = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "scale": np.float32(2.5) * np.ones(())}
    convert.write_safetensors({"a.weight": state["a.weight"]}, tmp_path / "m-00001.safetensors")
    convert.write_safetensors({"scale": state["scale"]}, tmp_path / "m-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a.weight": "m-00001.safetensors", "scale": "m-00002.safetensors"}}
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps(index))
    read = convert.read_safetensors(tmp_path / "m.safetensors.index.json")
    assert read["scale"].shape == ()  # 0-d tensors stay 0-d (CLIP's logit_scale)
    np.testing.assert_array_equal(read["a.weight"], state["a.weight"])
