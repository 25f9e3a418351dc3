"""``python launch/edit.py``: edit one image, or a JSONL batch, and write the pictures.

Outputs per edit (in ``--out``, or ``--out/<index>`` for a batch): ``edited.png``,
``mask.png`` (white = repainted), ``overlay.png`` (the region drawn over the source) and
``result.json`` (instruction, descriptions, seed, settings, timings).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from regionedit_jax import images as image_ops

OVERLAY_COLOUR = np.array([255, 64, 32], np.float32)
OUTPUT_FILES = ("edited.png", "mask.png", "overlay.png", "result.json")


def overlay(source: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """[H, W, 3] uint8 source with the [H, W] bool region tinted and outlined -> uint8."""
    out = source.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * OVERLAY_COLOUR
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    out[edge] = OVERLAY_COLOUR
    return out.round().astype(np.uint8)


def write_result(out_dir: str, source: np.ndarray, result, settings: dict[str, Any]) -> None:
    """Writes edited.png, mask.png, overlay.png and result.json for one EditResult.

    The files are written into a hidden staging folder first: a new ``out_dir`` then appears
    whole (one rename), and in an existing one each file replaces its name (a symlink there is
    replaced, never followed). An interrupted write leaves no half-written result.
    """
    fresh = not os.path.lexists(out_dir)
    if not fresh and not os.path.isdir(out_dir):
        raise ValueError(f"output {out_dir!r} exists and is not a folder; name another --out.")
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".partial-", dir=parent if fresh else out_dir)
    try:
        _write_files(staging, source, result, settings)
        if fresh:
            os.rename(staging, out_dir)
        else:
            for name in OUTPUT_FILES:
                os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_files(out_dir: str, source: np.ndarray, result, settings: dict[str, Any]) -> None:
    Image.fromarray(result.image).save(os.path.join(out_dir, "edited.png"))
    Image.fromarray((result.mask * 255).astype(np.uint8)).save(os.path.join(out_dir, "mask.png"))
    Image.fromarray(overlay(source, result.mask)).save(os.path.join(out_dir, "overlay.png"))
    info = {
        "instruction": result.instruction,
        "source_caption": result.source_caption,
        "target_caption": result.target_caption,
        "mask_area": float(result.mask.mean()),
        "timings": result.timings,
        **settings,
    }
    with open(os.path.join(out_dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)


def read_batch(path: str) -> list[dict[str, Any]]:
    """A JSONL file of {"image": ..., "instruction": ..., optional captions/mask} -> rows.

    Relative image and mask paths resolve from the file's folder.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"batch file {path!r} does not exist.")
    root, rows = os.path.dirname(os.path.abspath(path)), []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not JSON ({e.msg}).") from None
            if not isinstance(row, dict) or "image" not in row or "instruction" not in row:
                raise ValueError(f'{path}:{number}: each line needs "image" and "instruction".')
            for key in ("image", "mask"):
                if key in row and not str(row[key]).startswith("sample:"):
                    row[key] = os.path.join(root, row[key])
            rows.append(row)
    if not rows:
        raise ValueError(f"batch file {path!r} has no rows.")
    return rows


def read_source(ref: str) -> np.ndarray:
    """An image path, or ``sample:ID`` for a photo of the bundled sample set -> [H, W, 3] uint8."""
    if ref.startswith("sample:"):
        from regionedit_jax.data import samples

        rows = {s.id: s for s in samples.load_samples()}
        name = ref[len("sample:") :]
        if name not in rows:
            raise image_ops.ImageReadError(f"no bundled sample {name!r}; the samples are {sorted(rows)}.")
        return rows[name].image()
    return image_ops.decode(ref)


def validate(rows: Sequence[dict[str, Any]]) -> None:
    """Checks every row before any model loads: images decode, instructions are non-empty."""
    for number, row in enumerate(rows, 1):
        where = f"row {number}: " if len(rows) > 1 else ""
        text = row.get("instruction")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}the instruction is empty; say what to change, e.g. 'make the car red'.")
        for key in ("image", "mask"):
            if key in row:
                try:
                    read_source(row[key])
                except image_ops.ImageReadError as e:
                    raise ValueError(f"{where}{key}: {e}") from None


def check_settings(
    *, seed: int, num_steps: int | None, guidance_scale: float | None, threshold: float | None, batch_size: int
) -> None:
    """The command line's numbers, before any model loads; ValueError names the flag and its range."""
    from regionedit_jax.configs import checks

    for flag, key, value in (
        ("--seed", "seed", seed),
        ("--steps", "generator.num_steps", num_steps),
        ("--guidance", "generator.guidance_scale", guidance_scale),
        ("--threshold", "region.threshold", threshold),
        ("--batch_size", "global_batch_size", batch_size),
    ):
        accepted = None if value is None else checks.violation(key, value)
        if accepted:
            raise ValueError(f"{flag} {value!r}: must be {accepted}.")


def run(
    editor,
    rows: Sequence[dict[str, Any]],
    out: str,
    *,
    seed: int,
    num_steps: int | None,
    guidance_scale: float | None,
    threshold: float | None,
    batch_size: int = 4,
    progress: bool = True,
) -> list[str]:
    """Edits ``rows`` in batches of ``batch_size`` and writes each result; returns the folders."""
    from tqdm import tqdm

    gc = editor.config.generator
    settings = {
        "seed": seed,
        "generator": gc.name,
        "num_steps": num_steps or gc.num_steps,
        "guidance_scale": gc.guidance_scale if guidance_scale is None else guidance_scale,
        "threshold": editor.config.region.threshold if threshold is None else threshold,
    }
    single = len(rows) == 1
    folders = []
    bar = tqdm(total=len(rows), desc="editing", unit="image", disable=not progress or single)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        sources = [read_source(r["image"]) for r in chunk]
        optional = {key: [r.get(key[:-1]) for r in chunk] for key in ("source_captions", "target_captions")}
        optional = {k: v for k, v in optional.items() if all(x is not None for x in v)}
        if any("mask" in r for r in chunk):
            if not all("mask" in r for r in chunk):
                raise ValueError("give a mask for every row of a batch, or for none.")
            optional["masks"] = [r["mask"] for r in chunk]
        results = editor.edit_batch(
            sources,
            [r["instruction"] for r in chunk],
            seed=seed,
            num_steps=num_steps,
            guidance_scale=guidance_scale,
            threshold=threshold,
            **optional,
        )
        for offset, (source, result) in enumerate(zip(sources, results, strict=True)):
            folder = out if single else os.path.join(out, f"{start + offset:05d}")
            if not single and os.path.islink(folder):
                os.unlink(folder)  # a link inside --out is replaced, never followed
            write_result(folder, source, result, {**settings, "image": chunk[offset]["image"]})
            folders.append(folder)
        bar.update(len(chunk))
    bar.close()
    return folders
