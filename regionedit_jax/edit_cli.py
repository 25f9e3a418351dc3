"""``python launch/edit.py``: edit one image, or a JSONL batch, and write the pictures.

Outputs per edit (in ``--out``, or ``--out/<index>`` for a batch): ``edited.png``,
``mask.png`` (white = repainted), ``overlay.png`` (the region drawn over the source) and
``result.json`` (instruction, descriptions, seed, settings, timings). A batch also writes
``--out/batch_report.json``: each row's folder, or why it could not be edited.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from regionedit_jax import images as image_ops
from regionedit_jax import outputs
from regionedit_jax.describe import rules

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
    outputs.make_readable(staging)  # mkdtemp makes 0700 folders
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


def read_batch(path: str) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """A JSONL file of {"image": ..., "instruction": ..., optional captions/mask} -> (rows, bad).

    Every non-blank line is a row with its 0-based ``index`` (its output folder) and 1-based
    ``line``; a line that is not an edit (not UTF-8, not JSON, not an object with "image" and
    "instruction") goes to ``bad`` as (row, reason) and the others still run. Relative image
    and mask paths resolve from the file's folder.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"batch file {path!r} does not exist.")
    root, rows, bad = os.path.dirname(os.path.abspath(path)), [], []
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = {"index": len(rows) + len(bad), "line": number}
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad.append((where, "the line is not UTF-8 text"))
            continue
        except json.JSONDecodeError as e:
            bad.append((where, f"not JSON ({e.msg})"))
            continue
        if not isinstance(row, dict) or "image" not in row or "instruction" not in row:
            bad.append((where, 'each line needs "image" and "instruction"'))
            continue
        reason = _field_problem(row)
        if reason:
            bad.append((where, reason))
            continue
        for key in ("image", "mask"):
            if key in row and not row[key].startswith("sample:"):
                row[key] = os.path.join(root, row[key])
        rows.append({**row, **where})
    if not rows and not bad:
        raise ValueError(f"batch file {path!r} has no rows.")
    return rows, bad


TEXT_FIELDS = ("image", "instruction", "mask", "source_caption", "target_caption")


def _field_problem(row: dict[str, Any]) -> str | None:
    for key in TEXT_FIELDS:
        if key in row and not isinstance(row[key], str):
            return f'"{key}" must be a string, not {type(row[key]).__name__}'
        if key in row:
            try:
                row[key].encode("utf-8")
            except UnicodeEncodeError:
                return f'"{key}" holds text that is not valid Unicode (a lone surrogate)'
    return None


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


def row_problem(row: dict[str, Any]) -> str | None:
    """Why ``row`` cannot be edited (checked before any model loads), or None."""
    reason = _field_problem(row)
    if reason:
        return reason
    if not row["instruction"].strip():
        return "the instruction is empty; say what to change, e.g. 'make the car red'."
    longest = rules.MAX_INSTRUCTION_CHARS  # what the rules describer accepts
    if len(row["instruction"]) > longest:
        return f"the instruction has {len(row['instruction'])} characters; at most {longest}."
    for key in ("instruction", "source_caption", "target_caption"):
        if key in row and not row[key].strip():
            return f"the {key.replace('_', ' ')} is empty; leave it out to have it described."
        if key in row and any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in row[key]):
            return f"the {key.replace('_', ' ')} holds control characters; remove them."
    pictures = {}
    for key in ("image", "mask"):
        if key in row:
            try:
                pictures[key] = read_source(row[key])
            except image_ops.ImageReadError as e:
                return f"{key}: {e}"
    if "mask" in pictures:
        (mh, mw), (h, w) = pictures["mask"].shape[:2], pictures["image"].shape[:2]
        if (mh, mw) != (h, w):
            return f"the mask is {mw}x{mh} (WxH) but the image is {w}x{h}; give a mask of the image's size."
        if pictures["mask"].max() <= 127:
            return "the mask is all black, so nothing would be repainted; white marks the region to repaint."
    return None


def validate(rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """(row, reason) for every row that cannot be edited."""
    return [(row, reason) for row in rows if (reason := row_problem(row))]


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
    bad: Sequence[tuple[dict[str, Any], str]] = (),
) -> list[dict[str, Any]]:
    """Edits ``rows`` in batches of ``batch_size`` and writes each result; returns one entry per row,
    {"index", "line", "folder"} or {"index", "line", "error"}, in row order.

    One edit (rows without ``index``) is written to ``out``. A batch writes row i to
    ``out/<i:05d>`` and every row's entry to ``out/batch_report.json``: a row that fails
    (``bad`` rows from reading and validation, or an error while editing it) is reported there
    and the other rows still complete; no row leaves a half-written folder.
    """
    from tqdm import tqdm

    gc = editor.config.generator
    settings = {
        "seed": seed,
        "generator": gc.name,
        "num_steps": num_steps or gc.num_steps,
        "guidance_scale": gc.guidance_scale if guidance_scale is None else guidance_scale,
        "threshold": editor.config.region.threshold if threshold is None else threshold,
    }
    single = len(rows) == 1 and "index" not in rows[0] and not bad
    entries = [{"index": r["index"], "line": r["line"], "error": reason} for r, reason in bad]
    bar = tqdm(total=len(rows), desc="editing", unit="image", disable=not progress or single)

    def edit(chunk: Sequence[dict[str, Any]]) -> None:
        try:
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
        except (ValueError, OSError) as err:
            if single:
                raise
            if len(chunk) > 1:  # find the row that failed: the others are edited alone
                for row in chunk:
                    edit([row])
                return
            entries.append({"index": chunk[0]["index"], "line": chunk[0]["line"], "error": str(err)})
            bar.update(1)
            return
        for row, source, result in zip(chunk, sources, results, strict=True):
            folder = out if single else os.path.join(out, f"{row['index']:05d}")
            if not single and os.path.islink(folder):
                os.unlink(folder)  # a link inside --out is replaced, never followed
            write_result(folder, source, result, {**settings, "image": row["image"]})
            entry = {"folder": folder} if single else {"index": row["index"], "line": row["line"], "folder": folder}
            entries.append(entry)
        bar.update(len(chunk))

    for start in range(0, len(rows), batch_size):
        edit(rows[start : start + batch_size])
    bar.close()
    if single:
        return entries
    entries.sort(key=lambda e: e["index"])
    outputs.write_json(os.path.join(out, "batch_report.json"), {"rows": entries}, indent=1)
    return entries


def failure_summary(entries: Sequence[dict[str, Any]], out: str) -> str | None:
    """One line naming the rows of a batch that failed and why, or None when every row was edited."""
    failed = [e for e in entries if "error" in e]
    if not failed:
        return None
    return (
        f"{len(failed)} of {len(entries)} rows could not be edited (the other {len(entries) - len(failed)} "
        f"were written): {listed([(e, e['error']) for e in failed])}. "
        f"Every row's outcome: {os.path.join(out, 'batch_report.json')}"
    )


def listed(bad: Sequence[tuple[dict[str, Any], str]], first: int = 3) -> str:
    """'line 2: reason; line 5: reason; +N more' for (row, reason) pairs."""
    text = "; ".join(f"line {row['line']}: {reason}" for row, reason in bad[:first])
    return text + (f"; +{len(bad) - first} more" if len(bad) > first else "")
