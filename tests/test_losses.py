"""Eq.4-11 against independent numpy computations, and their invariants."""

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax import losses


def _np_cos(a, b):
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_terms_match_numpy():
    fh, fv, tt, ts, ie, isrc = (_rand(3, 8, seed=s) for s in range(6))
    pe, ps = _rand(3, 5, 4, seed=6), _rand(3, 5, 4, seed=7)
    weights = losses.LossWeights(alpha=0.5, beta=2.0, clip=1.0, direction=0.3, structure=4.0)
    value, terms = losses.total(
        weights,
        projected_fused=fh,
        projected_source=fv,
        text_target=tt,
        text_source=ts,
        image_edit=ie,
        image_source=isrc,
        tokens_edit=pe,
        tokens_source=ps,
    )
    sem = np.mean(1 - _np_cos(fh, tt)) + np.mean(1 - _np_cos(fv, ts))
    clip = np.mean(1 - _np_cos(ie, tt))
    direction = np.mean(1 - _np_cos(ie - isrc, tt - ts))

    def sim(p):
        unit = p / np.linalg.norm(p, axis=-1, keepdims=True)
        return np.einsum("bnd,bmd->bnm", unit, unit)

    struct = np.mean((sim(pe) - sim(ps)) ** 2)
    np.testing.assert_allclose(terms["sem"], sem, rtol=1e-5)
    np.testing.assert_allclose(terms["clip"], clip, rtol=1e-5)
    np.testing.assert_allclose(terms["direction"], direction, rtol=1e-5)
    np.testing.assert_allclose(terms["structure"], struct, rtol=1e-5)
    np.testing.assert_allclose(value, 0.5 * sem + 2.0 * (clip + 0.3 * direction + 4.0 * struct), rtol=1e-5)


def test_invariants():
    x = _rand(2, 6, 4)
    assert float(losses.structure(x, x)) == 0.0  # identical tokens: no structural change
    assert float(losses.structure(x, 3.0 * x)) < 1e-10  # cosine structure ignores scale
    t = _rand(2, 8, seed=1)
    np.testing.assert_allclose(losses.clip_guidance(t, t), 0.0, atol=1e-6)
    a, b = _rand(2, 8, seed=2), _rand(2, 8, seed=3)
    np.testing.assert_allclose(losses.directional(a + (b - a), a, b, a), 0.0, atol=1e-6)


def test_ablation_weights_remove_terms_and_gradients_flow():
    args = dict(
        projected_fused=_rand(2, 8, seed=0),
        projected_source=_rand(2, 8, seed=1),
        text_target=_rand(2, 8, seed=2),
        text_source=_rand(2, 8, seed=3),
        image_source=_rand(2, 8, seed=5),
        tokens_edit=_rand(2, 4, 3, seed=6),
        tokens_source=_rand(2, 4, 3, seed=7),
    )
    no_clip = losses.LossWeights(clip=0.0, direction=0.0, structure=0.0)
    value, terms = losses.total(no_clip, image_edit=_rand(2, 8, seed=4), **args)
    np.testing.assert_allclose(value, terms["sem"], rtol=1e-6)
    grad = jax.grad(lambda e: losses.total(losses.LossWeights(), image_edit=e, **args)[0])(
        jnp.asarray(_rand(2, 8, seed=4))
    )
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).sum()) > 0


def test_direction_skips_rows_whose_image_did_not_change():
    src, tt, ts = _rand(3, 8, seed=1), _rand(3, 8, seed=2), _rand(3, 8, seed=3)
    edit = src.copy()
    edit[0] += _rand(8, seed=4)  # only row 0 changed
    edited = np.array([True, False, False])
    expected = 1 - _np_cos(edit[0] - src[0], tt[0] - ts[0])
    np.testing.assert_allclose(losses.directional(edit, src, tt, ts, edited), expected, rtol=1e-5)
    grad = jax.grad(lambda e: losses.directional(e, src, tt, ts, jnp.asarray(edited)))(jnp.asarray(edit))
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad[1:]).max()) == 0.0
    assert float(losses.directional(src, src, tt, ts, np.zeros(3, bool))) == 0.0


def test_direction_floor_scores_no_change_as_one_with_a_finite_pull_along_the_text():
    ts, tt = _rand(2, 8, seed=1), _rand(2, 8, seed=2)
    source = _rand(2, 8, seed=3)
    f = lambda e: losses.directional(e, source, tt, ts, floor=0.1)
    np.testing.assert_allclose(float(f(source)), 1.0, atol=1e-6)  # unchanged: no reward for doing nothing
    grad = np.asarray(jax.grad(f)(jnp.asarray(source)))
    assert np.isfinite(grad).all()
    text_dir = (tt - ts) / np.linalg.norm(tt - ts, axis=-1, keepdims=True)
    np.testing.assert_allclose(-grad * 2 * 0.1, text_dir, rtol=1e-5, atol=1e-6)  # -dL/dE = dt_hat / (B delta)
    far = source + 100.0 * _rand(2, 8, seed=4)  # |dE| >> delta: Eq.8 itself
    np.testing.assert_allclose(float(f(far)), np.mean(1 - _np_cos(far - source, tt - ts)), atol=1e-5)


def test_area_prior_adds_the_mean_probability():
    fh, fv, tt, ts, ie, isrc = (_rand(3, 8, seed=s) for s in range(6))
    pe, ps = _rand(3, 5, 4, seed=6), _rand(3, 5, 4, seed=7)
    probs = np.random.default_rng(0).uniform(size=(3, 6, 6)).astype(np.float32)
    kw = dict(
        projected_fused=fh,
        projected_source=fv,
        text_target=tt,
        text_source=ts,
        image_edit=ie,
        image_source=isrc,
        tokens_edit=pe,
        tokens_source=ps,
        probs=probs,
    )
    plain, _ = losses.total(losses.LossWeights(), **kw)
    with_area, terms = losses.total(losses.LossWeights(area=2.0), **kw)
    np.testing.assert_allclose(float(with_area - plain), 2.0 * probs.mean(), rtol=1e-5)
    assert float(terms["area"]) == float(np.float32(probs.mean()))
