"""Fixed-length tokenization shared by the text towers (static shapes for jit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def tokenize(tokenizer, texts: Sequence[str], max_length: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (input_ids [B, max_length] int32, attention_mask [B, max_length] int32).

    Longer texts are truncated; shorter ones padded with the tokenizer's pad token.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError(f"{what}: the list of texts is empty; pass at least one string.")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{what}: texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}.")
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    return encoded["input_ids"].astype(np.int32), encoded["attention_mask"].astype(np.int32)


class TextEncoder:
    """Texts -> (ids [B, max_length] int32, mask [B, max_length] int32), as ``tokenize``.

    An HF fast tokenizer is reduced to its Rust ``tokenizers.Tokenizer`` with fixed padding and
    truncation: the same ids, a smaller pickle, and no ``transformers`` import in the workers.
    Other tokenizer objects are called through ``tokenize``.
    """

    def __init__(self, tokenizer_or_folder: Any, max_length: int, what: str, ids_only: bool = False):
        tokenizer = tokenizer_or_folder
        if isinstance(tokenizer, str):
            from transformers import CLIPTokenizerFast, T5TokenizerFast

            tokenizer = (T5TokenizerFast if what.startswith("T5") else CLIPTokenizerFast).from_pretrained(tokenizer)
        self.max_length, self.what, self.ids_only = max_length, what, ids_only
        self.tokenizer, self.backend = tokenizer, None
        if hasattr(tokenizer, "backend_tokenizer"):
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
            backend.enable_truncation(max_length, strategy="longest_first", direction=tokenizer.truncation_side)
            backend.enable_padding(
                length=max_length,
                direction=tokenizer.padding_side,
                pad_id=tokenizer.pad_token_id,
                pad_token=tokenizer.pad_token,
            )
            self.tokenizer, self.backend = None, backend

    def __call__(self, texts: Sequence[str]):
        """-> (ids, mask), or ids alone when built with ``ids_only``."""
        ids, mask = self._encode(texts)
        return ids if self.ids_only else (ids, mask)

    def _encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.backend is None:
            return tokenize(self.tokenizer, texts, self.max_length, self.what)
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=True)
        ids = np.array([e.ids for e in encodings], np.int32).reshape(len(encodings), self.max_length)
        mask = np.array([e.attention_mask for e in encodings], np.int32).reshape(ids.shape)
        return ids, mask
