"""The project's own Flax modules: settings read strictly from config.json, the attention kernel
as a config value, end-of-text pooling of old and new configs. (Outputs against PyTorch on the
same weights: ``test_towers_reference.py``.)"""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transformers import CLIPTextConfig, CLIPVisionConfig

from regionedit_jax import benchmark_full_size
from regionedit_jax.nn import attention, clip, settings, t5, unet, vae, vit
from regionedit_jax.towers import clip as clip_tower
from regionedit_jax.towers import files, tiny


def test_absent_fields_take_transformers_defaults():
    text, vision = CLIPTextConfig(), CLIPVisionConfig()  # the library's own defaults, as reference
    s = clip.ClipSettings.from_config({})
    assert (s.text.vocab_size, s.text.width, s.text.mlp, s.text.depth, s.text.heads, s.text.max_length) == (
        text.vocab_size,
        text.hidden_size,
        text.intermediate_size,
        text.num_hidden_layers,
        text.num_attention_heads,
        text.max_position_embeddings,
    )
    assert (s.text.activation, s.text.eps, s.text.eos_token_id) == (
        text.hidden_act,
        text.layer_norm_eps,
        text.eos_token_id,
    )
    assert (s.vision.width, s.vision.mlp, s.vision.depth, s.vision.heads) == (
        vision.hidden_size,
        vision.intermediate_size,
        vision.num_hidden_layers,
        vision.num_attention_heads,
    )
    assert (s.vision.image_size, s.vision.patch_size, s.vision.channels, s.vision.activation) == (
        vision.image_size,
        vision.patch_size,
        vision.num_channels,
        vision.hidden_act,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"text_config": {"hidden_act": "swish"}}, r"text_config: hidden_act 'swish' is not supported"),
        ({"vision_config": {"hidden_size": 30, "num_attention_heads": 4}}, r"hidden_size 30 is not a multiple"),
        ({"vision_config": {"image_size": 30, "patch_size": 4}}, r"image_size 30 is not a multiple of patch_size 4"),
        ({"text_config": {"num_hidden_layers": "2"}}, r"num_hidden_layers must be int, got '2'"),
        ({"vision_config": {"num_hidden_layers": 0}}, r"num_hidden_layers must be positive"),
        ({"projection_dim": 1.5}, r"projection_dim must be int"),
    ],
)
def test_fields_the_architecture_cannot_honour_are_refused(change, message):
    with pytest.raises(settings.SettingsError, match=message):
        clip.ClipSettings.from_config(change)


def test_a_refused_field_names_the_folders_config(tiny_bundle, tmp_path):
    folder = tmp_path / "clip"
    shutil.copytree(os.path.join(tiny_bundle, "clip"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["hidden_act"] = "relu6"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(files.TowerFilesError, match=r"hidden_act 'relu6' is not supported.*config\.json"):
        clip_tower.load(str(folder))


def test_attention_kernel_is_a_config_value(tiny_bundle):
    with pytest.raises(ValueError, match=r"attention implementation must be one of"):
        attention.dot_product_attention(*(jnp.zeros((1, 2, 1, 4)),) * 3, implementation="flash")
    default = clip_tower.load(os.path.join(tiny_bundle, "clip"))
    xla = clip_tower.load(os.path.join(tiny_bundle, "clip"), attention="xla")
    assert xla.module.compute.attention == "xla"
    ids, mask = default.tokenize(["a red circle", "make the square blue"])
    np.testing.assert_allclose(
        xla.encode_text(xla.params, ids, mask), default.encode_text(default.params, ids, mask), atol=1e-6
    )


def test_attention_matches_jax_with_mask_bias_and_scale():
    """The einsum path against ``jax.nn.dot_product_attention``'s own XLA path."""
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 5, 3, 4)), jnp.float32) for _ in range(3))
    mask = jnp.asarray(rng.uniform(size=(2, 1, 5, 5)) > 0.3).at[..., 0].set(True)  # every row sees a key
    bias = jnp.asarray(rng.standard_normal((1, 3, 5, 5)), jnp.float32)
    for kwargs in ({}, {"mask": mask}, {"bias": bias, "scale": 1.0}, {"mask": mask, "bias": bias, "scale": 0.3}):
        ours = attention.dot_product_attention(q, k, v, implementation="xla", **kwargs)
        theirs = jax.nn.dot_product_attention(q, k, v, implementation="xla", **kwargs)
        np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=str(sorted(kwargs)))


