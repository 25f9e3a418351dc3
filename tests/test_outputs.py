"""Result files appear whole and are never written through a link."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from regionedit_jax import outputs
from regionedit_jax.evaluators import report as report_lib
from regionedit_jax.evaluators.base import Report


def test_a_link_at_the_name_is_replaced_and_its_target_untouched(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "results.json")
    outputs.write_json(str(out / "results.json"), {"iou": 0.5})
    assert outside.read_text() == "precious"
    assert not os.path.islink(out / "results.json")
    assert json.loads((out / "results.json").read_text()) == {"iou": 0.5}


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "results.md"
    outputs.write_text(str(path), "old")

    def half_then_fail(f):
        f.write(b"new, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        outputs.write_file(str(path), half_then_fail)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.md"]


def test_images_and_permissions(tmp_path):
    outputs.save_image(str(tmp_path / "a" / "x.png"), np.full((4, 5, 3), 200, np.uint8))
    with Image.open(tmp_path / "a" / "x.png") as image:
        assert image.size == (5, 4) and image.getpixel((0, 0)) == (200, 200, 200)
    assert os.stat(tmp_path / "a" / "x.png").st_mode & 0o777 == 0o644 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_evaluation_reports_do_not_follow_links(tmp_path):
    outside = tmp_path / "outside.md"
    outside.write_text("precious")
    folder = tmp_path / "eval"
    folder.mkdir()
    os.symlink(outside, folder / "results.md")
    report = Report(name="x", title="X", metrics={"iou": 0.5}, rows=3, columns=[("iou", "IoU", "↑")], paper={})
    report_lib.write_summary(str(folder), {"x": report})
    assert outside.read_text() == "precious" and "# Evaluation" in (folder / "results.md").read_text()
