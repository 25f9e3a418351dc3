"""The paper's main setting: LAION text-image pairs, CLIP ViT-L/14, FLAN-T5-base, SD 1.5 inpainting.

python launch/train.py --config=configs/laion5m.py --workdir DIR --config.data.path=/data/records
--config=configs/laion5m.py:pairs=1_000_000       # Table 2 data scale (1M..5M pairs, one epoch)
--config=configs/laion5m.py:ablation=no_struct    # Table 4 (no_sem, no_clip, no_dir, no_struct)
--config=configs/laion5m.py:bf16_clip             # CLIP in bfloat16 as well
"""

from regionedit_jax.configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, pairs=5_000_000, epochs=1, ablation="", bf16_clip=False)
    config = common.base()
    config.train.num_steps = max(1, args.pairs * args.epochs // config.global_batch_size)
    common.apply_ablation(config, args.ablation)
    if args.bf16_clip:
        config.towers.clip.dtype = "bfloat16"
    config.lock()
    return config
