"""Train the region predictor.

  python launch/train.py --config=configs/laion5m.py --workdir DIR [--config.data.path=/data/records]
  python launch/train.py --config=configs/tiny.py --workdir runs/tiny      # offline, CPU

Rerunning with the same workdir resumes exactly. Multi-host: set
``--config.distributed.enabled=True`` (SLURM and TPU pods are detected by JAX); see README.
"""

from absl import app, flags, logging

from regionedit_jax import cli

_CONFIG = cli.define_config("configs/tiny.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, TensorBoard logs and panels go here.", required=True)


@cli.one_line_errors
def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax and jax log every step at INFO
    from regionedit_jax.train import loop

    loop.initialize_distributed(_CONFIG.value)
    loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
