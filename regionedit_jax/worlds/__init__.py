"""The shapes world: synthetic scenes, captions, a JAX renderer and edits with ground-truth masks.

scenes.py   WorldConfig, Obj, Scene, sample_scene, caption/parse, encode/decode (tokens)
render.py   render (tokens -> images), object_masks, background_mask, footprint_table
edits.py    the seven edit kinds (KINDS), Edit, sample_edit, examples, score_iou

`worlds.render` is the module; its renderer is `worlds.render.render`.
"""

from regionedit_jax.worlds import edits, render, scenes
from regionedit_jax.worlds.edits import KINDS, Edit, example, examples, sample_edit, score_iou
from regionedit_jax.worlds.scenes import (
    Obj,
    Scene,
    WorldConfig,
    caption,
    decode,
    encode,
    parse,
    sample_scene,
)

__all__ = [
    "KINDS",
    "Edit",
    "Obj",
    "Scene",
    "WorldConfig",
    "caption",
    "decode",
    "edits",
    "encode",
    "example",
    "examples",
    "parse",
    "render",
    "sample_edit",
    "sample_scene",
    "scenes",
    "score_iou",
]
