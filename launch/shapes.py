"""``make shapes``: the shapes world from nothing, judged against its ground truth.

  python launch/shapes.py [--root runs/shapes] [--noablations] [--steps N] [--config_arg area=0.3,...]

Records, the world's CLIP, training, evaluation with baselines, diagnosis and ablations
(regionedit_jax/worlds/study.py); each stage is skipped when its output is complete, so a
rerun resumes. Everything ends in ROOT/README.md.
"""

from __future__ import annotations

from absl import app, flags, logging

from regionedit_jax import cli

_ROOT = flags.DEFINE_string("root", "runs/shapes", "Output folder of every stage.")
_RECORDS = flags.DEFINE_integer("records", 4000, "Training edits written as records.")
_CONFIG_ARG = flags.DEFINE_string("config_arg", "", "More configs/shapes.py arguments, e.g. area=0.3,steps=900.")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps of the main run (0: the config's).")
_ABLATIONS = flags.DEFINE_bool("ablations", True, "Also train and evaluate the ablations.")
_ABLATION_STEPS = flags.DEFINE_integer("ablation_steps", 100, "Training steps of each ablation (0: as the main run).")
_N = flags.DEFINE_integer("n", 350, "Held-out test edits to evaluate (balanced over the 7 kinds).")
_CLIP_STEPS = flags.DEFINE_integer("clip_steps", 0, "Training steps of the world's CLIP (0: its default).")


@cli.one_line_errors
def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    from regionedit_jax.worlds import study, world_clip

    study.run(  # Study refuses out-of-range numbers by name
        study.Study(
            root=_ROOT.value,
            records=_RECORDS.value,
            config_arg=_CONFIG_ARG.value,
            steps=_STEPS.value,
            clip_steps=_CLIP_STEPS.value or world_clip.STEPS,
            n=_N.value,
            ablations=_ABLATIONS.value,
            ablation_steps=_ABLATION_STEPS.value,
        )
    )


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