def test_long_self_attention_runs_in_blocks_with_the_same_values_and_gradients():
    """2048 queries and keys take the blocked path (online softmax); jax.nn is the reference."""
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 2048, 2, 8)), jnp.float32) for _ in range(3))
    assert attention._blocks(2048, 2048) and not attention._blocks(2048, 77) and not attention._blocks(1024, 1024)
    ours = jax.jit(lambda q, k, v: attention.dot_product_attention(q, k, v, scale=0.7, implementation="xla"))
    theirs = jax.jit(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, scale=0.7, implementation="xla"))
    np.testing.assert_allclose(ours(q, k, v), theirs(q, k, v), atol=1e-5)
    loss = lambda fn: jax.grad(lambda q, k, v: (fn(q, k, v) ** 2).sum(), argnums=(0, 1, 2))  # noqa: E731
    for a, b in zip(jax.jit(loss(ours))(q, k, v), jax.jit(loss(theirs))(q, k, v)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    half = [x.astype(jnp.bfloat16) for x in (q, k, v)]
    np.testing.assert_allclose(ours(*half).astype(jnp.float32), theirs(*half).astype(jnp.float32), atol=2e-2)


def test_legacy_configs_pool_at_the_highest_id():
    """Configs written before transformers 4.31 say eos_token_id 2 and pool at the argmax id."""
    shape = clip.TextSettings(vocab_size=50, width=8, mlp=16, depth=1, heads=2, max_length=6)
    ids = jnp.array([[5, 9, 49, 3, 3, 3]])  # the highest id marks the end of text
    new = clip.TextTransformer(dataclasses.replace(shape, eos_token_id=3))
    old = clip.TextTransformer(dataclasses.replace(shape, eos_token_id=2))
    params = new.init(jax.random.key(0), ids)["params"]
    hidden, pooled_new = new.apply({"params": params}, ids)
    _, pooled_old = old.apply({"params": params}, ids)
    np.testing.assert_array_equal(pooled_new, hidden[:, 3])  # the first eos_token_id
    np.testing.assert_array_equal(pooled_old, hidden[:, 2])  # the highest id
    with pytest.raises(ValueError, match="at most 6"):
        new.apply({"params": params}, jnp.zeros((1, 7), jnp.int32))


def test_text_tower_is_causal_and_ignores_padding():
    model = clip.TextTransformer(
        clip.TextSettings(vocab_size=50, width=8, mlp=16, depth=2, heads=2, max_length=6, eos_token_id=9)
    )
    ids = jnp.array([[1, 4, 9, 0, 0, 0]])
    params = model.init(jax.random.key(0), ids)["params"]
    mask = jnp.array([[1, 1, 1, 0, 0, 0]])
    hidden, _ = model.apply({"params": params}, ids, mask)
    changed, _ = model.apply({"params": params}, ids.at[0, 4].set(7), mask)
    np.testing.assert_allclose(hidden[:, :3], changed[:, :3], atol=1e-6)  # later tokens are unseen
    later, _ = model.apply({"params": params}, ids.at[0, 1].set(5), mask)
    assert not np.allclose(hidden[:, 2], later[:, 2])  # earlier ones are seen


def test_tiny_writer_and_loader_share_one_parameter_tree(tiny_bundle):
    config = json.load(open(os.path.join(tiny_bundle, "clip", "config.json")))
    shapes = clip.ClipModel(clip.ClipSettings.from_config(config)).shapes()
    loaded = clip_tower.load(os.path.join(tiny_bundle, "clip"))
    assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(loaded.params)
    assert tiny.clip_config()["projection_dim"] == loaded.dim


# T5 ---------------------------------------------------------------------------------------------


def test_t5_absent_fields_take_transformers_defaults():
    from transformers import T5Config

    reference, s = T5Config(), t5.T5Settings.from_config({})
    assert (s.vocab_size, s.width, s.head_dim, s.mlp, s.depth, s.heads) == (
        reference.vocab_size,
        reference.d_model,
        reference.d_kv,
        reference.d_ff,
        reference.num_layers,
        reference.num_heads,
    )
    assert (s.buckets, s.max_distance, s.feed_forward, s.eps) == (
        reference.relative_attention_num_buckets,
        reference.relative_attention_max_distance,
        reference.feed_forward_proj,
        reference.layer_norm_epsilon,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"feed_forward_proj": "gated-swish"}, r"feed_forward_proj 'gated-swish' is not supported"),
        ({"relative_attention_num_buckets": 2}, r"leave no logarithmic buckets"),
        ({"d_kv": 0}, r"d_kv must be positive"),
    ],
)
def test_t5_fields_it_cannot_honour_are_refused(change, message):
    with pytest.raises(settings.SettingsError, match=message):
        t5.T5Settings.from_config(change)


