"""The web demo behind ``launch/serve.py``: a Gradio app around one ``Editor``.

Pick a bundled photo or upload one, type an instruction, and see the predicted region (its
probability and the thresholded mask over the photo) beside the edit. Steps, guidance,
threshold and seed are adjustable; painting on the "your own region" canvas repaints that
region instead of the predicted one. Edits run one at a time from a queue, so concurrent users
wait their turn instead of competing for the accelerator. Bad uploads and instructions are
answered with the same one-line messages as the command line.

The app's one API endpoint, ``/edit``, takes (photo, instruction, own region, steps, guidance,
threshold, seed) and returns (edited, overlay, probability, edited PNG file, details).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
from PIL import Image

from regionedit_jax import cli, edit_cli
from regionedit_jax import images as image_ops
from regionedit_jax.data import samples as samples_lib
from regionedit_jax.editor import Editor

QUEUE_SIZE = 16  # requests waiting beyond the one running; more are refused with a message
_PROBABILITY_COLOURS = np.array([[32, 32, 96], [255, 64, 32]], np.float32)  # low, high


def probability_image(probs: np.ndarray) -> np.ndarray:
    """[H, W] probabilities in [0, 1] -> [H, W, 3] uint8, dark blue (keep) to orange (edit)."""
    p = np.clip(probs, 0.0, 1.0)[..., None]
    return ((1 - p) * _PROBABILITY_COLOURS[0] + p * _PROBABILITY_COLOURS[1]).round().astype(np.uint8)


def painted_region(editor_value: Any, shape: tuple[int, int]) -> np.ndarray | None:
    """The strokes of a Gradio image editor -> [H, W] bool of the photo's size, or None if unpainted."""
    if not isinstance(editor_value, dict):
        return None
    painted = None
    for layer in editor_value.get("layers") or []:
        layer = np.asarray(layer)
        if layer.ndim == 3 and layer.shape[-1] == 4:
            strokes = layer[..., 3] > 0
        else:
            strokes = np.asarray(image_ops.array_to_rgb(layer)).max(axis=-1) > 0
        painted = strokes if painted is None else painted | strokes
    if painted is None or not painted.any():
        return None
    if painted.shape != shape:  # the canvas may hold the photo at another size
        painted = np.asarray(Image.fromarray(painted).resize(shape[::-1], Image.NEAREST))
    return painted


