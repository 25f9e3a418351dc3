"""The text towers' tokenizers, read from a model folder with the ``tokenizers`` library alone.

Two families, each from either file layout the hub holds:

* CLIP's byte-level BPE (CLIP, SD's text encoder): ``tokenizer.json``, or the older
  ``vocab.json`` + ``merges.txt``;
* T5's SentencePiece unigram: ``tokenizer.json``, or the older ``spiece.model``.

Built from the older files, the tokenizer is the one transformers' converters build, so both
layouts give the same ids. Special tokens (pad, unk, bos, eos) come from the folder's
``tokenizer_config.json`` / ``special_tokens_map.json`` where it names them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import AddedToken, Regex, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE, Unigram

from regionedit_jax.towers import files

# CLIP's pre-tokenizer: contractions, letter runs, single digits, other non-space runs.
_CLIP_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
CLIP_SPECIALS = {"bos": "<|startoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>", "pad": "<|endoftext|>"}
T5_SPECIALS = {"eos": "</s>", "unk": "<unk>", "pad": "<pad>"}
T5_EXTRA_IDS = 100


class TokenizerError(files.TowerFilesError):
    """A tokenizer's files are missing, unreadable or inconsistent."""


class Tokenizer:
    """Texts -> fixed-length ids and mask (static shapes for jit); ids -> texts.

    Wraps a ``tokenizers.Tokenizer`` that adds the tower's special tokens. Longer texts are
    truncated (special tokens kept), shorter ones padded on the right with the pad token.
    Picklable: data workers receive a copy.
    """

    def __init__(self, backend: Backend, pad_token: str, what: str):
        pad_id = backend.token_to_id(pad_token)
        if pad_id is None:
            raise TokenizerError(f"{what}: the pad token {pad_token!r} is not in the tokenizer's vocabulary.")
        self.backend, self.pad_token, self.pad_id, self.what = backend, pad_token, pad_id, what
        self._fixed: dict[int, Backend] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"backend": self.backend.to_str(), "pad_token": self.pad_token, "what": self.what}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(Backend.from_str(state["backend"]), state["pad_token"], state["what"])

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts: str | Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (ids [B, max_length] int32, mask [B, max_length] int32, 1 = token)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError(f"{self.what}: the list of texts is empty; pass at least one string.")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{self.what}: texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}.")
        encodings = self._fixed_length(max_length).encode_batch(texts, add_special_tokens=True)
        ids = np.array([e.ids for e in encodings], np.int32).reshape(len(texts), max_length)
        mask = np.array([e.attention_mask for e in encodings], np.int32).reshape(ids.shape)
        return ids, mask

    def decode(self, ids: np.ndarray) -> list[str]:
        """[B, L] ids -> B texts, without special tokens."""
        return self.backend.decode_batch(np.asarray(ids).tolist(), skip_special_tokens=True)

    def _fixed_length(self, max_length: int) -> Backend:
        if max_length not in self._fixed:
            if max_length < 2:
                raise ValueError(f"{self.what}: max_length must be at least 2; got {max_length}.")
            fixed = Backend.from_str(self.backend.to_str())
            fixed.enable_truncation(max_length, strategy="longest_first", direction="right")
            fixed.enable_padding(length=max_length, direction="right", pad_id=self.pad_id, pad_token=self.pad_token)
            self._fixed[max_length] = fixed
        return self._fixed[max_length]


class TextEncoder:
    """A picklable ``texts -> (ids, mask)`` (or ids alone) at one length, for data pipelines."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, ids_only: bool = False):
        self.tokenizer, self.max_length, self.ids_only = tokenizer, max_length, ids_only

    def __call__(self, texts: Sequence[str]):
        ids, mask = self.tokenizer(texts, self.max_length)
        return ids if self.ids_only else (ids, mask)


# ------------------------------------------------------------------------------ loading


def load_clip(folder: str, what: str) -> Tokenizer:
    """CLIP's byte-level BPE from ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``."""
    path = files.require_file(folder, ["tokenizer.json", "vocab.json"], what, "the CLIP BPE tokenizer")
    specials = _special_tokens(folder, _read_config(folder, what), CLIP_SPECIALS, what)
    if os.path.basename(path) == "tokenizer.json":
        return Tokenizer(_clip_decoder(_read_tokenizer_json(path, what)), specials["pad"], what)
    merges_path = files.require_file(folder, ["merges.txt"], what, "the BPE merges that go with vocab.json")
    try:
        with open(merges_path, encoding="utf-8") as f:
            lines = [line for line in f.read().split("\n") if line and not line.startswith("#version")]
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{what}: cannot read {merges_path!r} ({e}).") from None
    merges = [tuple(line.split()) for line in lines]
    if any(len(m) != 2 for m in merges):
        raise TokenizerError(f"{what}: {merges_path!r} is not a BPE merges file (two symbols per line).")
    backend = clip_backend(_read_json(path, what), merges, specials, what)
    return Tokenizer(_clip_decoder(backend), specials["pad"], what)


