"""Every config file builds; arguments and overrides with typos fail at parse time with the key."""

import glob
import importlib.util
import os

import ml_collections
import pytest

from regionedit_jax.configs import common

CONFIG_FILES = sorted(
    p
    for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py"))
    if os.path.basename(p) not in ("common.py", "checks.py", "__init__.py")
)


def _module(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_every_config_builds_and_is_locked(path):
    config = _module(path).get_config()
    assert isinstance(config, ml_collections.ConfigDict) and config.is_locked
    for name in ("clip", "t5", "sd_inpaint", "dino"):
        assert config.towers[name].dtype in ("float32", "bfloat16")
    with pytest.raises(AttributeError, match="global_batch_sise"):
        config.global_batch_sise = 3


def test_paper_setting():
    config = _module(os.path.join(os.path.dirname(CONFIG_FILES[0]), "laion5m.py")).get_config()
    assert config.towers.clip.path == "openai/clip-vit-large-patch14"
    assert config.towers.t5.path == "google/flan-t5-base"
    assert config.towers.sd_inpaint.path == "stable-diffusion-v1-5/stable-diffusion-inpainting"
    assert config.global_batch_size == 256 and config.towers.bundle == ""


def test_config_arguments():
    tiny = _module(os.path.join(os.path.dirname(CONFIG_FILES[0]), "tiny.py"))
    config = tiny.get_config("bundle=/tmp/b,seed=3")
    assert config.towers.bundle == "/tmp/b" and config.seed == 3
    with pytest.raises(ValueError, match="unknown config argument 'sead'"):
        tiny.get_config("sead=3")
    with pytest.raises(ValueError, match="seed='x3' is not a valid int"):
        tiny.get_config("seed=x3")


def test_parse_arg_types():
    args = common.parse_arg("a=2,flag,name=x,r=1", a=1, flag=False, name="", r=0.5)
    assert (args.a, args.flag, args.name, args.r) == (2, True, "x", 1.0)
    with pytest.raises(ValueError, match="needs a value"):
        common.parse_arg("a", a=1)


def test_command_line_override_typo_fails_with_the_key(tmp_path):
    """A launcher's --config.a.b=value override with a typo stops before any work, naming the key."""
    import subprocess
    import sys

    root = os.path.join(os.path.dirname(__file__), "..")
    result = subprocess.run(
        [
            sys.executable,
            "launch/benchmark.py",
            "--config=configs/tiny.py",
            "--config.global_batch_sise=4",
            f"--workdir={tmp_path}",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert 'Did you mean "global_batch_size"' in result.stderr
    assert "towers loaded" not in result.stdout
