"""Periodic evaluators in the training loop: built from config.evals, run on the current params."""

import os

import jax
import ml_collections
import pytest
from test_evaluators import emu_copy

from regionedit_jax.train import loop


def test_periodic_evaluation_reports_benchmark_metrics(
    tiny_config, tiny_bundle, clip_tower, t5_tower, sd_tower, editor, tmp_path
):
    config = ml_collections.ConfigDict(tiny_config.to_dict())
    config.evals = ml_collections.ConfigDict(
        {
            "emu_edit": dict(
                type="emu_edit",
                dataset=emu_copy(str(tmp_path / "emu")),
                split="test",
                batch_size=2,
                limit=2,
                clip=os.path.join(tiny_bundle, "clip"),
                dino=os.path.join(tiny_bundle, "dino"),
            )
        }
    )
    towers = {"clip": clip_tower, "t5": t5_tower, "sd_inpaint": sd_tower}
    lines = []
    run = loop._periodic_evaluation(config, towers, editor.params, lines.append)
    out = run(jax.tree_util.tree_map(lambda x: x * 1.0, editor.params))
    assert {"eval/emu_edit/clip_dir", "eval/emu_edit/l1", "eval/emu_edit/dino"} <= set(out)
    assert all(isinstance(v, float) for v in out.values()) and lines


def test_bad_evals_config_fails_before_training(tiny_config, clip_tower, t5_tower, sd_tower, editor):
    config = ml_collections.ConfigDict(tiny_config.to_dict())
    config.evals = ml_collections.ConfigDict({"emu": dict(type="emu_edits")})
    towers = {"clip": clip_tower, "t5": t5_tower, "sd_inpaint": sd_tower}
    with pytest.raises(ValueError, match="emu_edits"):
        loop._periodic_evaluation(config, towers, editor.params, print)
    assert loop._periodic_evaluation(tiny_config, towers, editor.params, print) is None
