"""CPU-sized config on the tiny random tower bundle and the bundled sample photos (offline).

  --config=configs/tiny.py                      # bundle in runs/tiny_bundle, seed 0
  --config=configs/tiny.py:bundle=DIR,seed=3    # another place / another random bundle
  --config=configs/tiny.py:ablation=no_dir      # Table 4 ablations, as in laion5m.py

Training data: ``python launch/prepare_data.py --source samples --out runs/tiny_data``.
"""

from regionedit_jax.configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, bundle="runs/tiny_bundle", data="runs/tiny_data", seed=0, ablation="")
    config = common.base()
    config.seed = args.seed
    config.towers.bundle = args.bundle
    for name in ("clip", "t5", "sd_inpaint", "dino"):
        config.towers[name].update(path=f"{{bundle}}/{name}", dtype="float32")
    config.image_size = 32
    config.edit.max_side = 32
    config.region.num_heads = 4
    config.generator.num_steps = 4
    config.global_batch_size = 8
    config.data.path = args.data
    config.train.update(num_steps=30, generator_steps=2, log_every=5, checkpoint_every=10, panel_every=10)
    config.optimizer.update(lr=1e-3, warmup_steps=3)
    config.mesh.update(data=-1, fsdp=1)
    common.apply_ablation(config, args.ablation)
    config.lock()
    return config
