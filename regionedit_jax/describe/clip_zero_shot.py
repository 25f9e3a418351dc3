"""Zero-shot captions from the CLIP tower: the best "a photo of a {label}" over a vocabulary.

Offline whenever the CLIP weights are local. The captions are short and generic, which is
all the rewriter needs to place an instruction's objects; pass ``source_caption`` to the
Editor (or use the ``openai`` backend with a vision model) for rich descriptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from regionedit_jax.describe.base import DescribeError, Describer
from regionedit_jax.describe.vocab import _NOUN_GROUP

_SCENES = (
    "landscape",
    "city street",
    "beach",
    "forest",
    "mountain",
    "room",
    "kitchen",
    "garden",
    "portrait",
    "night sky",
    "field",
    "lake",
)


class ClipCaptioner(Describer):
    """caption(images) -> "a photo of a <label>" with the highest CLIP similarity."""

    name: ClassVar[str] = "clip"
    roles: ClassVar[frozenset[str]] = frozenset({"caption"})

    def __init__(self, clip: Any = None, labels: Sequence[str] | None = None, template: str = "a photo of a {}"):
        if clip is None:
            raise ValueError("the clip describe backend needs the loaded CLIP tower: make('clip', clip=tower)")
        self.labels = list(labels) if labels else sorted(set(_NOUN_GROUP) | set(_SCENES))
        if not self.labels:
            raise ValueError("the clip captioner needs at least one label.")
        import jax  # only this backend needs JAX; the others stay importable without it

        self.template, self._clip = template, clip
        prompts = [template.format(label) for label in self.labels]
        self._text = clip.embed_texts(prompts)  # [K, d]
        self._image = jax.jit(lambda params, x: clip.encode_image(params, x).cls)

    def _caption_one(self, image: Any) -> str:
        array = np.asarray(image)
        if array.ndim not in (2, 3) or 0 in array.shape:
            raise DescribeError("bad_image", f"expected an HWC image, got shape {array.shape}")
        if array.ndim == 2:
            array = array[..., None]
        cls = self._image(self._clip.params, array)  # [1, d]
        best = int(np.argmax(np.asarray(cls @ self._text.T), axis=-1)[0])
        return self.template.format(self.labels[best])
