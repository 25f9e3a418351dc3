"""SD 1.5 inpainting at full size, random weights: load time against reading the files, and one UNet
call and one whole edit against diffusers' PyTorch pipeline.

  python launch/benchmark_full_size.py --parts load
  python launch/benchmark_full_size.py --parts load,torch --steps 50   # torch: pip install -e ".[reference]"

The random folder (about 4.3 GB) is written to --folder once and reused.
"""

from absl import app, flags, logging

from regionedit_jax import benchmark_full_size, cli

_FOLDER = flags.DEFINE_string("folder", "runs/sd15_random", "Where the random SD 1.5 inpainting folder lives.")
_PARTS = flags.DEFINE_list("parts", ["load"], "What to time: load, torch.")
_STEPS = flags.DEFINE_integer("steps", 50, "Sampling steps of the whole edit (torch part).")
_SIZE = flags.DEFINE_integer("size", 512, "Image side in pixels (torch part).")


@cli.one_line_errors
def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    unknown = set(_PARTS.value) - {"load", "torch"}
    if unknown:
        raise ValueError(f"--parts takes load and torch; got {sorted(unknown)}")
    if _STEPS.value < 1 or _SIZE.value < 64 or _SIZE.value % 64:
        raise ValueError(f"--steps must be >= 1 and --size a multiple of 64; got {_STEPS.value} and {_SIZE.value}")
    from regionedit_jax import outputs

    outputs.check_folder(_FOLDER.value, "--folder")
    folder = benchmark_full_size.write_folder(_FOLDER.value)
    if "load" in _PARTS.value:
        benchmark_full_size.time_load(folder)
    if "torch" in _PARTS.value:
        benchmark_full_size.time_against_torch(folder, _STEPS.value, _SIZE.value)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
