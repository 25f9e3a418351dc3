"""CPU-sized config on the tiny random tower bundle and the bundled sample photos (offline).

  --config=configs/tiny.py                      # bundle in runs/tiny_bundle, seed 0
  --config=configs/tiny.py:bundle=DIR,seed=3    # another place / another random bundle
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, bundle="runs/tiny_bundle", seed=0)
    config = common.base()
    config.seed = args.seed
    config.towers.bundle = args.bundle
    for name in ("clip", "t5", "sd_inpaint", "dino"):
        config.towers[name].dtype = "float32"
    config.image_size = 32
    config.region.num_heads = 4
    config.sampler.num_steps = 4
    config.global_batch_size = 8
    config.lock()
    return config
