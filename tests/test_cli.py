"""Every command answers bad input in one line with exit code 2, before any model loads.

The corpus runs each launch/ script on a bad value in a fresh folder and asserts the exit
code, the one-line message (no traceback) and that nothing but the named output appeared.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from regionedit_jax import cli
from regionedit_jax.configs import checks, eval_emu, eval_magicbrush, laion5m, shapes, tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ the wrapper and the checks


def run_wrapped(error: BaseException):
    def main(argv):
        raise error

    return cli.one_line_errors(main)([])


def test_known_errors_are_one_line_with_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_wrapped(ValueError("first line\n  second line"))
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: first line second line\n"
    with pytest.raises(SystemExit) as exit_:
        run_wrapped(FileNotFoundError("no such folder: x"))
    assert exit_.value.code == 2


def test_unexpected_errors_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        run_wrapped(ZeroDivisionError("a bug"))


def test_interrupt_exits_130(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_wrapped(KeyboardInterrupt())
    assert exit_.value.code == 130 and capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize("module", [tiny, laion5m, shapes, eval_emu, eval_magicbrush])
def test_every_bundled_config_passes_the_checks(module):
    checks.check(module.get_config())


@pytest.mark.parametrize(
    "key, bad",
    [
        ("train.num_steps", 0),
        ("train.num_steps", -5),
        ("train.log_every", 0),
        ("global_batch_size", 0),
        ("optimizer.lr", math.nan),
        ("optimizer.lr", math.inf),
        ("optimizer.lr", 0.0),
        ("region.threshold", 1.0),
        ("region.threshold", -0.1),
        ("generator.guidance_scale", math.nan),
        ("generator.guidance_scale", -1.0),
        ("loss.area", math.inf),
        ("train.keep_checkpoints", True),
    ],
)
def test_bad_numbers_name_the_key_and_the_range(key, bad):
    config = tiny.get_config().unlock()
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = bad
    with pytest.raises(ValueError, match="^" + re.escape(key) + "=.*: must be "):
        checks.check(config)


def test_bad_region_scales():
    config = tiny.get_config().unlock()
    config.region.scales = ()
    with pytest.raises(ValueError, match="region.scales"):
        checks.check(config)


# --------------------------------------------------------------------- the commands themselves

CASES = [
    ("train.py", ["--config.train.num_steps=0"], "train.num_steps=0: must be an integer >= 1"),
    ("train.py", ["--config.optimizer.lr=nan"], "optimizer.lr=nan: must be a finite number > 0"),
    ("train.py", ["--config.region.threshold=1.5"], "region.threshold=1.5"),
    ("train.py", ["--config.data.path={tmp}/missing"], "no *.array_record shards"),
    ("train.py", ["--config.train.init_checkpoint={tmp}/missing"], "checkpoint folder"),
    (
        "train.py",
        ["--config.region.widht=3"],
        "--config.region.widht: the config has no key 'widht'. Did you mean \"width\"",
    ),
    (
        "train.py",
        ["--config=configs/tiny.py", "--config.trian.num_steps=2"],
        "--config.trian.num_steps: the config has no key 'trian'. Did you mean \"train\"",
    ),
    ("train.py", ["--config.train.num_steps=abc"], "--config.train.num_steps=abc: invalid literal"),
    ("train.py", ["--config=configs/missing.py"], "configs/missing.py"),
    ("train.py", ["--bogus=1"], "Unknown command line flag 'bogus'"),
    ("evaluate.py", ["--config.evals.emu_edit.limt=3"], "the config has no key 'limt'"),
    ("edit.py", ["--config.trian.num_steps=1"], "the config has no key 'trian'. Did you mean \"train\""),
    ("train.py", ["--workdir={tmp}/file"], "--workdir '{tmp}/file' exists and is not a folder"),
    ("evaluate.py", ["--workdir={tmp}/file/eval"], "is a file, so the folder cannot be made"),
    ("prepare_data.py", ["--source=samples", "--out={tmp}/file"], "--out '{tmp}/file' exists and is not a folder"),
    ("prepare_data.py", [], "give --source"),
    ("benchmark_full_size.py", ["--parts=lod"], "--parts takes load and torch; got ['lod']"),
    ("serve.py", ["--port=80"], "--port 80: must be between 1024 and 65535"),
    ("serve.py", ["--out={tmp}/file"], "--out '{tmp}/file' exists and is not a folder"),
    ("benchmark_full_size.py", ["--steps=0"], "--steps must be >= 1"),
    ("benchmark_full_size.py", ["--folder={tmp}/file"], "--folder '{tmp}/file' exists and is not a folder"),
    ("prepare_data.py", ["--source=samples", "--max_side=0"], "--max_side 0: must be an integer >= 8"),
    ("prepare_data.py", ["--source=samples", "--limit=-1"], "--limit -1: must be an integer >= 1, or unset"),
    ("prepare_data.py", ["--source=jsonl:{tmp}/file"], "no records were written: 1 input pairs, rejected as"),
    ("edit.py", ["--image=sample:cat", "--instruction=add a hat", "--seed=99999999999"], "--seed 99999999999"),
    ("edit.py", ["--image=sample:cat", "--instruction=add a \x01 hat"], "holds control characters"),
    ("edit.py", ["--image=sample:cat", "--instruction=" + "x" * 400], "at most 300"),
    ("edit.py", ["--image=sample:cat", "--instruction=add a hat", "--target_caption="], "target caption is empty"),
    ("edit.py", ["--image=sample:cat", "--instruction=add a hat", "--out={tmp}/file"], "exists and is not a folder"),
    ("edit.py", ["--image={tmp}", "--instruction=add a hat"], "is a folder, not an image file"),
    ("prepare_data.py", ["--source=jsonl:{tmp}/missing.jsonl"], "not found"),
    ("prepare_data.py", ["--source=bogus:x"], "unknown source spec 'bogus:x'"),
    ("evaluate.py", ["--limit=0"], "limit=0: must be an integer >= 1"),
    ("evaluate.py", ["--config=configs/eval_emu.py:dataset={tmp}/missing"], "Emu Edit dataset folder"),
    ("evaluate.py", ["--config=configs/eval_magicbrush.py:dataset={tmp}/missing"], "MagicBrush dataset folder"),
    ("edit.py", ["--image=sample:cat", "--instruction=add a hat", "--guidance=nan"], "--guidance nan"),
    ("edit.py", ["--image=sample:cat", "--instruction=add a hat", "--threshold=0"], "--threshold 0"),
    ("edit.py", ["--image=sample:cat", "--instruction=add a hat", "--batch_size=0"], "--batch_size 0"),
]
OUT_FLAG = {
    "train.py": "--workdir",
    "prepare_data.py": "--out",
    "evaluate.py": "--workdir",
    "edit.py": "--out",
    "serve.py": "--out",
    "benchmark_full_size.py": "--folder",
}


@pytest.mark.parametrize("script, args, message", CASES, ids=[f"{c[0]}:{' '.join(c[1])}" for c in CASES])
def test_bad_input_is_one_line_and_touches_nothing_else(tmp_path, script, args, message):
    args, message = [a.format(tmp=tmp_path) for a in args], message.format(tmp=tmp_path)
    (tmp_path / "file").write_text("a file where a folder is named")
    if not any(a.startswith(OUT_FLAG[script] + "=") for a in args):
        args.append(f"{OUT_FLAG[script]}={tmp_path / 'out'}")
    before = set(os.listdir(tmp_path))
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch", script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert set(os.listdir(tmp_path)) - before <= {"out"}
    assert (tmp_path / "file").read_text() == "a file where a folder is named"


def test_edit_refuses_a_corrupt_checkpoint_before_any_tower_loads(tmp_path):
    import jax.numpy as jnp

    from regionedit_jax import checkpoints

    folder = str(tmp_path / "checkpoints")
    checkpoints.save_params(folder, 4, {"region": {"w": jnp.arange(500.0)}})
    step_dir = os.path.join(folder, "4")
    biggest = max((os.path.join(p, n) for p, _, names in os.walk(step_dir) for n in names), key=os.path.getsize)
    data = bytearray(open(biggest, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(biggest, "wb").write(data)
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "launch", "edit.py"),
            "--image=sample:cat",
            "--instruction=add a hat",
            f"--checkpoint={folder}",
            f"--out={tmp_path / 'out'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert re.search(
        r"^error: checkpoint .*checkpoints/4 is corrupt: .* changed \(SHA-256 differs\); no other step",
        result.stderr,
        re.M,
    )
    assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "out")


def test_edit_batch_with_no_editable_row_names_each_line(tmp_path):
    (tmp_path / "edits.jsonl").write_text(
        '{"image": "sample:cat"}\nnot json\n{"image": "sample:cat", "instruction": " "}\n'
    )
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch", "edit.py"), f"--batch={tmp_path / 'edits.jsonl'}"]
        + [f"--out={tmp_path / 'out'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.startswith(
        'error: no row of the batch can be edited: line 1: each line needs "image" and "instruction"; '
        "line 2: not JSON (Expecting value); line 3: the instruction is empty"
    ), result.stderr
    assert not os.path.exists(tmp_path / "out")
