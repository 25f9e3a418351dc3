"""Checkpoint seals: every saved file's SHA-256, checked before a step is restored."""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pytest

from regionedit_jax import checkpoints


def tree(scale: float = 1.0):
    return {"region": {"w": jnp.arange(600.0).reshape(6, 100) * scale}, "projector": {"b": jnp.ones(3) * scale}}


@pytest.fixture
def folder(tmp_path) -> str:
    """Steps 1 and 2 saved (and sealed) by save_params; step 2 holds tree(2)."""
    directory = str(tmp_path / "checkpoints")
    checkpoints.save_params(directory, 1, tree(1.0))
    checkpoints.save_params(directory, 2, tree(2.0))
    return directory


def data_files(step_dir: str) -> list[str]:
    files = [os.path.join(p, n) for p, _, names in os.walk(step_dir) for n in names if n != checkpoints.MANIFEST]
    return sorted(files, key=os.path.getsize)


def flip_a_byte(path: str) -> None:
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(data)


def test_every_saved_file_is_sealed_and_an_untouched_step_verifies(folder):
    sealed = set(checkpoints._digests(checkpoints.step_folder(folder, 2)))
    assert sealed == {os.path.relpath(f, os.path.join(folder, "2")) for f in data_files(os.path.join(folder, "2"))}
    assert checkpoints.verify(folder, 1) == [] and checkpoints.verify(folder, 2) == []
    params, step = checkpoints.restore_params(folder, tree())
    assert step == 2 and float(params["region"]["w"][0, 1]) == 2.0


def test_a_flipped_byte_is_refused_by_name_with_the_newest_intact_step(folder):
    corrupt = data_files(os.path.join(folder, "2"))[-1]  # the largest file: array data
    flip_a_byte(corrupt)
    problems = checkpoints.verify(folder, 2)
    assert problems == [f"{os.path.relpath(corrupt, os.path.join(folder, '2'))} changed (SHA-256 differs)"]
    with pytest.raises(ValueError, match=r"checkpoints/2 is corrupt: .* changed .*newest intact step is 1: pass .*/1"):
        checkpoints.restore_params(folder, tree())
    # The step folder the message names is accepted and selects that step.
    params, step = checkpoints.restore_params(os.path.join(folder, "1"), tree())
    assert step == 1 and float(params["region"]["w"][0, 1]) == 1.0


def test_missing_and_added_files_are_named(folder):
    step_dir = os.path.join(folder, "2")
    removed = data_files(step_dir)[0]
    os.remove(removed)
    open(os.path.join(step_dir, "params", "stray"), "w").write("x")
    problems = checkpoints.verify(folder, 2)
    assert f"{os.path.relpath(removed, step_dir)} is missing" in problems
    assert "params/stray was not saved with the step" in problems


def test_an_unsealed_step_is_unverified_not_corrupt(folder):
    os.remove(os.path.join(folder, "2", checkpoints.MANIFEST))
    assert checkpoints.verify(folder, 2) is None
    params, step = checkpoints.restore_params(folder, tree())
    assert step == 2
    np.testing.assert_array_equal(np.asarray(params["projector"]["b"]), np.full(3, 2.0))


def test_a_damaged_seal_is_a_problem(folder):
    open(os.path.join(folder, "2", checkpoints.MANIFEST), "w").write("{not json")
    assert checkpoints.verify(folder, 2) == [f"{checkpoints.MANIFEST} is unreadable (JSONDecodeError)"]


def test_choose_step_names_missing_folders_and_steps(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoints.choose_step(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"has steps \[1, 2\], not 5"):
        checkpoints.choose_step(folder, 5)
    assert checkpoints.choose_step(folder) == 2


def test_an_unsealed_damaged_step_is_one_clear_error(folder):
    os.remove(os.path.join(folder, "2", checkpoints.MANIFEST))
    biggest = data_files(os.path.join(folder, "2"))[-1]
    open(biggest, "wb").write(open(biggest, "rb").read()[:20])
    with pytest.raises(ValueError, match=r"checkpoints/2 cannot be read \(.*\); its files are damaged \(it has no"):
        checkpoints.restore_params(folder, tree())


def test_a_file_named_as_the_checkpoint_folder(tmp_path):
    (tmp_path / "ckpt").write_text("not a folder")
    with pytest.raises(ValueError, match="is a file; pass a training workdir's checkpoints/ folder"):
        checkpoints.choose_step(str(tmp_path / "ckpt"))
