"""The region predictor (Eq.1-3, multi-scale), the projector f and the straight-through mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from regionedit_jax import region


def _inputs(grid=8, length=12, d=32, valid=5, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    patches = jax.random.normal(k1, (2, grid * grid, d))
    text = jax.random.normal(k2, (2, length, d))
    mask = jnp.zeros((2, length), jnp.int32).at[:, :valid].set(1)
    return patches, text, mask


@pytest.fixture(scope="module")
def predictor():
    model = region.RegionPredictor(width=32, num_heads=4, depth=2, scales=(1, 2, 4))
    variables = model.init(jax.random.key(0), *_inputs())
    return model, variables


def test_shapes_and_probabilities(predictor):
    model, variables = predictor
    out = model.apply(nn.meta.unbox(variables), *_inputs())
    assert out.logits.shape == out.probs.shape == (2, 8, 8)
    assert out.fused.shape == (2, 64, 32)
    np.testing.assert_allclose(out.scale_weights.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out.probs, jax.nn.sigmoid(out.logits), rtol=1e-6)


def test_padded_instruction_tokens_are_ignored(predictor):
    model, variables = predictor
    patches, text, mask = _inputs()
    noisy = text.at[:, 5:].set(100.0)  # only padding positions change
    a = model.apply(nn.meta.unbox(variables), patches, text, mask)
    b = model.apply(nn.meta.unbox(variables), patches, noisy, mask)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
    c = model.apply(nn.meta.unbox(variables), patches, noisy.at[:, 0].set(3.0), mask)
    assert not np.allclose(a.logits, c.logits)


def test_single_scale_is_plain_eq3():
    model = region.RegionPredictor(width=32, num_heads=4, scales=(1,))
    variables = nn.meta.unbox(model.init(jax.random.key(0), *_inputs()))
    assert "scale_mix" not in variables["params"] and "head_2" not in variables["params"]
    out = model.apply(variables, *_inputs())
    head = region.Mlp(16, 1)
    expected = head.apply({"params": variables["params"]["head_1"]}, out.fused.reshape(2, 8, 8, 32))[..., 0]
    np.testing.assert_allclose(out.logits, expected, atol=1e-6)
    np.testing.assert_array_equal(out.scale_weights, 1.0)


def test_any_grid_and_bad_scales():
    model = region.RegionPredictor(width=32, num_heads=4, scales=(1, 2, 4))
    out = model.apply(nn.meta.unbox(model.init(jax.random.key(0), *_inputs(grid=4))), *_inputs(grid=4))
    assert out.probs.shape == (2, 4, 4)
    with pytest.raises(ValueError, match=r"divide the 6x6 patch grid; \[4\]"):
        model.init(jax.random.key(0), *_inputs(grid=6))
    with pytest.raises(ValueError, match="square grid"):
        model.init(jax.random.key(0), jnp.zeros((1, 10, 32)), *_inputs()[1:])


def test_params_carry_logical_axes(predictor):
    _, variables = predictor
    specs = nn.get_partition_spec(variables)["params"]
    assert specs["cross_attn"]["query"]["kernel"] == jax.sharding.PartitionSpec("embed", "heads", "kv")
    assert specs["mlp_0"]["fc1"]["kernel"] == jax.sharding.PartitionSpec("embed", "mlp")


def test_projector_pools_to_clip_dim():
    f = region.SemanticProjector(out_dim=24, num_heads=4)
    tokens = jax.random.normal(jax.random.key(1), (3, 64, 32))
    out = f.apply(f.init(jax.random.key(0), tokens), tokens)
    assert out.shape == (3, 24) and bool(jnp.all(jnp.isfinite(out)))


def test_straight_through_forward_is_hard_and_backward_is_soft():
    probs = jnp.array([[0.2, 0.7], [0.5, 0.9]])
    st = lambda p: region.straight_through(region.hard_mask(p, 0.5), p)
    np.testing.assert_array_equal(st(probs), [[0, 1], [0, 1]])
    weights = jnp.array([[1.0, -2.0], [3.0, 0.5]])
    grad = jax.grad(lambda p: jnp.sum(st(p) * weights))(probs)
    np.testing.assert_allclose(grad, weights)
    up = region.upsample(probs[None], 6, 4)
    assert up.shape == (1, 6, 4) and float(up.min()) >= 0.2 - 1e-6


def test_decoder_fusion_shapes_position_and_padding():
    model = region.RegionPredictor(width=32, num_heads=4, depth=2, scales=(1,), fusion="decoder")
    variables = nn.meta.unbox(model.init(jax.random.key(0), *_inputs()))
    params = variables["params"]
    assert params["position"].shape == (1, 64, 32)
    assert {"cross_attn_0", "cross_attn_1", "out_norm"} <= set(params) and "cross_attn" not in params
    patches, text, mask = _inputs()
    out = model.apply(variables, patches, text, mask)
    assert out.logits.shape == (2, 8, 8) and out.fused.shape == (2, 64, 32)
    noisy = text.at[:, 5:].set(100.0)  # padding only
    np.testing.assert_allclose(model.apply(variables, patches, noisy, mask).logits, out.logits, atol=1e-5)
    # The position embedding makes identical patches at different places differ.
    same = jnp.broadcast_to(patches[:, :1], patches.shape)
    logits = model.apply(variables, same, text, mask).logits
    assert float(jnp.std(logits[0])) > 1e-3


def test_unknown_fusion_is_refused():
    model = region.RegionPredictor(width=32, num_heads=4, fusion="film")
    with pytest.raises(ValueError, match="region fusion 'film' is not one of"):
        model.init(jax.random.key(0), *_inputs())


def test_pixel_patches_follow_the_patch_grid_row_major():
    images = jax.random.uniform(jax.random.key(3), (2, 12, 12, 3))
    got = np.asarray(region.pixel_patches(images, grid=3))
    assert got.shape == (2, 9, 48)
    reference = np.asarray(images)
    for row in range(3):
        for col in range(3):
            block = reference[:, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4, :].reshape(2, -1)
            np.testing.assert_array_equal(got[:, 3 * row + col], block)


def test_model_with_pixels_feeds_each_patch_its_pixels(tiny_config, clip_tower, t5_tower, sd_tower):
    import ml_collections

    from regionedit_jax.model import RegionEditModel

    config = ml_collections.ConfigDict(tiny_config.to_dict())
    config.region.update(fusion="decoder", pixels=True, depth=1)
    towers = {"clip": clip_tower, "t5": t5_tower, "sd_inpaint": sd_tower}
    model = RegionEditModel.from_towers(towers, config)
    params = model.init(jax.random.key(0))
    p = clip_tower.patch_size
    assert params["region"]["patch_in"]["kernel"].shape[0] == clip_tower.dim + 3 * p * p
    images = jax.random.uniform(jax.random.key(1), (1, 64, 48, 3))
    inputs = model.region_inputs(jnp.zeros((1, clip_tower.grid**2, clip_tower.dim)), images)
    square = np.asarray(model.clip_input(images))
    np.testing.assert_allclose(np.asarray(inputs[0, 1, clip_tower.dim :]), square[0, :p, p : 2 * p].reshape(-1))
