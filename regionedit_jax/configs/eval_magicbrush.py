"""MagicBrush evaluation (DESIGN §2): L1, L2, CLIP-I, DINO against the ground truth, single- and multi-turn.

  python launch/evaluate.py --config=configs/eval_magicbrush.py:dataset=DIR --workdir runs/eval_mb --checkpoint CKPT
  --config=configs/eval_magicbrush.py:protocol=single            # one protocol ("single", "multi"; default both)
  --config=configs/eval_magicbrush.py:clip=openai/clip-vit-large-patch14   # CLIP-I with ViT-L/14 instead
  --config=configs/eval_magicbrush.py:bundle=runs/tiny_bundle,dataset=DIR  # tiny random towers (CPU, tests)

CLIP-I uses ViT-B/32 by default, as MagicBrush's own script does. The hub copy
(``osunlp/MagicBrush``) has splits train and dev; the test set is a separate download, to be
converted into the same schema (img_id, turn_index, source_img, mask_img, instruction, target_img).
MagicBrush has no captions: the Editor's describers (``config.describe``) write them.
"""

import ml_collections

from regionedit_jax.configs import common
from regionedit_jax.configs.eval_emu import metric_towers, model_config

PROTOCOLS = {"single": ("single",), "multi": ("multi",), "both": ("single", "multi")}


def get_config(arg: str | None = None):
    args = common.parse_arg(
        arg,
        bundle="",
        dataset="osunlp/MagicBrush",
        split="test",
        batch_size=8,
        seed=0,
        limit=0,
        clip="openai/clip-vit-base-patch32",
        protocol="both",
        examples=6,
    )
    if args.protocol not in PROTOCOLS:
        raise ValueError(f"config argument protocol must be one of {sorted(PROTOCOLS)}; got {args.protocol!r}.")
    config = model_config(args.bundle, args.seed)
    config.evals = ml_collections.ConfigDict(
        {
            f"magicbrush_{p}": dict(
                type="magicbrush",
                protocol=p,
                dataset=args.dataset,
                split=args.split,
                batch_size=args.batch_size,
                seed=args.seed,
                limit=args.limit,
                dtype="float32",
                examples=args.examples,
                **metric_towers(args.bundle, args.clip),
            )
            for p in PROTOCOLS[args.protocol]
        }
    )
    config.lock()
    return config