def test_t5_relative_buckets():
    buckets = t5.relative_buckets(300, 32, 128)
    distance = np.arange(300)[None, :] - np.arange(300)[:, None]
    assert buckets.shape == (300, 300) and buckets.dtype == np.int32
    np.testing.assert_array_equal(np.diag(buckets), 0)
    later, earlier = buckets[0, 1:], buckets[-1, :-1][::-1]  # keys 1.. after / before the query
    np.testing.assert_array_equal(later - 16, earlier)  # one half per direction
    np.testing.assert_array_equal(earlier[:7], np.arange(1, 8))  # distances under 8: exact
    assert np.all(np.diff(earlier) >= 0) and earlier.max() == 15  # then logarithmic, capped
    assert np.all(earlier[np.abs(np.arange(1, 300)) >= 128] == 15)  # beyond max_distance: the last
    assert set(np.unique(buckets[distance < 0])) == set(range(1, 16))
    # past 8: 8 + floor(log(d / 8) / log(128 / 8) * 8), the mesh-tensorflow table
    assert {d: int(buckets[d, 0]) for d in (8, 11, 12, 16, 32, 64, 127)} == {
        8: 8,
        11: 8,
        12: 9,
        16: 10,
        32: 12,
        64: 14,
        127: 15,
    }


def test_t5_padding_is_ignored_and_attention_sees_both_ways():
    model = t5.T5Encoder(
        t5.T5Settings(vocab_size=20, width=8, head_dim=4, mlp=16, depth=2, heads=2, feed_forward="gated-gelu")
    )
    ids, mask = jnp.array([[3, 4, 5, 0, 0]]), jnp.array([[1, 1, 1, 0, 0]])
    params = model.init(jax.random.key(0), ids, mask)["params"]
    hidden = model.apply({"params": params}, ids, mask)
    np.testing.assert_allclose(
        hidden[:, :3], model.apply({"params": params}, ids.at[0, 4].set(9), mask)[:, :3], atol=1e-6
    )
    assert not np.allclose(hidden[:, 0], model.apply({"params": params}, ids.at[0, 2].set(9), mask)[:, 0])


# ViT (DINO) -------------------------------------------------------------------------------------


def test_vit_absent_fields_take_transformers_defaults():
    from transformers import ViTConfig

    reference, s = ViTConfig(), vit.ViTSettings.from_config({})
    assert (s.width, s.mlp, s.depth, s.heads, s.image_size, s.patch_size, s.channels) == (
        reference.hidden_size,
        reference.intermediate_size,
        reference.num_hidden_layers,
        reference.num_attention_heads,
        reference.image_size,
        reference.patch_size,
        reference.num_channels,
    )
    assert (s.qkv_bias, s.activation, s.eps) == (reference.qkv_bias, reference.hidden_act, reference.layer_norm_eps)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"hidden_act": "silu"}, r"hidden_act 'silu' is not supported"),
        ({"qkv_bias": "yes"}, r"qkv_bias must be bool"),
        ({"image_size": 100, "patch_size": 16}, r"image_size 100 is not a multiple of patch_size 16"),
    ],
)
def test_vit_fields_it_cannot_honour_are_refused(change, message):
    with pytest.raises(settings.SettingsError, match=message):
        vit.ViTSettings.from_config(change)


def test_vit_refuses_pixels_of_another_size():
    model = vit.ViTModel(vit.ViTSettings(width=8, mlp=16, depth=1, heads=2, image_size=16, patch_size=8))
    params = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    assert model.apply({"params": params}, jnp.zeros((2, 16, 16, 3))).shape == (2, 5, 8)
    with pytest.raises(ValueError, match=r"pixels must be \[B, 16, 16, 3\] \(NHWC\)"):
        model.apply({"params": params}, jnp.zeros((1, 3, 16, 16)))


# SD UNet and VAE --------------------------------------------------------------------------------

SD15_UNET = {**benchmark_full_size.SD15_UNET, "in_channels": 4}  # the text-to-image UNet
SD2_UNET = {
    **SD15_UNET,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
}
SD_VAE = benchmark_full_size.SD15_VAE


