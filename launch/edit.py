"""Edit images by instruction.

  python launch/edit.py --image photo.jpg --instruction "replace the cookies with candles" \
      --out runs/edit [--config=configs/laion5m.py] [--checkpoint WORKDIR/checkpoints] \
      [--seed 0 --steps 50 --guidance 7.5 --threshold 0.5] [--source_caption ... --target_caption ...] \
      [--mask mask.png]
  python launch/edit.py --batch edits.jsonl --out runs/edits   # {"image": ..., "instruction": ...} per line

Writes edited.png, mask.png, overlay.png and result.json (per row for a batch).
"""

from absl import app, flags, logging

from regionedit_jax import cli

_CONFIG = cli.define_config("configs/tiny.py")
_IMAGE = flags.DEFINE_string("image", None, "Image to edit (a path, or sample:ID for a bundled photo).")
_INSTRUCTION = flags.DEFINE_string("instruction", None, "What to change.")
_BATCH = flags.DEFINE_string("batch", None, "JSONL file of edits instead of --image/--instruction.")
_OUT = flags.DEFINE_string("out", "runs/edit", "Output folder.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Trained checkpoint folder (default: random region).")
_SEED = flags.DEFINE_integer("seed", 0, "Generator noise seed.")
_STEPS = flags.DEFINE_integer("steps", None, "Generator steps (default: config.generator.num_steps).")
_GUIDANCE = flags.DEFINE_float("guidance", None, "Classifier-free guidance scale.")
_THRESHOLD = flags.DEFINE_float("threshold", None, "Region threshold tau.")
_SOURCE = flags.DEFINE_string("source_caption", None, "Describe the source yourself.")
_TARGET = flags.DEFINE_string("target_caption", None, "Describe the target yourself.")
_MASK = flags.DEFINE_string("mask", None, "Repaint this region (image of the source's size) instead.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 4, "Images per compiled call in --batch mode.")


@cli.one_line_errors
def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax and jax log every step at INFO
    from regionedit_jax import edit_cli, outputs
    from regionedit_jax.editor import Editor

    settings = dict(
        seed=_SEED.value,
        num_steps=_STEPS.value,
        guidance_scale=_GUIDANCE.value,
        threshold=_THRESHOLD.value,
        batch_size=_BATCH_SIZE.value,
    )
    edit_cli.check_settings(**settings)
    if _BATCH.value:
        rows, bad = edit_cli.read_batch(_BATCH.value)
        bad += edit_cli.validate(rows)
        rows = [r for r in rows if r["index"] not in {b["index"] for b, _ in bad}]
    elif _IMAGE.value and _INSTRUCTION.value is not None:
        row = {"image": _IMAGE.value, "instruction": _INSTRUCTION.value}
        for key, flag in (("source_caption", _SOURCE), ("target_caption", _TARGET), ("mask", _MASK)):
            if flag.value is not None:
                row[key] = flag.value
        rows, bad = [row], []
        if reason := edit_cli.row_problem(row):
            raise ValueError(reason)
    else:
        raise ValueError("give --image and --instruction, or --batch FILE.jsonl.")
    if not rows:
        raise ValueError("no row of the batch can be edited: " + edit_cli.listed(bad))
    outputs.check_folder(_OUT.value, "--out")
    editor = Editor.from_config(_CONFIG.value, checkpoint=_CHECKPOINT.value)
    entries = edit_cli.run(editor, rows, _OUT.value, bad=bad, **settings)
    summary = edit_cli.failure_summary(entries, _OUT.value)
    if summary:
        raise ValueError(summary)
    print(f"wrote {len(entries)} edit(s) to {_OUT.value}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
