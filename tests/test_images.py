"""The image boundary: conversions to NHWC float RGB in [0, 1] and the differentiable resize."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regionedit_jax import images


def test_standardize_dtypes_and_channels():
    u8 = np.array([[[0, 128, 255]]], np.uint8)
    np.testing.assert_allclose(images.standardize(u8), [[[[0, 128 / 255, 1]]]])
    u16 = np.full((2, 2, 1), 65535, np.uint16)
    assert images.standardize(u16).shape == (1, 2, 2, 3) and float(images.standardize(u16).min()) == 1
    rgba = np.random.default_rng(0).uniform(size=(2, 3, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(images.standardize(rgba), rgba[..., :3])
    assert images.standardize(np.ones((4, 4, 3), bool)).dtype == jnp.float32


def test_standardize_refuses_clearly():
    with pytest.raises(ValueError, match="must not be empty"):
        images.standardize(np.zeros((0, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"values in \[0, 255\]"):
        images.standardize(np.array([[[0.0, 255.0, 3.0]]], np.float32))
    with pytest.raises(ValueError, match="integer or float"):
        images.standardize(np.zeros((2, 2, 3), complex))


def test_standardize_works_under_jit():
    out = jax.jit(images.standardize)(np.zeros((5, 6, 1), np.uint8))
    assert out.shape == (1, 5, 6, 3)


def test_resize_center_crop():
    x = jnp.arange(2 * 40 * 60 * 3, dtype=jnp.float32).reshape(2, 40, 60, 3)
    assert images.resize_center_crop(x, 20, 20).shape == (2, 20, 20, 3)
    np.testing.assert_array_equal(images.resize_center_crop(x, 40, 40), x[:, :, 10:50])  # no resize: crop only
    grad = jax.grad(lambda v: images.resize_center_crop(v, 16, 16).sum())(x)
    assert float(grad.sum()) > 0
