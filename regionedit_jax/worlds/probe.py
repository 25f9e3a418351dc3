"""The supervised probe: the region predictor trained on the world's TRUE masks.

It measures the ceiling the predictor's inputs and architecture allow, apart from the method's
training signal: the same ``config.region`` predictor, on the same inputs (the world CLIP's
patch tokens, optionally each patch's pixels, the T5 instruction tokens), fitted to the true
edit masks with BCE + dice. If the probe grounds instructions and the method does not, the
method's losses are what limit it; if neither does, the inputs are.

  python -m regionedit_jax.worlds.probe --config=configs/shapes.py:fusion=decoder,pixels=True,depth=2,scales=1
  python launch/train.py --config=configs/shapes.py:fusion=decoder,pixels=True,depth=2,scales=1 \
      --config.train.init_checkpoint=runs/shapes/probe/checkpoint     # the method from the fitted predictor

The inputs of ``examples`` train edits are computed once (frozen towers), then batches are drawn
from them; the IoU curve on held-out test edits is printed and written to ``--out``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from regionedit_jax import region as region_lib
from regionedit_jax.generators import oracle
from regionedit_jax.worlds import edits, render, scenes


def build(config):
    """(model, frozen towers) of ``config`` (the shapes world's: oracle generator, world CLIP, T5)."""
    from regionedit_jax.model import RegionEditModel
    from regionedit_jax.towers import bundle

    towers = bundle.load(config.towers, ("clip", "t5"), seed=config.seed)
    model = RegionEditModel.from_towers(towers, config)
    return model, {"clip": towers["clip"].params, "t5": towers["t5"].params}


def features(model, frozen, config, split: str, n: int, chunk: int = 50, progress: bool = False) -> dict[str, Any]:
    """The predictor's inputs and the truth of edits 0..n-1 of ``split``:
    inputs [n, N, D'], text [n, L, d_t], text_mask [n, L], truth [n, S, S] bool, edits."""
    options = config.generator.oracle
    world = oracle.world(options)
    encode = jax.jit(lambda images: model.region_inputs(model.encode_source(frozen, images).patches, images))
    text = jax.jit(lambda ids, mask: model.t5.encode(frozen["t5"], ids, mask))
    out = {k: [] for k in ("inputs", "text", "text_mask", "truth")}
    all_edits = []
    from tqdm import tqdm

    for start in tqdm(range(0, n, chunk), desc=f"{split} inputs", unit="chunk", disable=not progress):
        batch = [edits.example(split, i, config.seed, world) for i in range(start, min(n, start + chunk))]
        tokens = np.stack([scenes.encode(e.source, world) for e in batch])
        key = jax.random.key(start + (0 if split == "train" else 1 << 20))
        images = render.render(tokens, key, world, noise=options.noise, jitter=options.jitter)
        ids, mask = model.t5.tokenize([e.instruction for e in batch])
        out["inputs"].append(np.asarray(encode(images), np.float16))
        out["text"].append(np.asarray(text(ids, mask), np.float16))
        out["text_mask"].append(np.asarray(mask))
        out["truth"].append(np.stack([e.truth[0] for e in batch]))
        all_edits += batch
    return {**{k: np.concatenate(v) for k, v in out.items()}, "edits": all_edits}


def iou_by_kind(masks: np.ndarray, batch_edits: list[edits.Edit]) -> dict[str, float]:
    """Mean IoU per kind and over the local kinds, for bool masks [n, S, S]."""
    scores: dict[str, list[float]] = {}
    for mask, edit in zip(masks, batch_edits, strict=True):
        scores.setdefault(edit.kind, []).append(edits.score_iou(mask, edit))
    result = {k: float(np.mean(v)) for k, v in scores.items()}
    result["local kinds"] = float(np.mean([result[k] for k in edits.LOCAL_KINDS if k in result]))
    return result


def train(
    config,
    *,
    examples: int = 12000,
    steps: int = 1500,
    lr: float = 1e-3,
    batch_size: int = 32,
    n_test: int = 350,
    evaluations: int = 6,
    say=print,
    progress: bool = False,
    save: str | None = None,
) -> list[dict[str, float]]:
    """Fits ``config.region`` to the true masks; returns the held-out IoU curve (one dict per evaluation).

    ``save``: also write the fitted predictor (with a fresh projector) as step 0 of that checkpoint
    folder, for ``config.train.init_checkpoint``: does the method keep masks this good?"""
    for name, value in dict(examples=examples, steps=steps, batch_size=batch_size, n_test=n_test).items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name} {value!r}: must be an integer >= 1.")
    if save and os.path.exists(save) and (not os.path.isdir(save) or os.listdir(save)):
        raise ValueError(f"{save} already exists; give another --out, so that no fitted predictor is overwritten.")
    model, frozen = build(config)
    began = time.perf_counter()
    train_set = features(model, frozen, config, "train", examples, progress=progress)
    test_set = features(model, frozen, config, "test", n_test, progress=progress)
    say(f"inputs of {examples} train and {n_test} test edits in {time.perf_counter() - began:.0f} s")
    size = oracle.world(config.generator.oracle).image_size
    params = model.region.init(
        jax.random.key(config.seed),
        jnp.asarray(train_set["inputs"][:1], jnp.float32),
        jnp.asarray(train_set["text"][:1], jnp.float32),
        train_set["text_mask"][:1],
    )["params"]
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, min(100, steps // 10), steps, lr * 0.05)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))
    opt_state = optimizer.init(params)

    def logits_of(p, inputs, text, mask):
        out = model.region.apply({"params": p}, inputs.astype(jnp.float32), text.astype(jnp.float32), mask)
        return region_lib.upsample(out.logits, size, size)

    @jax.jit
    def step(p, state, inputs, text, mask, truth):
        def loss_fn(p):
            logits = logits_of(p, inputs, text, mask)
            probs = jax.nn.sigmoid(logits)
            overlap = (probs * truth).sum((1, 2))
            dice = 1 - (2 * overlap + 1) / (probs.sum((1, 2)) + truth.sum((1, 2)) + 1)
            return optax.sigmoid_binary_cross_entropy(logits, truth).mean() + dice.mean()

        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state, loss

    @jax.jit
    def predict(p, inputs, text, mask):
        return jax.nn.sigmoid(logits_of(p, inputs, text, mask)) > config.region.threshold

    def evaluate(p) -> dict[str, float]:
        masks = [
            np.asarray(predict(p, *(test_set[k][i : i + 50] for k in ("inputs", "text", "text_mask"))))
            for i in range(0, n_test, 50)
        ]
        return iou_by_kind(np.concatenate(masks), test_set["edits"])

    rng, curve, losses = np.random.default_rng(config.seed), [], []
    every = max(1, steps // evaluations)
    for i in range(1, steps + 1):
        rows = rng.integers(0, examples, batch_size)
        batch = [train_set[k][rows] for k in ("inputs", "text", "text_mask")]
        params, opt_state, loss = step(params, opt_state, *batch, train_set["truth"][rows].astype(np.float32))
        losses.append(loss)
        if i % every == 0 or i == steps:  # "loss": the mean training loss since the last evaluation
            curve.append({"step": i, "loss": float(np.mean(jax.device_get(losses))), **evaluate(params)})
            losses.clear()
            kinds = " ".join(f"{k} {curve[-1][k]:.3f}" for k in edits.KINDS if k in curve[-1])
            say(f"step {i}/{steps} loss {curve[-1]['loss']:.3f} local kinds {curve[-1]['local kinds']:.3f} ({kinds})")
    if save:
        from flax import linen as nn

        from regionedit_jax import checkpoints

        fitted = {**model.init(jax.random.key(config.seed)), "region": nn.meta.unbox(params)}
        checkpoints.save_params(save, 0, fitted)
    return curve


def main(argv) -> None:
    import json

    from regionedit_jax import outputs

    del argv
    config = _CONFIG.value
    curve = train(
        config,
        examples=_EXAMPLES.value,
        steps=_STEPS.value,
        lr=_LR.value,
        batch_size=_BATCH.value,
        n_test=_N.value,
        progress=True,
        save=os.path.abspath(os.path.join(_OUT.value, "checkpoint")),
    )
    outputs.write_json(os.path.join(_OUT.value, "probe.json"), {"config": json.loads(config.to_json()), "curve": curve})
    print(f"wrote {_OUT.value}/probe.json and the fitted predictor, {_OUT.value}/checkpoint")


if __name__ == "__main__":
    from absl import app, flags

    from regionedit_jax import cli

    _CONFIG = cli.define_config("configs/shapes.py")
    _EXAMPLES = flags.DEFINE_integer("examples", 12000, "Train edits whose inputs are computed once.")
    _STEPS = flags.DEFINE_integer("steps", 1500, "Training steps.")
    _LR = flags.DEFINE_float("lr", 1e-3, "Peak learning rate (warmup, cosine decay).")
    _BATCH = flags.DEFINE_integer("batch_size", 32, "Edits per step.")
    _N = flags.DEFINE_integer("n", 350, "Held-out test edits.")
    _OUT = flags.DEFINE_string("out", "runs/shapes/probe", "Output folder of probe.json.")
    app.run(cli.one_line_errors(main), flags_parser=cli.parse_flags)