def parameter_count(tree) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize(
    "module, expected",
    [
        (lambda: unet.UNet(unet.UNetSettings.from_config(SD15_UNET)), 859_520_964),  # SD 1.x
        (lambda: unet.UNet(unet.UNetSettings.from_config({**SD15_UNET, "in_channels": 9})), 859_535_364),  # inpainting
        (lambda: unet.UNet(unet.UNetSettings.from_config(SD2_UNET)), 865_910_724),  # SD 2.x
        (lambda: vae.AutoencoderKL(vae.VAESettings.from_config(SD_VAE)), 83_653_863),  # SD's VAE
        (lambda: clip.ClipTextModel(clip.TextSettings.from_config(benchmark_full_size.SD15_TEXT)), 123_060_480),
    ],
    ids=["sd15_unet", "sd15_inpainting_unet", "sd2_unet", "sd_vae", "sd15_text_encoder"],
)
def test_real_configs_build_the_published_parameter_counts(module, expected):
    assert parameter_count(module().shapes()) == expected


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"mid_block_type": "UNetMidBlock2DSimpleCrossAttn"},
            r"mid_block_type='UNetMidBlock2DSimpleCrossAttn' is not built",
        ),
        ({"class_embed_type": "timestep"}, r"class_embed_type='timestep' is not built"),
        ({"resnet_time_scale_shift": "scale_shift"}, r"resnet_time_scale_shift='scale_shift' is not built"),
        ({"down_block_types": ["AttnDownBlock2D"] * 4}, r"down_block_types holds \['AttnDownBlock2D'"),
        ({"attention_head_dim": [8, 8]}, r"attention_head_dim must be a positive int or a list of 4"),
        ({"cross_attention_dim": [768, 768, 768, 768]}, r"cross_attention_dim must be one int"),
        ({"block_out_channels": [320, 640]}, r"must have one entry per level"),
        ({"norm_num_groups": 48}, r"multiple of its 8 attention heads and of norm_num_groups 48"),
    ],
)
def test_unet_fields_it_does_not_build_are_refused(change, message):
    with pytest.raises(settings.SettingsError, match=message):
        unet.UNetSettings.from_config({**SD15_UNET, **change})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"down_block_types": ["DownEncoderBlock2D"] * 3}, r"down_block_types must be 4 x 'DownEncoderBlock2D'"),
        ({"shift_factor": 0.0609}, r"shift_factor=0.0609 is not built"),
        ({"act_fn": "gelu"}, r"act_fn='gelu' is not built"),
        ({"use_quant_conv": "no"}, r"use_quant_conv must be bool"),
    ],
)
def test_vae_fields_it_does_not_build_are_refused(change, message):
    with pytest.raises(settings.SettingsError, match=message):
        vae.VAESettings.from_config({**SD_VAE, **change})


def test_sd2_settings_and_timestep_embedding():
    s = unet.UNetSettings.from_config(SD2_UNET)
    assert s.heads == (5, 10, 20, 20) and s.linear_projection and s.cross_attention_dim == 1024
    emb = unet.timestep_embedding(jnp.array([0, 10]), 8, flip_sin_to_cos=True, shift=0)
    frequencies = np.exp(-np.log(10000.0) * np.arange(4) / 4)
    np.testing.assert_allclose(emb[1], np.concatenate([np.cos(10 * frequencies), np.sin(10 * frequencies)]), rtol=1e-6)
    np.testing.assert_allclose(emb[0], [1, 1, 1, 1, 0, 0, 0, 0])


def test_sd_folder_with_a_unet_field_it_does_not_build_names_the_file(tiny_bundle, tmp_path):
    from regionedit_jax.towers import sd_inpaint

    folder = tmp_path / "sd"
    shutil.copytree(os.path.join(tiny_bundle, "sd_inpaint"), folder)
    config = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**config, "class_embed_type": "timestep"}))
    with pytest.raises(files.TowerFilesError, match=r"class_embed_type='timestep' is not built.*unet.*config\.json"):
        sd_inpaint.load(str(folder))


def test_the_attention_kernel_is_chosen_in_the_config(tiny_bundle):
    from regionedit_jax.configs import tiny as tiny_config
    from regionedit_jax.towers import bundle

    config = tiny_config.get_config()
    config.towers.bundle = tiny_bundle
    config.towers.clip.attention = "xla"
    towers = bundle.load(config.towers, ("clip", "t5"))
    assert towers["clip"].module.compute.attention == "xla"
    assert towers["t5"].module.compute.attention is None  # "auto"
    config.towers.t5.attention = "flash"
    with pytest.raises(ValueError, match="tower attention must be 'auto', 'xla' or 'cudnn'; got 'flash'"):
        bundle.load(config.towers, ("t5",))