def load_t5(folder: str, what: str) -> Tokenizer:
    """T5's SentencePiece unigram from ``tokenizer.json`` or ``spiece.model`` (plus its sentinels)."""
    path = files.require_file(folder, ["tokenizer.json", "spiece.model"], what, "the SentencePiece tokenizer")
    config = _read_config(folder, what)
    specials = _special_tokens(folder, config, T5_SPECIALS, what)
    if os.path.basename(path) == "tokenizer.json":
        return Tokenizer(_read_tokenizer_json(path, what), specials["pad"], what)
    extra_ids = int(config.get("extra_ids", T5_EXTRA_IDS))
    return Tokenizer(t5_backend(path, extra_ids, specials, what), specials["pad"], what)


# ----------------------------------------------------------------------- the conversions


def clip_backend(vocab: dict[str, int], merges: Sequence[tuple[str, str]], specials: dict[str, str], what: str):
    """CLIP's BPE as transformers converts ``vocab.json`` + ``merges.txt`` -> ``tokenizers.Tokenizer``."""
    backend = Backend(
        BPE(
            vocab,
            list(merges),
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
            unk_token=specials["unk"],
        )
    )
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    bos, eos = specials["bos"], specials["eos"]
    backend.add_special_tokens(_added(sorted({bos, eos, specials["unk"], specials["pad"]})))
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} $B {eos}",
        special_tokens=[(t, _token_id(backend, t, what)) for t in sorted({bos, eos})],
    )
    return backend


def t5_backend(spiece_path: str, extra_ids: int, specials: dict[str, str], what: str):
    """T5's unigram as transformers converts ``spiece.model`` (pieces, then sentinels) -> ``tokenizers.Tokenizer``."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        with open(spiece_path, "rb") as f:
            proto.ParseFromString(f.read())
    except Exception as e:  # protobuf raises its own DecodeError
        raise TokenizerError(f"{what}: {spiece_path!r} is not a SentencePiece model ({e}).") from None
    if proto.trainer_spec.model_type != 1:  # 1 = unigram, what T5 uses
        raise TokenizerError(
            f"{what}: {spiece_path!r} is a SentencePiece model of type {proto.trainer_spec.model_type}; "
            "T5 uses unigram (1)."
        )
    vocab = [(p.piece, p.score) for p in proto.pieces]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(extra_ids - 1, -1, -1)]
    backend = Backend(Unigram(vocab, unk_id=proto.trainer_spec.unk_id, byte_fallback=False))
    steps = [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), "▁")]
    charsmap = proto.normalizer_spec.precompiled_charsmap
    backend.normalizer = normalizers.Sequence(([normalizers.Precompiled(charsmap)] if charsmap else []) + steps)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    sentinels = [f"<extra_id_{i}>" for i in range(extra_ids)]
    backend.add_special_tokens(_added([specials["pad"], specials["eos"], specials["unk"]] + sentinels))
    eos = specials["eos"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, _token_id(backend, eos, what))]
    )
    return backend


def _clip_decoder(backend: Backend) -> Backend:
    """Decodes words as words: each "</w>" becomes a byte-level space, the last one is dropped."""
    backend.decoder = decoders.Sequence(
        [decoders.Replace("</w>", "\u0120"), decoders.ByteLevel(), decoders.Strip(" ", 0, 1)]
    )
    return backend


def _added(tokens: Sequence[str]) -> list[AddedToken]:
    return [AddedToken(t, special=True, normalized=False) for t in tokens]


def _token_id(backend: Backend, token: str, what: str) -> int:
    token_id = backend.token_to_id(token)
    if token_id is None:
        raise TokenizerError(f"{what}: the special token {token!r} is not in the tokenizer's vocabulary.")
    return token_id


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerError(f"{what}: cannot read {path!r} ({e}).") from None


def _read_tokenizer_json(path: str, what: str) -> Backend:
    try:
        backend = Backend.from_file(path)
    except Exception as e:  # the Rust side raises a bare Exception
        raise TokenizerError(f"{what}: {path!r} is not a tokenizers file ({e}).") from None
    backend.no_padding()
    backend.no_truncation()
    return backend


def _read_config(folder: str, what: str) -> dict[str, Any]:
    path = os.path.join(folder, "tokenizer_config.json")
    return _read_json(path, what) if os.path.isfile(path) else {}


def _special_tokens(folder: str, config: dict[str, Any], defaults: dict[str, str], what: str) -> dict[str, str]:
    """{"pad": ..., "eos": ...}: ``tokenizer_config.json`` (``config``), then ``special_tokens_map.json``,
    then defaults."""
    found = dict(defaults)
    token_map = os.path.join(folder, "special_tokens_map.json")
    for data in (_read_json(token_map, what) if os.path.isfile(token_map) else {}, config):  # the later wins
        for key in defaults:
            value = data.get(f"{key}_token")
            if isinstance(value, dict):  # older files: {"content": ..., "lstrip": ...}
                value = value.get("content")
            if isinstance(value, str):
                found[key] = value
    return found
