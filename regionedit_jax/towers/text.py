"""Fixed-length tokenization shared by the text towers (static shapes for jit)."""

from __future__ import annotations

from collections.abc import Sequence

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
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="np")
    return encoded["input_ids"].astype(np.int32), encoded["attention_mask"].astype(np.int32)
