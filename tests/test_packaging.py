"""A non-editable install carries what the package reads at run time: configs, sample list, assets."""

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
