"""Emu Edit test set evaluation (DESIGN §2): CLIPdir, CLIPout, L1, CLIPimg, DINO overall and per task.

  python launch/evaluate.py --config=configs/eval_emu.py --workdir runs/eval_emu --checkpoint CKPT
  --config=configs/eval_emu.py:dataset=data/emu_edit_test_set    # a local copy (parquet under data/ or save_to_disk)
  --config=configs/eval_emu.py:bundle=runs/tiny_bundle,dataset=DIR  # tiny random towers (CPU, tests)
  --predictions FOLDER                                           # score another system's <idx>.png images

The model is the paper's setting (``common.base()``; with ``bundle`` the tiny config). The
metrics use CLIP ViT-L/14 and DINO ViT-S/16, or the bundle's towers with ``bundle``.
"""

import os

import ml_collections

from regionedit_jax.configs import common


def model_config(bundle: str, seed: int) -> ml_collections.ConfigDict:
    """The Editor's config, unlocked: the paper's setting, or configs/tiny.py on ``bundle``."""
    if bundle:
        from regionedit_jax.configs import tiny

        config = tiny.get_config(f"bundle={bundle},seed={seed}")
        config.unlock()
    else:
        config = common.base()
        config.seed = seed
    return config


def metric_towers(bundle: str, clip: str) -> dict[str, str]:
    """The CLIP and DINO used by the metrics: ``clip`` and DINO ViT-S/16, or the bundle's."""
    if bundle:
        return dict(clip=os.path.join(bundle, "clip"), dino=os.path.join(bundle, "dino"))
    return dict(clip=clip, dino="facebook/dino-vits16")


def get_config(arg: str | None = None):
    args = common.parse_arg(
        arg,
        bundle="",
        dataset="facebook/emu_edit_test_set",
        split="test",
        batch_size=8,
        seed=0,
        limit=0,
        clip="openai/clip-vit-large-patch14",
        examples=6,
    )
    config = model_config(args.bundle, args.seed)
    config.evals = ml_collections.ConfigDict(
        {
            "emu_edit": dict(
                type="emu_edit",
                dataset=args.dataset,
                split=args.split,
                batch_size=args.batch_size,
                seed=args.seed,
                limit=args.limit,
                dtype="float32",
                examples=args.examples,
                **metric_towers(args.bundle, args.clip),
            )
        }
    )
    config.lock()
    return config
