"""Frozen T5 encoder (default ``google/flan-t5-base``): instruction tokens for the region predictor.

Text -> token features ``[B, L, d_model]`` (768 for FLAN-T5-base) and the padding mask
``[B, L]`` (1 = real token). Only the encoder is loaded; a full T5ForConditionalGeneration
checkpoint's decoder and LM head are skipped.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from regionedit_jax.nn import t5 as t5_nn
from regionedit_jax.nn.attention import Implementation
from regionedit_jax.nn.compute import Compute
from regionedit_jax.towers import convert, files, text

DEFAULT = "google/flan-t5-base"
_UNUSED = [r"^decoder\.", r"^lm_head\.", r"^encoder\.embed_tokens\."]


@dataclasses.dataclass(frozen=True, eq=False)
class T5:
    """A loaded T5 encoder. ``encode`` is pure: ``params`` is passed explicitly."""

    module: t5_nn.T5Encoder
    params: Any
    tokenizer: text.Tokenizer
    dtype: Any
    dim: int  # d_model
    max_length: int  # static token length L

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (input_ids, attention_mask), each [B, max_length] int32."""
        return self.tokenizer(texts, self.max_length)

    def encode(self, params, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """[B, L] ids and mask -> [B, L, d_model] float32 token features."""
        return self.module.apply({"params": params}, input_ids, attention_mask).astype(jnp.float32)

    @functools.cached_property
    def _encode_jit(self):
        return jax.jit(self.encode)

    def embed_texts(self, texts: Sequence[str]) -> tuple[jax.Array, np.ndarray]:
        """Convenience: texts -> (tokens [B, L, d_model], mask [B, L]) with the loaded params."""
        ids, mask = self.tokenize(texts)
        return self._encode_jit(self.params, ids, mask), mask


def load(
    name_or_path: str | os.PathLike = DEFAULT,
    dtype: Any = jnp.float32,
    max_length: int = 77,
    attention: Implementation = None,
) -> T5:
    """Loads a T5 encoder from a hub id or a local folder in the transformers layout.

    The folder holds ``config.json`` (model_type "t5"), ``model.safetensors`` (PyTorch
    layout; encoder-only or full encoder-decoder) and the SentencePiece tokenizer
    (``spiece.model`` or ``tokenizer.json``). ``attention`` picks the attention kernel
    (``nn.attention``).
    """
    folder = files.resolve(name_or_path, "T5")
    config = files.read_config(folder, "T5", key="model_type", allowed=["t5"])
    tokenizer = text.load_t5(folder, "T5")  # a missing tokenizer is reported before the weights load
    settings = files.settings(t5_nn.T5Settings.from_config, config, "T5", folder)
    module = t5_nn.T5Encoder(settings, Compute(dtype, dtype, attention))
    params = convert.load_params(
        folder, "model", module.shapes(), what="T5", naming="transformers", dtype=dtype, ignore=_UNUSED
    )
    return T5(
        module=module,
        params=params,
        tokenizer=tokenizer,
        dtype=dtype,
        dim=settings.width,
        max_length=max_length,
    )