class EditService:
    """Runs one edit for the app; every user error becomes a ``ValueError`` with one line."""

    def __init__(self, editor: Editor, out_dir: str | None = None, keep: int = 200):
        self.editor = editor
        self.out_dir = out_dir or tempfile.mkdtemp(prefix="regionedit_serve_")
        os.makedirs(self.out_dir, exist_ok=True)
        self.samples = {s.id: s for s in samples_lib.load_samples()}
        self.count, self.keep = 0, keep  # the newest ``keep`` edited PNGs stay on disk

    def sample(self, sample_id: str) -> tuple[str, str]:
        """A bundled photo (written once as a PNG) and its first instruction."""
        row = self.samples[sample_id]
        path = os.path.join(self.out_dir, "samples", f"{sample_id}.png")
        if not os.path.isfile(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.fromarray(row.image()).save(path)
        return path, row.instructions[0].instruction if row.instructions else ""

    @staticmethod
    def read_photo(photo: Any) -> np.ndarray:
        """An uploaded file (path) -> [H, W, 3] uint8, with the decoder's one-line errors."""
        if photo is None:
            raise ValueError("no photo: upload one or pick a sample first.")
        try:
            return image_ops.decode(photo)
        except image_ops.ImageReadError as e:  # name the upload, not the server's copy of it
            raise image_ops.ImageReadError(str(e).replace(repr(photo), repr(os.path.basename(photo)))) from None

    def edit(
        self, photo: Any, instruction: str, own: Any, steps: float, guidance: float, threshold: float, seed: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, dict[str, Any]]:
        """-> (edited, overlay, probability picture, path of edited.png, details)."""
        source = self.read_photo(photo)
        settings = dict(
            seed=int(seed), num_steps=int(steps), guidance_scale=float(guidance), threshold=float(threshold)
        )
        edit_cli.check_settings(**settings, batch_size=1)
        mask = painted_region(own, source.shape[:2])
        result = self.editor.edit(source, instruction or "", mask=mask, **settings)
        self.count += 1
        path = os.path.join(self.out_dir, f"edited_{self.count:06d}.png")
        Image.fromarray(result.image).save(path)
        stale = os.path.join(self.out_dir, f"edited_{self.count - self.keep:06d}.png")
        if self.count > self.keep and os.path.isfile(stale):  # a long-running server does not fill the disk
            os.remove(stale)
        details = {
            "instruction": result.instruction,
            "source caption": result.source_caption,
            "target caption": result.target_caption,
            "region": "painted" if mask is not None else "predicted",
            "repainted share": round(float(result.mask.mean()), 4),
            "seconds": {k: round(v, 3) for k, v in result.timings.items()},
        }
        return result.image, edit_cli.overlay(source, result.mask), probability_image(result.probs), path, details


def build_app(service: EditService, title: str = "Region edit"):
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    config = service.editor.config

    def answer(fn):
        def wrapped(*args):
            try:
                return fn(*args)
            except cli.known_errors() as e:
                raise gr.Error(cli.one_line(e)) from None

        return wrapped

    def show(photo):  # the uploaded file, decoded as the edit will decode it
        image = service.read_photo(photo)
        return image, image

    def pick(sample_id):
        path, instruction = service.sample(sample_id)
        return (path, instruction, *show(path))

    with gr.Blocks(title=title) as app:
        gr.Markdown(
            f"# {title}\nUpload a photo or pick a sample, say what to change, and see where the model "
            "decided to edit and the result. Paint on *your own region* to repaint exactly there."
        )
        with gr.Row():
            with gr.Column():
                sample = gr.Dropdown(sorted(service.samples), label="Sample photo", value=None)
                photo = gr.File(
                    label="Photo (PNG, JPEG, WebP, ...)", file_types=["image"], type="filepath", elem_id="photo"
                )
                preview = gr.Image(label="The photo", interactive=False, height=240, elem_id="preview")
                instruction = gr.Textbox(
                    label="Instruction", placeholder="replace the cookies with candles", elem_id="instruction"
                )
                with gr.Accordion("Settings", open=False):
                    steps = gr.Slider(1, 100, value=int(config.generator.num_steps), step=1, label="Steps")
                    guidance = gr.Slider(0.0, 20.0, value=float(config.generator.guidance_scale), label="Guidance")
                    threshold = gr.Slider(0.01, 0.99, value=float(config.region.threshold), label="Region threshold")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                own = gr.ImageMask(type="numpy", label="Your own region (optional): paint over what to repaint")
                button = gr.Button("Edit", variant="primary", elem_id="edit")
            with gr.Column():
                edited = gr.Image(label="Edited", format="png", height=360, elem_id="edited")
                with gr.Row():
                    overlay = gr.Image(label="Region over the photo", height=240)
                    probability = gr.Image(label="Edit probability (orange = edit)", height=240)
                download = gr.File(label="Download the edited PNG")
                details = gr.JSON(label="Details", elem_id="details")
        sample.change(answer(pick), sample, [photo, instruction, preview, own], api_name=False)
        photo.upload(answer(show), photo, [preview, own], api_name=False)
        inputs = [photo, instruction, own, steps, guidance, threshold, seed]
        outputs = [edited, overlay, probability, download, details]
        button.click(answer(service.edit), inputs, outputs, api_name="edit")
        instruction.submit(answer(service.edit), inputs, outputs, api_name=False)
    app.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return app
