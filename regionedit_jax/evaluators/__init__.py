"""Benchmark evaluators, chosen by name: ``config.evals.<name>.type`` in ``EVALUATORS``.

  evaluators = build_all(config.evals)                   # validated here: type and every option
  metrics = evaluators["emu_edit"].run(editor)           # {"clip_dir": ..., "rows": N, "add/clip_dir": ...}
  report = evaluators["emu_edit"].evaluate(editor, workdir="runs/eval/emu_edit", progress=True)
  report = evaluators["emu_edit"].evaluate(predictions="baseline_outputs/")   # another system's images
  report = evaluators["shapes"].evaluate(editor, workdir="runs/eval/shapes")   # the shapes world, with baselines

Each evaluator has the same interface (``base.Evaluator``): ``evaluate(editor=None, *, workdir,
predictions, limit, progress) -> Report`` and ``run(...) -> dict[str, float]``, so a training loop
can call them periodically (without a workdir nothing is written). ``evaluate_config`` is what
``launch/evaluate.py`` runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from regionedit_jax import outputs
from regionedit_jax.evaluators import report
from regionedit_jax.evaluators.base import Evaluator, Example, Report
from regionedit_jax.evaluators.emu_edit import EmuEdit
from regionedit_jax.evaluators.magicbrush import MagicBrush
from regionedit_jax.evaluators.metrics import Scorer
from regionedit_jax.evaluators.shapes import Shapes

EVALUATORS: Mapping[str, type[Evaluator]] = {"emu_edit": EmuEdit, "magicbrush": MagicBrush, "shapes": Shapes}

__all__ = [
    "EVALUATORS",
    "EmuEdit",
    "Evaluator",
    "Example",
    "MagicBrush",
    "Report",
    "Scorer",
    "Shapes",
    "build",
    "build_all",
    "evaluate_config",
]


def _as_dict(spec: Any) -> dict[str, Any]:
    return dict(spec.to_dict()) if hasattr(spec, "to_dict") else dict(spec)


def build(name: str, spec: Any, towers: dict[str, Any] | None = None) -> Evaluator:
    """One evaluator from ``config.evals.<name>`` ({"type": ..., options}); bad types or options fail here."""
    options = _as_dict(spec)
    kind = options.pop("type", None)
    if kind not in EVALUATORS:
        raise ValueError(f"config.evals.{name}.type must be one of {sorted(EVALUATORS)}; got {kind!r}.")
    return EVALUATORS[kind](name=name, towers=towers, **options)


def build_all(evals: Any, towers: dict[str, Any] | None = None) -> dict[str, Evaluator]:
    """Every evaluator of ``config.evals``, in order; ``towers`` ({"clip", "dino"}) are shared if given."""
    built = {name: build(name, spec, towers) for name, spec in _as_dict(evals).items()}
    if not built:
        raise ValueError("config.evals is empty; add at least one evaluator.")
    return built


def evaluate_config(
    config,
    workdir: str,
    *,
    checkpoint: str | None = None,
    predictions: str | None = None,
    limit: int | None = None,
    only: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Report]:
    """Runs ``config.evals`` and writes ``workdir``/<name>/{rows/, results.*, examples.png} and a summary.

    Ours: an Editor is built from ``config`` (and ``checkpoint``). With ``predictions`` no model
    loads: that folder's images are scored instead.
    """
    from regionedit_jax.configs import checks as config_checks

    config_checks.check(config)
    outputs.check_folder(workdir, "--workdir")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit}: must be an integer >= 1 (or left unset for the config's).")
    evaluators = build_all(config.evals)
    if only:
        unknown = sorted(set(only) - set(evaluators))
        if unknown:
            raise ValueError(f"no evaluator named {unknown} in config.evals (it has {sorted(evaluators)}).")
        evaluators = {k: v for k, v in evaluators.items() if k in only}
    for evaluator in evaluators.values():
        evaluator.check_inputs()  # a missing dataset fails here, before any tower loads
    editor = None
    if predictions is None:
        from regionedit_jax import generators
        from regionedit_jax.towers import bundle

        bundle.check_paths(config.towers, ("clip", "t5") + generators.towers_for(config.generator))
    if config.towers.bundle:  # the metric towers may come from the tiny bundle: make sure it exists
        from regionedit_jax.towers import tiny

        tiny.write_bundle(config.towers.bundle, seed=config.seed)
    if predictions is None:
        from regionedit_jax.editor import Editor

        editor = Editor.from_config(config, checkpoint=checkpoint)
    reports = {}
    for name, evaluator in evaluators.items():
        folder = os.path.join(workdir, name)
        reports[name] = evaluator.evaluate(
            editor, workdir=folder, predictions=predictions, limit=limit, progress=progress
        )
        if editor is not None:
            reports[name].info["checkpoint"] = checkpoint or "none: a random region predictor"
        report.write(folder, reports[name])
    report.write_summary(workdir, reports)
    return reports
