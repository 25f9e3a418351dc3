"""The shapes world (regionedit_jax/worlds): where an edit belongs, judged against ground truth on a CPU.

  make shapes          # everything from nothing: records, the world's CLIP, training, evaluation, tables
  python launch/prepare_data.py --source shapes:4000 --out runs/shapes/data
  python -m regionedit_jax.worlds.world_clip --out runs/shapes/clip
  python launch/train.py --config=configs/shapes.py --workdir runs/shapes/train
  --config=configs/shapes.py:ablation=no_struct     # Table 4 ablations, as in laion5m.py
  --config=configs/shapes.py:scales=1               # Eq.3 alone (one scale) instead of 1-2-4
  --config=configs/shapes.py:paper_loss             # Eq.4-11 exactly: no minimal-edit prior, no Eq.8 floor

Towers: the CLIP trained on the world (``root``/clip, the real HF CLIP layout), the tiny random
T5 and DINO of a tiny bundle (``root``/bundle), and the oracle generator, which paints the
target scene inside the mask and re-synthesises whatever else the mask covers.
"""

from regionedit_jax.configs import common


def get_config(arg: str | None = None):
    args = common.parse_arg(
        arg,
        root="runs/shapes",
        seed=0,
        ablation="",
        scales="1-2-4",
        threshold=0.5,
        steps=600,
        batch=32,
        noise=0.02,
        jitter=0.03,
        lr=1e-3,
        area=0.3,
        floor=0.1,
        paper_loss=False,
        image_size=64,
        grid=3,
        max_objects=4,
        fusion="paper",
        pixels=False,
        depth=1,
    )
    config = common.base()
    config.seed = args.seed
    root = args.root.rstrip("/")
    config.towers.bundle = f"{root}/bundle"
    config.towers.clip.path = f"{root}/clip"
    config.towers.t5.path = "{bundle}/t5"
    config.towers.dino.path = "{bundle}/dino"
    config.towers.sd_inpaint.path = "{bundle}/sd_inpaint"
    for name in ("clip", "t5", "sd_inpaint", "dino"):
        config.towers[name].dtype = "float32"
    config.image_size = args.image_size
    config.edit.max_side = args.image_size
    world = dict(image_size=args.image_size, grid=args.grid, max_objects=args.max_objects)
    config.generator = dict(
        name="oracle", num_steps=1, guidance_scale=1.0, oracle=dict(**world, noise=args.noise, jitter=args.jitter)
    )
    try:
        scales = tuple(int(s) for s in args.scales.split("-"))
    except ValueError:
        raise ValueError(
            f"config argument scales={args.scales!r}: give pooling factors joined by '-', "
            "e.g. scales=1-2-4 or scales=1."
        ) from None
    config.region.update(
        num_heads=4, scales=scales, threshold=args.threshold, fusion=args.fusion, pixels=args.pixels, depth=args.depth
    )
    config.describe.captioner = "none"  # the world's captions come with its edits
    config.global_batch_size = args.batch
    config.data.path = f"{root}/data"
    config.train.update(
        num_steps=args.steps, generator_steps=1, log_every=25, checkpoint_every=200, panel_every=200, panel_images=6
    )
    config.optimizer.update(lr=args.lr, warmup_steps=30)
    config.evals = dict(
        shapes=dict(
            type="shapes",
            clip=f"{root}/clip",
            dino=f"{root}/bundle/dino",
            batch_size=32,
            n=350,
            baselines=True,
            split="test",
        )
    )
    # The two changes the shapes world called for (see losses.py); paper_loss turns both off.
    config.loss.update(
        area=0.0 if args.paper_loss else args.area, direction_floor=0.0 if args.paper_loss else args.floor
    )
    common.apply_ablation(config, args.ablation)
    config.lock()
    return config
