"""Writing evaluation reports: results.json, results.md (the paper's table with its published row
beside ours) and examples.png (source | region overlay | edited [| ground truth], or an example's own
labelled panels; instruction below).

A report may compare several methods in ``info["comparison"]``: a cube of values
``{"methods": [[key, label], ...], "values": {method: {group: {metric: value}}}, "tables": [...],
"notes": [...]}``; each table fixes one axis, ``{"title", "metric", "groups": [...]}`` (rows =
methods, columns = groups) or ``{"title", "group", "metrics": [[key, label], ...]}`` (rows =
methods, columns = metrics). ``markdown`` renders them after the per-task table.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from regionedit_jax import outputs
from regionedit_jax.edit_cli import overlay
from regionedit_jax.evaluators.base import Example, Report

PANEL = 160  # pixels: every panel's height in the example grid
PAPER_LABEL = "Paper's published numbers (not this run)"


def as_json(report: Report) -> dict:
    """A report without its example images, for results.json."""
    out = {k: v for k, v in dataclasses.asdict(report).items() if k not in ("examples", "columns")}
    out["columns"] = {key: {"name": name, "better": arrow} for key, name, arrow in report.columns}
    return out


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def markdown(report: Report) -> str:
    """One report as a Markdown section: the paper's table format, the paper's row labelled as such."""
    head = "| Method | " + " | ".join(f"{name} {arrow}".strip() for _, name, arrow in report.columns) + " |"
    rule = "|---|" + "---|" * len(report.columns)
    info = report.info
    who = "another system's outputs" if info.get("system") == "predictions" else "ours"
    paper = (
        [f"| {PAPER_LABEL} | " + " | ".join(_cell(report.paper.get(k)) for k, _, _ in report.columns) + " |"]
        if report.paper
        else []
    )
    lines = [
        f"## {report.title} (`{report.name}`)",
        "",
        head,
        rule,
        *paper,
        f"| This run: {who}, {report.rows} rows | "
        + " | ".join(_cell(report.metrics.get(k)) for k, _, _ in report.columns)
        + " |",
        "",
    ]
    if report.groups:
        lines += [
            "Per task (this run):",
            "",
            "| Task | Rows | " + " | ".join(name for _, name, _ in report.columns) + " |",
            "|---|---|" + "---|" * len(report.columns),
        ]
        for group, values in report.groups.items():
            lines.append(
                f"| {group} | {int(values['rows'])} | "
                + " | ".join(_cell(values.get(k)) for k, _, _ in report.columns)
                + " |"
            )
        lines.append("")
    if "comparison" in info:
        lines += comparison_tables(info["comparison"])
    if "note" in info:
        lines += [f"**Note:** {info['note']}", ""]
    details = {k: v for k, v in info.items() if k not in ("note", "comparison")}
    lines += ["Settings and counts:", ""] + [f"- {k}: {v}" for k, v in details.items()] + [""]
    return "\n".join(lines)


def comparison_tables(comparison: Mapping) -> list[str]:
    """Markdown lines of ``info["comparison"]`` (module docstring): its tables, then its notes."""
    methods, values = comparison["methods"], comparison["values"]
    lines = []
    for table in comparison["tables"]:
        if "metric" in table:
            columns = [(group, table["metric"], group) for group in table["groups"]]
        else:
            columns = [(table["group"], key, label) for key, label in table["metrics"]]
        lines += [
            f"{table['title']}:",
            "",
            "| Method | " + " | ".join(label for _, _, label in columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for key, label in methods:
            cells = [_cell(values.get(key, {}).get(group, {}).get(metric)) for group, metric, _ in columns]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    notes = comparison.get("notes", [])
    return lines + [f"- {note}" for note in notes] + ([""] if notes else [])


def _fit(image: np.ndarray, height: int = PANEL) -> Image.Image:
    pil = Image.fromarray(image)
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    method = Image.NEAREST if height >= 2 * image.shape[0] else Image.BICUBIC
    return pil.resize((width, height), method)


def grid(examples: Sequence[Example]) -> Image.Image:
    """Rows of source | region overlay | edited [| ground truth] (or each example's own ``panels``), each
    with its instruction underneath."""
    font = ImageFont.load_default()
    line_h = font.getbbox("Hg")[3] + 4
    rows = []
    for ex in examples:
        region = ex.region if ex.region is not None and ex.region.shape == ex.source.shape[:2] else None
        panels = list(ex.panels) or [
            (ex.source_label, ex.source),
            (
                ex.region_label if region is not None else "region (unknown)",
                overlay(ex.source, region) if region is not None else ex.source,
            ),
            ("edited", ex.edited),
        ]
        if ex.target is not None and not ex.panels:
            panels.append(("ground truth", ex.target))
        pictures = [(label, _fit(p)) for label, p in panels]
        width = sum(p.width for _, p in pictures) + 4 * (len(pictures) + 1)
        chars = max(10, int(width / max(font.getlength("x"), 1)))
        text = textwrap.wrap(ex.text, chars) or [""]
        row = Image.new("RGB", (width, line_h + PANEL + 8 + line_h * len(text)), "white")
        draw, x = ImageDraw.Draw(row), 4
        for label, picture in pictures:
            draw.text((x, 2), label, fill="black", font=font)
            row.paste(picture, (x, line_h))
            x += picture.width + 4
        for i, line in enumerate(text):
            draw.text((4, line_h + PANEL + 4 + i * line_h), line, fill="black", font=font)
        rows.append(row)
    if not rows:
        return Image.new("RGB", (PANEL, PANEL), "white")
    out = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for row in rows:
        out.paste(row, (0, y))
        y += row.height
    return out


def write(folder: str, report: Report) -> None:
    """results.json, results.md and examples.png of one report into ``folder``."""
    outputs.write_json(os.path.join(folder, "results.json"), as_json(report), indent=2)
    outputs.write_text(os.path.join(folder, "results.md"), markdown(report))
    if report.examples:
        outputs.save_image(os.path.join(folder, "examples.png"), grid(report.examples))


def write_summary(folder: str, reports: Mapping[str, Report]) -> None:
    """All reports together: ``folder``/results.json ({name: report}) and results.md."""
    outputs.write_json(os.path.join(folder, "results.json"), {n: as_json(r) for n, r in reports.items()}, indent=2)
    outputs.write_text(
        os.path.join(folder, "results.md"), "# Evaluation\n\n" + "\n".join(map(markdown, reports.values()))
    )
