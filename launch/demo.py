"""Offline demo of what exists so far: tiny towers, a real bundled photo, an instruction.

  python launch/demo.py --config=configs/tiny.py --workdir runs/demo

Writes (or reuses) the tiny tower bundle, encodes a bundled photo with CLIP, its
caption with CLIP and an instruction with T5, round-trips the photo through the SD VAE
and runs one inpainting UNet call; prints shapes and timings and saves a picture of the
source beside its VAE reconstruction to ``workdir/demo.png``.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from regionedit_jax import demo

_CONFIG = config_flags.DEFINE_config_file("config", "configs/tiny.py", "Config file (path[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Folder for the demo's outputs.")
_SAMPLE = flags.DEFINE_string("sample", "cat", "Id of the bundled photo (data/samples.jsonl).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax and jax log every step at INFO
    demo.run(_CONFIG.value, _WORKDIR.value, sample_id=_SAMPLE.value)


if __name__ == "__main__":
    app.run(main)
