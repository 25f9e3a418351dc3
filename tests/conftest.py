"""Shared test setup: 8 forced CPU devices, offline hub, one tiny bundle and loaded towers per session."""

import os

# Before jax is imported anywhere: 8 host devices for sharding tests, no network lookups.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> str:
    """A tiny random tower bundle (seed 0), written once per test session."""
    from regionedit_jax.towers import tiny

    return tiny.write_bundle(str(tmp_path_factory.mktemp("bundle") / "tiny"), seed=0)


@pytest.fixture(scope="session")
def clip_tower(tiny_bundle):
    from regionedit_jax.towers import clip

    return clip.load(os.path.join(tiny_bundle, "clip"))


@pytest.fixture(scope="session")
def t5_tower(tiny_bundle):
    from regionedit_jax.towers import t5

    return t5.load(os.path.join(tiny_bundle, "t5"))


@pytest.fixture(scope="session")
def dino_tower(tiny_bundle):
    from regionedit_jax.towers import dino

    return dino.load(os.path.join(tiny_bundle, "dino"))


@pytest.fixture(scope="session")
def sd_tower(tiny_bundle):
    from regionedit_jax.towers import sd_inpaint

    return sd_inpaint.load(os.path.join(tiny_bundle, "sd_inpaint"))


@pytest.fixture(scope="session")
def tiny_config(tiny_bundle):
    """configs/tiny.py pointed at the session's bundle."""
    from regionedit_jax.configs import tiny

    return tiny.get_config(f"bundle={tiny_bundle}")


@pytest.fixture(scope="session")
def editor(tiny_config, clip_tower, t5_tower, sd_tower):
    """An Editor on the session's towers with a fresh (untrained) region predictor."""
    import jax

    from regionedit_jax import describe
    from regionedit_jax.editor import Editor
    from regionedit_jax.model import RegionEditModel

    towers = {"clip": clip_tower, "t5": t5_tower, "sd_inpaint": sd_tower}
    model = RegionEditModel.from_towers(towers, tiny_config)
    params = model.init(jax.random.key(0))
    return Editor(
        model,
        params,
        tiny_config,
        describe.make("clip", clip=clip_tower, labels=["cat", "dog", "car"]),
        describe.make("rules"),
        towers=towers,
    )
