"""The shapes world: captions and tokens round-trip, the renderer agrees with the footprints, the
edits' truth masks are what each kind means, splits are disjoint, records carry the world's edits."""

from __future__ import annotations

import dataclasses
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from regionedit_jax.worlds import edits, render, scenes
from regionedit_jax.worlds.edits import KINDS, examples, score_iou
from regionedit_jax.worlds.scenes import ANYWHERE, Obj, Scene, WorldConfig, caption, encode, parse

CFG = WorldConfig()
SMALL = WorldConfig(image_size=32, grid=2, max_objects=3)
BARE = WorldConfig(textures=("plain",), lightings=(("none", ""),), styles=(("none", ""),), patterns=("plain",))


def tokens_of(items, cfg=CFG) -> np.ndarray:
    return np.stack([encode(s, cfg) for s in items])


def grow(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """bool [..., S, S] dilated by `steps` pixels (8-neighbourhood)."""
    for _ in range(steps):
        mask = np.any([np.roll(mask, (dy, dx), (-2, -1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    return mask


def interior(mask: np.ndarray) -> np.ndarray:
    """bool [..., S, S]: the pixels of a mask not on its edge (where paint is not blended)."""
    return ~grow(~mask)


def plain(scene: Scene) -> Scene:
    """The scene on a plain background, without lighting or style."""
    return dataclasses.replace(scene, texture="plain", lighting="none", style="none")


def padded(items, cfg=CFG, size=64) -> np.ndarray:
    """Tokens of the scenes, repeated up to `size` rows (one compiled shape for every batch)."""
    return tokens_of((list(items) * size)[:size], cfg)


@pytest.fixture(scope="module")
def drawn():
    """48 plain-background scenes and 6 lighting/style variants of the first (a batch of 64):
    tokens, images (key 0), footprints, and renders on speckled backgrounds (keys 1, 2)."""
    rng = np.random.default_rng(0)
    batch = [plain(scenes.sample_scene(rng, CFG)) for _ in range(48)]
    batch += [dataclasses.replace(batch[0], lighting=light) for light in CFG.lighting_names[1:]]
    batch += [dataclasses.replace(batch[0], style=style) for style in CFG.style_names[1:]]
    tokens = padded(batch)
    speckled = padded([dataclasses.replace(s, texture="speckled") for s in batch])
    return {
        "scenes": batch[:48],
        "variants": batch[48:],
        "tokens": tokens,
        "images": np.asarray(render.render(tokens, jax.random.PRNGKey(0), CFG)),
        "masks": np.asarray(render.object_masks(tokens, CFG)),
        "speckled": [np.asarray(render.render(speckled, jax.random.PRNGKey(k), CFG)) for k in (1, 2)],
    }


@pytest.fixture(scope="module")
def train_edits():
    return examples("train", 2100, seed=0)


@pytest.fixture(scope="module")
def held_out_edits():
    return examples("test", 2100, seed=0)


# Captions and tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [CFG, SMALL, BARE], ids=["grid3", "grid2", "no_lighting_or_style"])
def test_caption_parse_and_tokens_round_trip(cfg):
    rng = np.random.default_rng(1)
    for _ in range(3000):
        scene = scenes.sample_scene(rng, cfg)
        assert parse(caption(scene, cfg), cfg) == scene
        assert scenes.decode(encode(scene, cfg), cfg) == scene
    assert encode(scene, cfg).shape == (cfg.num_tokens,)


def test_caption_reads_naturally_and_open_objects_have_no_place():
    scene = Scene(
        (
            Obj("star", "green", "small", ANYWHERE),
            Obj("circle", "red", "small", 0),
            Obj("square", "blue", "large", 4, "striped"),
        ),
        "grey",
        "speckled",
        "night",
        "outline",
    )
    text = caption(scene)
    assert text == (
        "a small red circle at the top left, a large striped blue square in the "
        "center and a small green star on a speckled grey background, at night, "
        "as an outline drawing"
    )
    assert parse(text) == scene and parse(text.upper() + ".") == scene
    assert parse("a small green star on a grey background").objects[0].cell == ANYWHERE
    assert scenes.decode(encode(scene)) == scene


@pytest.mark.parametrize(
    "text, part",
    [
        ("a huge red circle at the top on a grey background", "a huge red circle at the top"),
        ("a small red circle at the top on a golden background", "golden"),
        ("a small red circle at the top", "a small red circle at the top"),
        ("a small red circle in the sky and a large blue star on a grey background", "a small red circle in the sky"),
    ],
)
def test_parse_names_the_unparsable_part(text, part):
    with pytest.raises(ValueError, match=part):
        parse(text)


def test_bad_tokens_and_scenes_are_refused():
    tokens = encode(Scene((Obj("star", "green", "small", 3),), "grey"))
    tokens[4 + 4] = CFG.cells + 1  # the cell of slot 0
    with pytest.raises(ValueError, match="positions \\[8\\]"):
        scenes.decode(tokens)
    with pytest.raises(ValueError, match="share a cell"):
        Scene((Obj("star", "green", "small", 3), Obj("circle", "red", "large", 3)), "grey")
    with pytest.raises(ValueError, match="colour 'gold'"):
        encode(Scene((Obj("star", "gold", "small", 3),), "grey"))


def test_captions_fit_clip_tokens(tmp_path):
    from regionedit_jax.towers import text
    from regionedit_jax.towers.tiny import write_clip_tokenizer

    write_clip_tokenizer(str(tmp_path))
    tokenizer = text.load_clip(str(tmp_path), "CLIP")
    rng = np.random.default_rng(2)
    texts = [caption(scenes.sample_scene(rng, CFG)) for _ in range(1000)]
    length = lambda t: len(tokenizer.backend.encode(t).ids)  # noqa: E731
    longest = max(CFG.colour_names, key=length)
    texts.append(
        caption(
            Scene(
                tuple(Obj("diamond", longest, "large", c, "striped") for c in (0, 2, 6, 8)),
                "beige",
                "checkered",
                "sunset",
                "outline",
            )
        )
    )
    assert max(map(length, texts)) <= 77


def test_colours_stay_distinct_from_every_background():
    objects = np.array([rgb for _, rgb in CFG.colours])
    grounds = np.array([rgb for _, rgb in CFG.backgrounds])
    assert np.linalg.norm(objects[:, None] - grounds[None], axis=-1).min() > 0.35
    pairwise = np.linalg.norm(objects[:, None] - objects[None], axis=-1)
    assert pairwise[~np.eye(len(objects), dtype=bool)].min() > 0.3


# Rendering -------------------------------------------------------------------------------------


def test_footprints_agree_with_pixels(drawn):
    images, masks = drawn["images"], drawn["masks"]
    assert images.shape == (64, 64, 64, 3) and images.dtype == np.float32
    assert masks.shape == (64, CFG.max_objects, 64, 64) and masks.dtype == bool
    assert 0 <= images.min() and images.max() <= 1
    for i, scene in enumerate(drawn["scenes"]):
        ground = np.array(dict(CFG.backgrounds)[scene.background])
        paints = []
        for k, obj in enumerate(scene.objects):
            colour = np.array(dict(CFG.colours)[obj.colour])
            second = np.asarray(render.pattern_colour(jnp.asarray(colour)))
            inside = images[i][masks[i, k]]
            assert len(inside) > 20
            to_object = np.minimum(np.abs(inside - colour).sum(-1), np.abs(inside - second).sum(-1))
            assert (to_object < np.abs(inside - ground).sum(-1)).all(), (scene, k)
            paints += [colour, second]
        assert not masks[i, len(scene.objects) :].any()
        covered = masks[i].any(0)
        to_ground = np.abs(images[i] - ground).sum(-1)
        assert to_ground[~grow(covered, 2)].max() < 1e-6  # away from objects: the background
        spread = max(np.abs(p - ground).sum() for p in paints)  # edges: mostly background
        assert to_ground[~covered].max() <= 0.5 * spread + 1e-5


def test_footprint_table_and_background_mask_match_object_masks(drawn):
    table = render.footprint_table(CFG)
    for i, scene in enumerate(drawn["scenes"][:16]):  # footprint() reads footprint_table
        for k, obj in enumerate(scene.objects):
            np.testing.assert_array_equal(edits.footprint(obj, CFG), drawn["masks"][i, k])
    np.testing.assert_array_equal(np.asarray(render.background_mask(drawn["tokens"], CFG)), ~drawn["masks"].any(1))
    assert table.shape == (len(CFG.shapes), len(CFG.sizes), CFG.cells, 64, 64)
    small, large = table[:, 0].sum((-1, -2)), table[:, 1].sum((-1, -2))
    assert (small > 0).all() and (large > 2 * small).all()
    cell_of_pixel = render.cell_of_pixel(CFG)  # every footprint stays inside its own cell
    for c in range(CFG.cells):
        assert (cell_of_pixel[table[:, :, c].any((0, 1))] == c).all()


def test_a_new_key_resamples_the_texture_but_not_the_objects(drawn):
    first, second = (images[:48] for images in drawn["speckled"])
    objects = interior(drawn["masks"][:48].any(1))
    assert np.abs(first - second)[~objects].max() > 0.1
    np.testing.assert_array_equal(first[objects], second[objects])
    np.testing.assert_array_equal(first[objects], drawn["images"][:48][objects])


def test_lighting_and_style_change_the_picture(drawn):
    images = drawn["images"]
    for k, variant in enumerate(drawn["variants"], 48):
        assert np.abs(images[k] - images[0]).mean() > 0.02, variant


def test_noise_and_jitter_come_from_the_key(drawn):
    key = jax.random.PRNGKey(5)
    noisy = np.asarray(render.render(drawn["tokens"], key, CFG, noise=0.05, jitter=0.05))
    again = np.asarray(render.render(drawn["tokens"], key, CFG, noise=0.05, jitter=0.05))
    np.testing.assert_array_equal(noisy, again)
    assert 0.01 < np.abs(noisy - drawn["images"]).mean() < 0.1


def test_open_objects_go_where_the_mask_points(drawn, train_edits):
    source = Scene((Obj("circle", "red", "large", 0), Obj("square", "blue", "large", 4)), "grey")
    target = dataclasses.replace(source, objects=source.objects + (Obj("star", "yellow", "large", ANYWHERE),))
    tokens = np.repeat(tokens_of([target]), 3, 0)
    cell_of_pixel = render.cell_of_pixel(CFG)
    wanted = [8, 2, 5]
    mask = np.stack([cell_of_pixel == c for c in wanted]).astype(np.float32)
    mask[1] += 0.3 * (cell_of_pixel == 0)  # mass on an occupied cell does not count
    key = jax.random.PRNGKey(0)
    cells = np.asarray(render.resolve_cells(tokens, key, CFG, mask=mask))
    assert cells[:, 2].tolist() == wanted and cells[:, :2].tolist() == [[0, 4]] * 3
    images = np.asarray(jax.jit(lambda t, m: render.render(t, key, CFG, mask=m))(tokens, mask))
    yellow = np.array(dict(CFG.colours)["yellow"])
    for i, c in enumerate(wanted):
        star = interior(edits.footprint(Obj("star", "yellow", "large", c), CFG))
        np.testing.assert_allclose(images[i][star], np.broadcast_to(yellow, images[i][star].shape), atol=1e-6)
    assert not np.asarray(render.object_masks(tokens, CFG))[:, 2].any()  # unplaced: no footprint
    free = {
        int(render.resolve_cells(tokens[:1], jax.random.PRNGKey(k), CFG)[0, 2]) for k in range(12)
    }  # no mask: a key-dependent free cell
    assert len(free) > 2 and free <= set(source.free_cells(CFG))
    key = jax.random.PRNGKey(7)
    image = np.asarray(render.render(padded([target]), key, CFG))[0]  # as compiled for drawn
    cell = int(render.resolve_cells(tokens[:1], key, CFG)[0, 2])
    star = interior(edits.footprint(Obj("star", "yellow", "large", cell), CFG))
    np.testing.assert_allclose(image[star], np.broadcast_to(yellow, image[star].shape), atol=1e-6)
    opened = [e for e in train_edits if e.open_place][:5]
    for edit in opened:  # the mask of alternative j puts the new object in free cell j
        slot = [o.cell for o in edit.target.objects].index(ANYWHERE)
        placed = [
            int(render.resolve_cells(tokens_of([edit.target]), key, CFG, mask=truth[None])[0, slot])
            for truth in edit.truth
        ]
        assert placed == edit.source.free_cells(CFG)


def test_render_vmaps_and_scales_with_the_config():
    rng = np.random.default_rng(3)
    batch = [plain(scenes.sample_scene(rng, SMALL)) for _ in range(8)]
    tokens = tokens_of(batch, SMALL).reshape(2, 4, -1)
    images = jax.vmap(lambda t: render.render(t, jax.random.PRNGKey(0), SMALL))(tokens)
    assert images.shape == (2, 4, 32, 32, 3)
    masks = np.asarray(render.object_masks(tokens.reshape(8, -1), SMALL))
    assert masks.shape == (8, 3, 32, 32) and masks.any((-1, -2)).sum() == sum(len(s.objects) for s in batch)
    with pytest.raises(ValueError, match="tokens"):
        render.render(tokens, jax.random.PRNGKey(0), SMALL)


# Edits -----------------------------------------------------------------------------------------


def changed_objects(edit):
    before = [o for o in edit.source.objects if o not in edit.target.objects]
    after = [o for o in edit.target.objects if o not in edit.source.objects]
    return before, after


def test_every_kind_is_what_it_says(train_edits):
    counts = {kind: 0 for kind in KINDS}
    for edit in train_edits[:700]:
        counts[edit.kind] += 1
        assert parse(edit.target_caption) == edit.target and edit.target != edit.source
        assert edit.truth.dtype == bool and edit.truth.shape[1:] == (64, 64)
        assert edit.instruction == edit.template.format(**_fields(edit.instruction, edit.template))
        before, after = changed_objects(edit)
        same_world = dataclasses.replace(edit.target, objects=edit.source.objects)
        if edit.kind in ("local", "texture", "add", "remove"):
            assert same_world == edit.source
        if edit.kind == "local":
            (old,), (new,) = before, after
            assert (old.cell, old.size, old.pattern) == (new.cell, new.size, new.pattern)
            assert (old.colour != new.colour) + (old.shape != new.shape) == 1
            np.testing.assert_array_equal(edit.truth[0], edits.footprint(old, CFG) | edits.footprint(new, CFG))
        elif edit.kind == "texture":
            (old,), (new,) = before, after
            assert dataclasses.replace(old, pattern=new.pattern) == new
            np.testing.assert_array_equal(edit.truth[0], edits.footprint(old, CFG))
        elif edit.kind == "remove":
            (old,), () = before, after
            np.testing.assert_array_equal(edit.truth[0], edits.footprint(old, CFG))
        elif edit.kind == "add":
            (), (new,) = before, after
            assert edit.open_place == (new.cell == ANYWHERE)
            free = edit.source.free_cells(CFG)
            places = free if edit.open_place else [new.cell]
            assert new.cell in free + [ANYWHERE] and len(edit.truth) == len(places)
            for alternative, cell in zip(edit.truth, places):
                np.testing.assert_array_equal(alternative, edits.footprint(dataclasses.replace(new, cell=cell), CFG))
        elif edit.kind == "background":
            assert (edit.target.background, edit.target.texture) != (edit.source.background, edit.source.texture)
            assert (
                dataclasses.replace(edit.target, background=edit.source.background, texture=edit.source.texture)
                == edit.source
            )
            covered = np.any([edits.footprint(o, CFG) for o in edit.source.objects], axis=0)
            np.testing.assert_array_equal(edit.truth[0], ~covered)
        else:
            field = "lighting" if edit.kind == "global" else "style"
            assert getattr(edit.target, field) != "none"
            assert dataclasses.replace(edit.target, **{field: getattr(edit.source, field)}) == edit.source
            assert edit.truth.all() and len(edit.truth) == 1
        if edit.kind != "add":
            assert len(edit.truth) == 1 and not edit.open_place
    assert set(counts.values()) == {100}
    assert any(e.open_place for e in train_edits[:700])


def test_remove_and_background_truth_match_the_renderers_masks(train_edits):
    removes = [e for e in train_edits if e.kind == "remove"][:64]
    masks = np.asarray(render.object_masks(padded([e.source for e in removes]), CFG))
    for edit, mask in zip(removes, masks):
        (old,), _ = changed_objects(edit)
        np.testing.assert_array_equal(edit.truth[0], mask[edit.source.objects.index(old)])
    grounds = [e for e in train_edits if e.kind == "background"][:64]
    free = np.asarray(render.background_mask(padded([e.source for e in grounds]), CFG))
    np.testing.assert_array_equal(np.stack([e.truth[0] for e in grounds]), free)


def _fields(instruction: str, template: str) -> dict[str, str]:
    """The values a template's fields took in an instruction."""
    import re

    names = re.findall(r"\{(\w+)\}", template)
    pattern = re.escape(template)
    for name in dict.fromkeys(names):
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>.+)", 1)
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P={name})")
    match = re.fullmatch(pattern, instruction)
    assert match, (instruction, template)
    return match.groupdict()


def test_objects_are_named_unambiguously(train_edits):
    for edit in train_edits[:700]:
        if edit.kind not in ("local", "texture", "remove"):
            continue
        (old,), _ = changed_objects(edit)
        ref = _fields(edit.instruction, edit.template)["ref"]
        assert ref.startswith("the ")
        places = [p for p in scenes.cell_phrases(3) if ref.endswith(" " + p)]
        place = max(places, key=len) if places else ""
        words = ref[4 : len(ref) - len(place)].split()
        fits = [
            o
            for o in edit.source.objects
            if (not place or scenes.cell_phrases(3)[o.cell] == place)
            and words[-1] == o.shape
            and all(w in (o.colour, o.size, o.pattern) for w in words[:-1])
        ]
        assert fits == [old], (ref, edit.source_caption)


def test_train_and_test_share_no_scene_and_no_phrasing(train_edits, held_out_edits):
    train = {encode(e.source).tobytes() for e in train_edits}
    test = {encode(e.source).tobytes() for e in held_out_edits}
    assert len(train) > 1900 and len(test) > 1900 and not train & test
    assert not {e.template for e in train_edits} & {e.template for e in held_out_edits}
    assert not {e.instruction for e in train_edits} & {e.instruction for e in held_out_edits}
    for kind, variants in edits.TEMPLATES.items():
        for variant, templates in variants.items():
            assert len(templates) >= 5
            assert len(edits.phrasings(kind, variant, "test")) == len(templates) // 3
    assert {e.template for e in held_out_edits} == {
        t for kind in edits.TEMPLATES for v in edits.TEMPLATES[kind] for t in edits.phrasings(kind, v, "test")
    }


def test_examples_are_deterministic_and_balanced(train_edits):
    again = examples("train", 30, seed=0)
    for a, b in zip(again, train_edits):
        assert (a.instruction, a.source, a.target) == (b.instruction, b.source, b.target)
        np.testing.assert_array_equal(a.truth, b.truth)
    other = examples("train", 30, seed=1)
    assert [e.instruction for e in other] != [e.instruction for e in again]
    assert [e.kind for e in again[:14]] == list(KINDS) * 2
    only = examples("test", 6, seed=0, kinds=("remove", "add"))
    assert [e.kind for e in only] == ["remove", "add"] * 3
    assert edits.example("test", 4, kinds=("remove", "add")).instruction == only[4].instruction
    with pytest.raises(ValueError, match="split"):
        examples("validation", 2)
    with pytest.raises(ValueError, match="kind"):
        examples("train", 2, kinds=("recolour",))


def test_iou_scores_the_best_alternative_and_empty_predictions_zero(train_edits):
    edit = next(e for e in train_edits if e.kind == "remove")
    truth = edit.truth[0]
    assert score_iou(truth, edit) == 1.0
    assert score_iou(np.zeros_like(truth), edit) == 0.0
    assert score_iou(np.ones_like(truth), edit) == pytest.approx(truth.sum() / truth.size)
    half = truth & (np.arange(64)[None, :] < np.argwhere(truth)[:, 1].mean())
    assert score_iou(half, edit) == pytest.approx(half.sum() / truth.sum())
    opened = next(e for e in train_edits if e.kind == "add" and e.open_place)
    assert len(opened.truth) == len(opened.source.free_cells(CFG)) > 1
    for alternative in opened.truth:
        assert score_iou(alternative, opened) == 1.0
    first, second = opened.truth[:2].sum((1, 2))  # disjoint alternatives
    assert score_iou(opened.truth[0] | opened.truth[1], opened) == pytest.approx(max(first, second) / (first + second))
    with pytest.raises(ValueError, match="shape"):
        score_iou(np.zeros((32, 32), bool), edit)


# Training records ------------------------------------------------------------------------------


def test_shapes_source_writes_records_with_the_worlds_edits(tmp_path):
    import grain

    from regionedit_jax.data import annotate, records, sources

    manifest = annotate.annotate(
        annotate.Settings(source="shapes:9", out=str(tmp_path), records_per_shard=4), workers=2, progress=False
    )
    assert manifest["totals"]["records"] == 9 and manifest["totals"]["rejected"] == 0
    data = grain.sources.ArrayRecordDataSource(records.shard_paths(str(tmp_path)))
    got = {r.source: r for r in (records.decode(data[i]) for i in range(len(data)))}
    want = examples("train", 9)
    for i, edit in enumerate(want):
        record = got[f"shapes:train/{i}"]
        assert (record.caption, record.instruction, record.target_caption, record.edit_kind) == (
            edit.source_caption,
            edit.instruction,
            edit.target_caption,
            edit.kind,
        )
        with Image.open(io.BytesIO(record.image)) as image:
            assert image.format == "PNG" and image.size == (64, 64)
            pixels = np.asarray(image.convert("RGB"))
        key = jax.random.fold_in(jax.random.PRNGKey(0), i)
        np.testing.assert_array_equal(pixels, render.render_scene(edit.source, key))
    test = sources.open_source("shapes:4:test", shard_index=1, num_shards=2)
    pairs = list(test)
    assert [p.key for p in pairs] == ["1", "3"] and test.size() == 2
    assert pairs[1].edit.instruction == edits.example("test", 3).instruction
    with pytest.raises(ValueError, match="shapes:N"):
        sources.open_source("shapes:many")
    small = scenes.WorldConfig(image_size=32, grid=2, max_objects=2)
    pair = list(sources.open_source("shapes:2", image_size=32, grid=2, max_objects=2))[1]
    assert pair.edit.instruction == edits.example("train", 1, cfg=small).instruction
    with Image.open(io.BytesIO(pair.image)) as image:
        assert image.size == (32, 32)
    with pytest.raises(TypeError, match="only the options image_size, grid and max_objects"):
        sources.open_source("shapes:2", data_dir="x")
    with pytest.raises(ValueError, match="max_objects"):
        sources.open_source("shapes:2", grid=2, max_objects=5)
