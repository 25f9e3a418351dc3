"""Metrics and pictures out of the training loop: TensorBoard event files and PNG panels.

TensorBoard files are written with tensorboardX (no TensorFlow needed) on process 0 only;
every process prints nothing itself (the loop prints the progress line on process 0).
"""

from __future__ import annotations

import glob
import os
import struct
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from PIL import Image, ImageDraw

from regionedit_jax import outputs
from regionedit_jax.edit_cli import overlay


class MetricWriter:
    """Scalars and images to TensorBoard under ``logdir`` (a no-op off process 0)."""

    def __init__(self, logdir: str, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self._writer = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(logdir, flush_secs=30)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(name, float(value), step)

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        """[H, W, 3] uint8."""
        if self._writer is not None:
            self._writer.add_image(name, image, step, dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """The scalars of the event files in ``logdir``: name -> [(step, value)] sorted by step (a step
    written twice, as after a resume, keeps its last value). A record still being written is skipped."""
    from tensorboardX.proto import event_pb2

    found: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):  # TFRecord framing: length, its CRC, the event, its CRC
            (length,) = struct.unpack_from("<Q", data, pos)
            if pos + 12 + length + 4 > len(data):
                break
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found.setdefault(value.tag, {})[event.step] = value.simple_value
    return {tag: sorted(steps.items()) for tag, steps in found.items()}


def panel(
    sources: np.ndarray, masks: np.ndarray, edited: np.ndarray, captions: Sequence[str], cell: int = 160
) -> np.ndarray:
    """Rows of source | region overlay | edited with a caption under each row.

    sources, edited: [n, S, S, 3] uint8 or float in [0, 1]; masks: [n, S, S] -> [H, W, 3] uint8.
    """

    def u8(x):
        x = np.asarray(x)
        return x if x.dtype == np.uint8 else (np.clip(x, 0, 1) * 255).round().astype(np.uint8)

    def big(x):
        return np.asarray(Image.fromarray(x).resize((cell, cell), Image.NEAREST))

    text_h, rows = 28, []
    for src, m, out, caption in zip(u8(sources), np.asarray(masks) > 0.5, u8(edited), captions, strict=True):
        row = np.concatenate([big(src), big(overlay(src, m)), big(out)], axis=1)
        strip = Image.new("RGB", (row.shape[1], text_h), (255, 255, 255))
        ImageDraw.Draw(strip).text((4, 8), caption[: 3 * cell // 6], fill=(0, 0, 0))
        rows.append(np.concatenate([row, np.asarray(strip)], axis=0))
    return np.concatenate(rows, axis=0)


def save_png(path: str, image: np.ndarray) -> None:
    outputs.save_image(path, image)
