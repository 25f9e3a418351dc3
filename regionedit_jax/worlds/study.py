"""The shapes world from nothing, judged against its ground truth (``make shapes``, ``launch/shapes.py``).

Stages, each skipped when its output is complete, so a rerun resumes:
  1. records    train edits of the world as training records (root/data)
  2. CLIP       a CLIP trained on the world, in the HF layout, with its zero-shot table (root/clip)
  3. train      configs/shapes.py on the records (root/train)
  4. evaluate   the shapes evaluator on held-out scenes and phrasings, with the baselines (root/train/eval)
  5. diagnose   which loss term pulls the region where (root/diagnosis.md)
  6. ablations  each loss term removed, the paper's loss, one scale, thresholds
                (root/ablations/<name>, the table in root/ablations.md)
Everything ends in root/README.md and root/results.json. ``Study`` holds every size, so a test
runs the same stages on a small world in a minute.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

from regionedit_jax.worlds import edits, world_clip

# name -> (configs/shapes.py arguments, what it tests); "threshold" rows re-evaluate the main checkpoint.
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
LOCAL_KINDS = edits.LOCAL_KINDS


@dataclasses.dataclass(frozen=True)
class Study:
    """What ``run`` does; the defaults are ``make shapes``."""

    root: str = "runs/shapes"
    records: int = 4000  # training edits written as records
    config_arg: str = ""  # more configs/shapes.py arguments, e.g. "image_size=32,grid=2,batch=16"
    steps: int = 0  # training steps of the main run (0: the config's)
    clip_steps: int = world_clip.STEPS
    clip_batch_size: int = world_clip.BATCH_SIZE
    clip_sizes: world_clip.ClipSizes = world_clip.ClipSizes()
    clip_eval_scenes: int = 200  # held-out scenes of the CLIP's zero-shot table (0: none)
    n: int = 350  # held-out test edits evaluated (balanced over the 7 kinds)
    diagnose: bool = True
    ablations: bool = True
    ablation_steps: int = 100  # training steps of each ablation (0: as the main run)
    ablation_n: int = 70
    progress: bool = True

    def __post_init__(self) -> None:
        minimums = dict(records=1, steps=0, clip_steps=1, clip_batch_size=1, n=1, ablation_steps=0, ablation_n=1)
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}.")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def config_for(study: Study, extra: str = "", steps: int = 0):
    """configs/shapes.py with the study's root, arguments, and ``extra`` on top."""
    from regionedit_jax.configs import shapes

    parts = (f"root={study.root.rstrip('/')}", study.config_arg, f"steps={steps}" if steps else "", extra)
    return shapes.get_config(",".join(p for p in parts if p))


def evaluate(config, workdir: str, checkpoint: str | None, *, progress: bool = True, **options):
    """The shapes evaluator of ``config`` with ``options`` (n, baselines, threshold, ...) on top;
    ``checkpoint`` None evaluates the untrained predictor. Returns the shapes Report."""
    import ml_collections

    from regionedit_jax import evaluators

    config = ml_collections.ConfigDict(config.to_dict())
    config.evals.shapes.update(**options)
    return evaluators.evaluate_config(config, workdir, checkpoint=checkpoint, progress=progress)["shapes"]


def train_and_evaluate(config, workdir: str, *, n: int, baselines: bool, progress: bool = True):
    """Trains in workdir/ (resumes) and evaluates into workdir/eval; returns the shapes Report."""
    from regionedit_jax.train import loop

    loop.train_and_evaluate(config, workdir)
    checkpoint = os.path.join(workdir, "checkpoints")
    return evaluate(config, os.path.join(workdir, "eval"), checkpoint, progress=progress, n=n, baselines=baselines)


