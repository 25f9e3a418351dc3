"""Evaluate on Emu Edit or MagicBrush (DESIGN §2), or score another system's outputs with the same code.

  python launch/evaluate.py --config=configs/eval_emu.py --workdir runs/eval_emu --checkpoint CKPT
  python launch/evaluate.py --config=configs/eval_magicbrush.py:dataset=DIR,protocol=single --workdir runs/mb
  python launch/evaluate.py --config=configs/eval_emu.py:bundle=runs/tiny_bundle,dataset=DIR --workdir runs/e --limit 8
  python launch/evaluate.py --config=configs/eval_emu.py --workdir runs/baseline --predictions FOLDER

Writes WORKDIR/<name>/{rows/, results.json, results.md, examples.png} per evaluator of
``config.evals`` and WORKDIR/results.{json,md} for all. Rerunning skips the rows already in rows/.
"""

from absl import app, flags, logging

from regionedit_jax import cli

_CONFIG = cli.define_config("configs/eval_emu.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (per-row outputs are cached there).", required=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Trained checkpoint folder (default: random region).")
_PREDICTIONS = flags.DEFINE_string("predictions", None, "Score this folder of another system's images instead.")
_LIMIT = flags.DEFINE_integer("limit", None, "Score only the first N rows (default: the config's limit).")
_ONLY = flags.DEFINE_list("only", None, "Run only these evaluators of config.evals.")


@cli.one_line_errors
def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    from regionedit_jax import evaluators

    reports = evaluators.evaluate_config(
        _CONFIG.value,
        _WORKDIR.value,
        checkpoint=_CHECKPOINT.value,
        predictions=_PREDICTIONS.value,
        limit=_LIMIT.value,
        only=_ONLY.value,
    )
    for name, report in reports.items():
        values = ", ".join(f"{label} {report.metrics[key]:.4f}" for key, label, _ in report.columns)
        print(f"{name}: {report.rows} rows: {values}")
    print(f"wrote {_WORKDIR.value}/results.md")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
