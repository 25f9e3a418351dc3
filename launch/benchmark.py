"""Time every frozen tower and a whole edit on a bundled photo (compile and steady state).

  python launch/benchmark.py --config=configs/tiny.py --workdir runs/benchmark
  python launch/benchmark.py --config=configs/laion5m.py --workdir runs/benchmark   # real weights

Prints each tower's output shapes and timings, writes ``workdir/demo.png`` (the photo beside
its VAE reconstruction) and one edit into ``workdir/edit/``.
"""

from absl import app, flags, logging

from regionedit_jax import benchmark, cli

_CONFIG = cli.define_config("configs/tiny.py")
_WORKDIR = flags.DEFINE_string("workdir", "runs/benchmark", "Folder for the outputs.")
_SAMPLE = flags.DEFINE_string("sample", "cat", "Id of the bundled photo (regionedit_jax/data/samples.jsonl).")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax and jax log every step at INFO
    benchmark.run(_CONFIG.value, _WORKDIR.value, sample_id=_SAMPLE.value)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
