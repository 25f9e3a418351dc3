"""``make shapes``: the shapes world from nothing, judged against its ground truth.

  python launch/shapes.py [--root runs/shapes] [--ablations] [--steps N]

Stages (each skipped when its output is complete, so a rerun resumes):
  1. records    --records train edits of the world as training records (root/data)
  2. CLIP       a CLIP trained on the world, in the HF layout, with its zero-shot table (root/clip)
  3. train      configs/shapes.py on the records (root/train)
  4. evaluate   the shapes evaluator on held-out scenes and phrasings, with the baselines (root/eval)
  5. diagnose   which loss term pulls the region where (root/diagnosis.md)
  6. ablations  with --ablations: each loss term removed, the paper's loss, one scale, thresholds
                (root/ablations/<name>, the table in root/ablations.md)
Everything ends in root/README.md: the tables, and links to the pictures.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags, logging

_ROOT = flags.DEFINE_string("root", "runs/shapes", "Output folder of every stage.")
_RECORDS = flags.DEFINE_integer("records", 4000, "Training edits written as records.")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps of the main run (0: the config's).")
_ABLATIONS = flags.DEFINE_bool("ablations", True, "Also train and evaluate the ablations.")
_ABLATION_STEPS = flags.DEFINE_integer("ablation_steps", 100, "Training steps of each ablation (0: as the main run).")
_N = flags.DEFINE_integer("n", 350, "Held-out test edits to evaluate (balanced over the 7 kinds).")
_CLIP_STEPS = flags.DEFINE_integer("clip_steps", 1200, "Training steps of the world's CLIP.")

# name -> (config arguments, what it tests); "threshold" rows re-evaluate the main checkpoint.
ABLATIONS = {
    "full": ("", "the full method, trained for the ablations' steps"),
    "paper loss": ("paper_loss", "Eq.4-11 as written: no minimal-edit prior, Eq.8 without its floor"),
    "no L_sem": ("ablation=no_sem", "Table 4: without Eq.6"),
    "no L_clip": ("ablation=no_clip", "Table 4: without Eq.7"),
    "no L_dir": ("ablation=no_dir", "Table 4: without Eq.8"),
    "no L_struct": ("ablation=no_struct", "Table 4: without Eq.9"),
    "one scale": ("scales=1", "Eq.3 alone instead of scales 1-2-4"),
}
THRESHOLDS = (0.3, 0.7)


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _config(root: str, extra: str = "", steps: int = 0):
    from regionedit_jax.configs import shapes

    arg = ",".join(a for a in (f"root={root}", f"steps={steps}" if steps else "", extra) if a)
    return shapes.get_config(arg)


def _train_and_evaluate(config, workdir: str, *, n: int, baselines: bool) -> dict:
    """Trains in workdir/ (resumes) and evaluates into workdir/eval; returns the flat report."""
    import ml_collections

    from regionedit_jax import evaluators
    from regionedit_jax.train import loop

    loop.train_and_evaluate(config, workdir)
    config = ml_collections.ConfigDict(config.to_dict())
    config.evals.shapes.update(n=n, baselines=baselines)
    report = evaluators.evaluate_config(
        config, os.path.join(workdir, "eval"), checkpoint=os.path.join(workdir, "checkpoints")
    )["shapes"]
    return report


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    root = _ROOT.value.rstrip("/")
    began = time.perf_counter()
    from regionedit_jax.data import annotate
    from regionedit_jax.worlds import diagnose, scenes, world_clip

    _say(f"1/6 records: {_RECORDS.value} train edits of the shapes world -> {root}/data")
    annotate.annotate(
        annotate.Settings(source=f"shapes:{_RECORDS.value}", out=f"{root}/data", max_side=64), progress=True
    )

    clip_dir = f"{root}/clip"
    if world_clip.read_manifest(clip_dir) is None:
        _say(f"2/6 CLIP: training a CLIP on the world -> {clip_dir}")
        summary = world_clip.train(
            clip_dir, scenes.WorldConfig(), steps=_CLIP_STEPS.value, eval_scenes=200, progress=True
        )
    else:
        _say(f"2/6 CLIP: {clip_dir} is already trained")
        summary = world_clip.read_manifest(clip_dir)
    if "zero_shot" in summary:
        print(world_clip.format_table(summary["zero_shot"]))

    config = _config(root, steps=_STEPS.value)
    _say(f"3/6 train + 4/6 evaluate: configs/shapes.py, {config.train.num_steps} steps -> {root}/train")
    main_report = _train_and_evaluate(config, f"{root}/train", n=_N.value, baselines=True)

    _say(f"5/6 diagnose: the straight-through pull of each loss term -> {root}/diagnosis.md")
    with open(f"{root}/diagnosis.md", "w", encoding="utf-8") as f:
        f.write(diagnose.markdown(diagnose.diagnose(config, n=70)) + "\n")

    rows = {"main run": main_report}
    if _ABLATIONS.value:
        steps = _ABLATION_STEPS.value or config.train.num_steps
        for k, (name, (arg, _)) in enumerate(ABLATIONS.items(), 1):
            _say(f"6/6 ablation {k}/{len(ABLATIONS)}: {name} ({steps} steps)")
            slug = name.replace(" ", "_")
            rows[name] = _train_and_evaluate(
                _config(root, arg, steps), f"{root}/ablations/{slug}", n=min(_N.value, 70), baselines=False
            )
        for tau in THRESHOLDS:
            _say(f"6/6 threshold {tau}: the main checkpoint re-evaluated")
            import ml_collections

            from regionedit_jax import evaluators

            cfg = ml_collections.ConfigDict(config.to_dict())
            cfg.evals.shapes.update(n=min(_N.value, 70), baselines=False, threshold=tau)
            rows[f"threshold {tau}"] = evaluators.evaluate_config(
                cfg, f"{root}/ablations/threshold_{tau}", checkpoint=f"{root}/train/checkpoints"
            )["shapes"]
    table = ablation_markdown(rows)
    with open(f"{root}/ablations.md", "w", encoding="utf-8") as f:
        f.write(table + "\n")
    write_summary(root, main_report, table, summary, time.perf_counter() - began)
    _say(f"done in {(time.perf_counter() - began) / 60:.1f} min: {root}/README.md")


def ablation_markdown(rows: dict) -> str:
    """Rows = variants, columns = IoU per kind, mean over local kinds, overall, and the CLIP metrics."""
    from regionedit_jax.worlds import edits

    kinds = list(edits.KINDS)
    head = "| variant | " + " | ".join(kinds) + " | local mean | IoU | CLIPdir | CLIPout | CLIPimg | L1 | area |"
    lines = [
        "## Ablations (IoU with the true edit mask per kind; held-out scenes and phrasings)",
        "",
        head,
        "|---|" + "---|" * (len(kinds) + 7),
    ]
    for name, report in rows.items():
        groups, m = report.groups, report.metrics
        local = sum(groups[k]["iou"] for k in ("local", "texture", "add", "remove")) / 4
        cells = (
            [f"{groups[k]['iou']:.3f}" for k in kinds]
            + [f"{local:.3f}"]
            + [f"{m[k]:.3f}" for k in ("iou", "clip_dir", "clip_out", "clip_img", "l1", "mask_area")]
        )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        *[f"- **{name}**: {why}" for name, (_, why) in ABLATIONS.items()],
        "- **threshold t**: the main checkpoint evaluated with tau = t instead of the trained 0.5",
    ]
    return "\n".join(lines)


def write_summary(root: str, report, ablations: str, clip_summary: dict, seconds: float) -> None:
    from regionedit_jax.evaluators import report as report_lib
    from regionedit_jax.worlds import world_clip

    parts = [
        f"# The shapes world ({seconds / 60:.1f} min)",
        "",
        "Held-out scenes and phrasings; the method and the baselines differ only in the mask.",
        "",
        report_lib.markdown(report),
        "",
        ablations,
        "",
        "## The world's CLIP: zero-shot accuracy on held-out scenes",
        "",
        "```",
        world_clip.format_table(clip_summary["zero_shot"]) if "zero_shot" in clip_summary else "(not measured)",
        "```",
        "",
        "## Diagnosis",
        "",
        open(f"{root}/diagnosis.md", encoding="utf-8").read(),
        "",
        "Pictures: `train/eval/shapes/examples.png` (source | true mask | probability | mask | edited), "
        "`train/panels/`.",
    ]
    with open(f"{root}/README.md", "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    with open(f"{root}/results.json", "w", encoding="utf-8") as f:
        json.dump({"metrics": report.metrics, "groups": report.groups, "seconds": round(seconds, 1)}, f, indent=2)


if __name__ == "__main__":
    sys.exit(app.run(main))
