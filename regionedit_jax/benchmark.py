"""The benchmark behind ``launch/benchmark.py``: every frozen part on a real photo, timed.

Runs each frozen part the method uses: CLIP image features (CLS + patch tokens) of the
source, CLIP text features of its caption and of the target description, T5 tokens of the
instruction, and the configured generator repainting the whole image, each jitted and timed
twice (the first call includes compilation). Then a whole edit through the Editor (region
prediction, generation, compositing), written as edited.png, mask.png, overlay.png and
result.json. The region predictor is untrained here: its region is arbitrary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from regionedit_jax import edit_cli, generators
from regionedit_jax.data import samples as samples_lib
from regionedit_jax.editor import Editor
from regionedit_jax.towers import bundle


def _timed(name: str, fn: Callable, *args) -> tuple[object, str]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    again = time.perf_counter() - start
    shapes = jax.tree_util.tree_map(lambda x: tuple(x.shape), out)
    return out, f"  {name:<28} {str(shapes):<44} first {first * 1e3:8.1f} ms, then {again * 1e3:7.1f} ms"


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """HWC uint8 -> [size, size, 3] float32 in [0, 1]: centre crop to a square, then resize."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top : top + side, left : left + side])
    return np.asarray(crop.resize((size, size), Image.BICUBIC), np.float32) / 255.0


def run(config, workdir: str, sample_id: str = "cat") -> dict[str, float]:
    """Runs the demo; returns the steady-state milliseconds per stage."""
    os.makedirs(workdir, exist_ok=True)
    print(f"JAX {jax.__version__} on {jax.device_count()} {jax.devices()[0].platform} device(s)")
    start = time.perf_counter()
    towers = bundle.load(config.towers, ("clip", "t5") + generators.towers_for(config.generator), seed=config.seed)
    print(f"towers loaded in {time.perf_counter() - start:.1f} s ({config.towers.bundle or 'from config paths'})")
    clip, t5 = towers["clip"], towers["t5"]
    generator = generators.make(config.generator, towers)

    rows = {s.id: s for s in samples_lib.load_samples()}
    if sample_id not in rows:
        raise SystemExit(f"unknown sample {sample_id!r}; the bundled photos are {sorted(rows)}.")
    sample = rows[sample_id]
    edit = sample.instructions[0]
    photo = sample.image()
    print(f"photo {sample.id!r} {photo.shape}: {sample.caption}")
    print(f"instruction: {edit.instruction!r} -> {edit.target_caption!r}")

    source = square_resize(photo, config.image_size)[None]
    clip_ids, clip_mask = clip.tokenize([sample.caption, edit.target_caption])
    t5_ids, t5_mask = t5.tokenize([edit.instruction])
    prompt_ids = generator.tokenize([edit.target_caption])

    lines = []
    image_features, line = _timed("CLIP image (original size)", jax.jit(clip.encode_image), clip.params, photo)
    lines.append(line)
    text_features, line = _timed("CLIP text", jax.jit(clip.encode_text), clip.params, clip_ids, clip_mask)
    lines.append(line)
    _, line = _timed("T5 instruction", jax.jit(t5.encode), t5.params, t5_ids, t5_mask)
    lines.append(line)
    full = jnp.ones(source.shape[:-1] + (1,))
    generated, line = _timed(
        f"generator {generator.name} ({config.generator.num_steps} steps)",
        jax.jit(generator.generate),
        generator.params,
        source,
        full,
        prompt_ids,
        jax.random.key(0),
        config.generator.guidance_scale,
    )
    lines.append(line)
    print("\n".join(lines))

    cos = float(jnp.sum(image_features.cls * text_features, axis=-1)[0])
    print(f"cos(CLIP image, CLIP caption) = {cos:+.3f} (random tiny towers: no meaning yet)")
    panel = np.concatenate([source[0], np.asarray(generated[0])], axis=1)
    scale = max(1, 256 // config.image_size)
    picture = Image.fromarray((panel * 255).round().astype(np.uint8)).resize(
        (panel.shape[1] * scale, panel.shape[0] * scale), Image.NEAREST
    )
    path = os.path.join(workdir, "demo.png")
    picture.save(path)
    print(f"source | generator output for the whole image -> {path}")

    editor = Editor.from_towers(towers, config, params=None)
    result = editor.edit(
        photo, edit.instruction, seed=config.seed, source_caption=sample.caption, target_caption=edit.target_caption
    )
    again = editor.edit(
        photo, edit.instruction, seed=config.seed, source_caption=sample.caption, target_caption=edit.target_caption
    )
    edit_dir = os.path.join(workdir, "edit")
    edit_cli.write_result(edit_dir, photo, result, {"seed": config.seed, "sample": sample.id})
    print(
        f"edit ({config.generator.num_steps} {config.generator.name} steps, longer side <= "
        f"{config.edit.max_side}px): compile "
        f"{result.timings['compile']:.1f} s, then {again.timings['edit'] * 1e3:.0f} ms; region covers "
        f"{result.mask.mean():.1%} -> {edit_dir}/overlay.png, edited.png"
    )
    return {"cos": cos, "edit_ms": again.timings["edit"] * 1e3}
