"""The paper's main setting: LAION text-image pairs, CLIP ViT-L/14, FLAN-T5-base, SD 1.5 inpainting.

  python launch/train.py --config=configs/laion5m.py --workdir DIR
  --config=configs/laion5m.py:bf16_clip      # CLIP in bfloat16 as well
"""

from configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(arg, bf16_clip=False)
    config = common.base()
    if args.bf16_clip:
        config.towers.clip.dtype = "bfloat16"
    config.lock()
    return config
