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