def run(study: Study = Study()) -> dict[str, Any]:
    """All stages; returns {"report": the main run's Report, "rows": ablation Reports, "seconds"}."""
    from regionedit_jax.data import annotate
    from regionedit_jax.generators import oracle
    from regionedit_jax.worlds import diagnose

    began = time.perf_counter()
    root = study.root.rstrip("/")
    config = config_for(study, steps=study.steps)
    world_cfg = oracle.world(config.generator.oracle)
    world = {k: getattr(world_cfg, k) for k in ("image_size", "grid", "max_objects")}
    clip_dir = config.towers.clip.path
    clip_summary = world_clip.read_manifest(clip_dir)
    patch = study.clip_sizes.patch_size
    if clip_summary is None and world_cfg.image_size % patch:  # refused before any stage writes
        raise ValueError(f"image_size {world_cfg.image_size} is not a multiple of the CLIP's patch_size {patch}")
    say(f"1/6 records: {study.records} train edits of the shapes world -> {root}/data")
    annotate.annotate(
        annotate.Settings(
            source=f"shapes:{study.records}",
            out=f"{root}/data",
            max_side=world_cfg.image_size,
            source_options=world,
        ),
        progress=study.progress,
    )

    if clip_summary is None:
        say(f"2/6 CLIP: training a CLIP on the world -> {clip_dir}")
        clip_summary = world_clip.train(
            clip_dir,
            world_cfg,
            steps=study.clip_steps,
            batch_size=study.clip_batch_size,
            sizes=study.clip_sizes,
            eval_scenes=study.clip_eval_scenes,
            progress=study.progress,
        )
    else:
        say(f"2/6 CLIP: {clip_dir} is already trained")
    if "zero_shot" in clip_summary:
        print(world_clip.format_table(clip_summary["zero_shot"]))

    say(f"3/6 train + 4/6 evaluate: configs/shapes.py, {config.train.num_steps} steps -> {root}/train")
    report = train_and_evaluate(config, f"{root}/train", n=study.n, baselines=True, progress=study.progress)

    diagnosis = ""
    if study.diagnose:
        say(f"5/6 diagnose: the straight-through pull of each loss term -> {root}/diagnosis.md")
        diagnosis = diagnose.markdown(diagnose.diagnose(config, n=70))
        with open(f"{root}/diagnosis.md", "w", encoding="utf-8") as f:
            f.write(diagnosis + "\n")

    rows = {"main run": report}
    if study.ablations:
        steps = study.ablation_steps or config.train.num_steps
        for k, (name, (arg, _)) in enumerate(ABLATIONS.items(), 1):
            say(f"6/6 ablation {k}/{len(ABLATIONS)}: {name} ({steps} steps)")
            rows[name] = train_and_evaluate(
                config_for(study, arg, steps),
                f"{root}/ablations/{name.replace(' ', '_')}",
                n=min(study.n, study.ablation_n),
                baselines=False,
                progress=study.progress,
            )
        for tau in THRESHOLDS:
            say(f"6/6 threshold {tau}: the main checkpoint re-evaluated")
            rows[f"threshold {tau}"] = evaluate(
                config,
                f"{root}/ablations/threshold_{tau}",
                f"{root}/train/checkpoints",
                progress=study.progress,
                n=min(study.n, study.ablation_n),
                baselines=False,
                threshold=tau,
            )
    table = ablation_markdown(rows)
    with open(f"{root}/ablations.md", "w", encoding="utf-8") as f:
        f.write(table + "\n")
    seconds = time.perf_counter() - began
    write_summary(root, report, table, clip_summary, diagnosis, seconds)
    say(f"done in {seconds / 60:.1f} min: {root}/README.md")
    return {"report": report, "rows": rows, "seconds": seconds}


def local_mean(report) -> float:
    """Mean IoU over the local kinds (local, texture, add, remove) of a shapes Report."""
    return sum(report.groups[k]["iou"] for k in LOCAL_KINDS) / len(LOCAL_KINDS)


def ablation_markdown(rows: dict) -> str:
    """Rows = variants, columns = IoU per kind, mean over local kinds, overall, and the CLIP metrics."""
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
        cells = (
            [f"{groups[k]['iou']:.3f}" for k in kinds]
            + [f"{local_mean(report):.3f}"]
            + [f"{m[k]:.3f}" for k in ("iou", "clip_dir", "clip_out", "clip_img", "l1", "mask_area")]
        )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        *[f"- **{name}**: {why}" for name, (_, why) in ABLATIONS.items() if name in rows],
        "- **threshold t**: the main checkpoint evaluated with tau = t instead of the trained 0.5",
    ]
    return "\n".join(lines)


def write_summary(root: str, report, ablations: str, clip_summary: dict, diagnosis: str, seconds: float) -> None:
    from regionedit_jax.evaluators import report as report_lib

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
        diagnosis or "(not run)",
        "",
        "Pictures: `train/eval/shapes/examples.png` (source | true mask | probability | mask | edited), "
        "`train/panels/`.",
    ]
    with open(f"{root}/README.md", "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    with open(f"{root}/results.json", "w", encoding="utf-8") as f:
        summary = {
            "metrics": report.metrics,
            "groups": report.groups,
            "local_mean_iou": local_mean(report),
            "seconds": round(seconds, 1),
        }
        json.dump(summary, f, indent=2)
