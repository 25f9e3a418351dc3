"""The generator contract, the registry, the oracle of the shapes world, and the one forward path."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from regionedit_jax import generators
from regionedit_jax.generators.sd_inpaint import InpaintSampler, SamplerOptions
from regionedit_jax.model import RegionEditModel, composite
from regionedit_jax.worlds import edits, render, scenes


def gen_config(name="sd_inpaint", **options):
    return ml_collections.ConfigDict(dict(name=name, num_steps=2, guidance_scale=3.0, **options))


# ----------------------------------------------------------------------------- registry


def test_registry_errors_name_the_near_choice(sd_tower):
    with pytest.raises(ValueError, match="did you mean 'oracle'"):
        generators.make(gen_config("orcale"), {})
    with pytest.raises(ValueError, match=r"sd_inpaint\.etta is not an option.*did you mean 'eta'"):
        generators.make(gen_config(sd_inpaint=dict(etta=0.5)), {"sd_inpaint": sd_tower})
    with pytest.raises(ValueError, match=r"needs the towers \['sd_inpaint'\]"):
        generators.make(gen_config(), {})
    with pytest.raises(ValueError, match="at least 1"):
        generators.make(gen_config(), {"sd_inpaint": sd_tower}, num_steps=0)
    assert generators.towers_for(gen_config()) == ("sd_inpaint",)
    assert generators.towers_for(gen_config("oracle")) == ()


def test_sd_inpaint_generator_is_the_sampler(sd_tower):
    gen = generators.make(gen_config(sd_inpaint=dict(eta=0.0, blend=True)), {"sd_inpaint": sd_tower})
    assert (gen.name, gen.multiple, gen.max_length) == ("sd_inpaint", 4, 77)
    ids = gen.tokenize(["a red cat", "a dog"])
    np.testing.assert_array_equal(ids, sd_tower.tokenize(["a red cat", "a dog"]))
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
    masks = np.zeros((2, 16, 16, 1), np.float32)
    masks[:, 4:12, 4:12] = 1
    key = jax.random.key(3)
    out = jax.jit(gen.generate)(gen.params, images, masks, ids, key, 3.0)
    ref = InpaintSampler(sd_tower, SamplerOptions(num_steps=2))(sd_tower.params, images, masks, ids, key, 3.0)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        gen.check((1, 18, 16, 3), (1, 77))
    with pytest.raises(ValueError, match=r"expected \(1, 77\)"):
        gen.check((1, 16, 16, 3), (1, 10))


# ------------------------------------------------------------------------------- oracle


@pytest.fixture(scope="module")
def oracle():
    return generators.make(gen_config("oracle", oracle=dict(noise=0.0, jitter=0.0)), {})


def test_oracle_paints_the_target_inside_the_mask_and_keeps_the_rest(oracle):
    world = oracle.world
    edit = edits.example("test", 3)  # deterministic; any kind works here
    source = render.render(scenes.encode(edit.source, world)[None], jax.random.key(1), world)
    ids = oracle.tokenize([edit.target_caption])
    np.testing.assert_array_equal(ids[0], scenes.encode(scenes.parse(edit.target_caption, world), world))
    truth = jnp.asarray(edit.truth[:1].any(0), jnp.float32)[None]  # [1, S, S]
    out = oracle.generate({}, source, truth[..., None], ids, jax.random.key(2), 1.0)
    edited = composite(truth, out, source)
    outside = ~np.asarray(truth[0], bool)
    np.testing.assert_array_equal(np.asarray(edited[0])[outside], np.asarray(source[0])[outside])
    # With a full mask, noise and jitter 0 it is the world's own render of the target with its key.
    full = oracle.generate({}, source, jnp.ones((1, 64, 64, 1)), ids, jax.random.key(2), 1.0)
    assert full.shape == (1, 64, 64, 3) and float(full.min()) >= 0 and float(full.max()) <= 1
    with pytest.raises(ValueError, match="oracle generator paints only scenes of the shapes world"):
        oracle.tokenize(["a photo of a cat"])


def test_an_oversized_oracle_mask_costs_something():
    """Re-synthesis: the textured background under an oversized mask changes; noise changes all."""
    world = scenes.WorldConfig()
    scene = scenes.Scene((scenes.Obj("circle", "red", "large", 4, "plain"),), "grey", "speckled", "none", "none")
    tokens = scenes.encode(scene, world)[None]
    source = render.render(tokens, jax.random.key(0), world)
    for noise, jitter in ((0.0, 0.0), (0.05, 0.05)):
        gen = generators.make(gen_config("oracle", oracle=dict(noise=noise, jitter=jitter)), {})
        out = gen.generate({}, source, jnp.ones((1, 64, 64, 1)), tokens, jax.random.key(7), 1.0)
        background = np.asarray(render.background_mask(tokens, world))[0]
        diff = np.abs(np.asarray(out - source))[0].mean(-1)
        assert diff[background].mean() > 0.01  # a fresh texture sample
    with pytest.raises(ValueError, match="noise and jitter must be >= 0"):
        generators.make(gen_config("oracle", oracle=dict(noise=-1.0)), {})


def test_oracle_puts_an_unplaced_object_where_the_mask_is(oracle):
    world = oracle.world
    source = scenes.Scene((scenes.Obj("circle", "red", "large", 0, "plain"),), "grey", "plain", "none", "none")
    target = dataclasses.replace(source, objects=source.objects + (scenes.Obj("star", "blue", "large", -1, "plain"),))
    ids = oracle.tokenize([scenes.caption(target, world)])
    for cell in (2, 8):
        mask = np.zeros((1, 64, 64, 1), np.float32)
        mask[0, render.cell_of_pixel(world) == cell] = 1
        out = np.asarray(oracle.generate({}, jnp.zeros((1, 64, 64, 3)), mask, ids, jax.random.key(0), 1.0))[0]
        blue = (out[..., 2] > 0.8) & (out[..., 0] < 0.3)
        assert blue.sum() > 50 and blue[render.cell_of_pixel(world) == cell].sum() == blue.sum()


# -------------------------------------------------------------------------- forward path


def test_training_and_editing_run_the_same_forward(tiny_config, clip_tower, t5_tower):
    """One function: equal outputs for train=True/False; only training passes gradients to p."""
    config = ml_collections.ConfigDict(tiny_config.to_dict())
    config.generator = gen_config("oracle")
    config.image_size = 64
    model = RegionEditModel.from_towers({"clip": clip_tower, "t5": t5_tower}, config)
    params, frozen = model.init(jax.random.key(0)), model.frozen_params()
    examples = edits.examples("test", 2, 0)
    images = render.render(
        np.stack([scenes.encode(e.source, model.generator.world) for e in examples]),
        jax.random.key(1),
        model.generator.world,
    )
    t5_ids, t5_mask = t5_tower.tokenize([e.instruction for e in examples])
    prompt = model.generator.tokenize([e.target_caption for e in examples])
    user = np.zeros((2, 64, 64), np.float32)
    user[:, 8:40, 4:48] = 1

    @functools.partial(jax.jit, static_argnums=(1,))
    def run(p, train, use_user):
        return model.forward(
            p,
            frozen,
            images,
            t5_ids,
            t5_mask,
            prompt,
            jax.random.key(5),
            guidance_scale=2.0,
            threshold=0.5,
            user_mask=user,
            use_user_mask=use_user,
            train=train,
        )

    for use_user in (False, True):
        edit, train = run(params, False, use_user), run(params, True, use_user)
        np.testing.assert_array_equal(np.asarray(edit.edited), np.asarray(train.edited))
        np.testing.assert_array_equal(np.asarray(edit.mask), np.asarray(train.mask))
    np.testing.assert_array_equal(np.asarray(run(params, False, True).mask), user)  # a user mask reaches both
    loss = jax.jit(jax.grad(lambda p, train: jnp.sum(run(p, train, False).edited * images)), static_argnums=(1,))
    norm = lambda g: float(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(g["region"])))
    assert norm(loss(params, True)) > 0 and norm(loss(params, False)) == 0
