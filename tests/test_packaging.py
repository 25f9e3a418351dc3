"""Packaging: a non-editable install carries what the package reads at run time (configs, sample list,
assets), and the requirements leave a newer JAX in place."""

import os
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_wheel_carries_configs_samples_and_assets(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), REPO],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = [f for f in os.listdir(tmp_path) if f.endswith(".whl")]
    names = set(zipfile.ZipFile(tmp_path / wheel).namelist())
    for needed in (
        "regionedit_jax/data/samples.jsonl",
        "regionedit_jax/configs/tiny.py",
        "regionedit_jax/configs/common.py",
        "regionedit_jax/towers/assets/t5_corpus.txt",
        "regionedit_jax/generators/oracle.py",
        "regionedit_jax/worlds/render.py",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith("configs/")]  # no top-level package to collide with


def test_requirements_are_lower_bounds_without_torch_transformers_or_diffusers():
    """Installing next to a newer JAX keeps it; run time needs no PyTorch-world library."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    runtime, extras = [], {}
    for line in requires("regionedit_jax"):
        req = Requirement(line)
        extra = [
            m
            for m in ("gpu", "gpu-cuda12", "tpu", "test", "reference")
            if req.marker and req.marker.evaluate({"extra": m})
        ]
        (extras.setdefault(extra[0], []) if extra else runtime).append(req)
    names = {r.name.lower().replace("_", "-"): r for r in runtime}
    assert not {"torch", "transformers", "diffusers"} & set(names)
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "tokenizers", "huggingface-hub"):
        operators = {spec.operator for spec in names[name].specifier}
        assert operators == {">="}, f"{name}: {names[name].specifier}"
    assert {r.name for r in extras["reference"]} == {"torch", "transformers", "diffusers"}
    assert all("jax" == r.name and r.extras for r in extras["gpu"] + extras["tpu"])


def test_towers_load_without_torch_transformers_or_diffusers(tmp_path):
    """Writing the tiny bundle and loading every tower imports none of the PyTorch-world libraries."""
    script = f"""
import sys
from regionedit_jax.towers import clip, dino, sd_inpaint, t5, tiny
bundle = tiny.write_bundle({str(tmp_path / "bundle")!r}, seed=0)
towers = [clip.load(bundle + "/clip"), t5.load(bundle + "/t5"), dino.load(bundle + "/dino")]
sd = sd_inpaint.load(bundle + "/sd_inpaint")
towers[0].tokenize(["a cat"]), towers[1].tokenize(["a cat"]), sd.tokenize(["a cat"])
print(sorted(m for m in ("torch", "transformers", "diffusers") if m in sys.modules))
"""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
