"""The text towers' tokenizers, built with the tokenizers library from either file layout."""

import json
import os
import pickle
import shutil

import numpy as np
import pytest

from regionedit_jax.towers import files, text, tiny

HARD = [
    "a photo of a cat",
    "Replace the cookies with CANDLES!!",
    "  spaces\tand\nnewlines  ",
    "double  spaces   here",
    "café naïve résumé",
    "emoji 🐱 and 日本語",
    "it's the dog's ball, isn't it?",
    "3.14 and 1,000,000 items",
    "e-mail: x@y.com #tag",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ and ﬁ ligature",
    "",
    "word " * 200,
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Each family in both layouts: as save_pretrained writes it, and without tokenizer.json."""
    root = tmp_path_factory.mktemp("tokenizers")
    tiny.write_clip_tokenizer(str(root / "clip"))
    tiny.write_t5_tokenizer(str(root / "t5"))
    for name in ("clip", "t5"):
        shutil.copytree(root / name, root / f"{name}_old")
        os.remove(root / f"{name}_old" / "tokenizer.json")
    return {name: str(root / name) for name in ("clip", "clip_old", "t5", "t5_old")}


LOADERS = {"clip": text.load_clip, "clip_old": text.load_clip, "t5": text.load_t5, "t5_old": text.load_t5}


@pytest.mark.parametrize("layout", sorted(LOADERS))
@pytest.mark.parametrize("length", [77, 12])
def test_ids_match_transformers(folders, layout, length):
    from transformers import AutoTokenizer

    # transformers converts the older files itself: an independent build of the same tokenizer.
    reference = AutoTokenizer.from_pretrained(folders[layout.removesuffix("_old") + "_old"])
    want = reference(HARD, padding="max_length", truncation=True, max_length=length, return_tensors="np")
    ids, mask = LOADERS[layout](folders[layout], layout)(HARD, length)
    assert ids.dtype == mask.dtype == np.int32 and ids.shape == (len(HARD), length)
    np.testing.assert_array_equal(ids, want["input_ids"])
    np.testing.assert_array_equal(mask, want["attention_mask"])


@pytest.mark.parametrize("layout", ["t5", "t5_old"])
def test_t5_matches_sentencepiece(folders, layout):
    """SentencePiece itself is the reference: its pieces, then </s> (1), then <pad> (0)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=os.path.join(folders["t5"], "spiece.model"))
    tokenizer = text.load_t5(folders[layout], "T5")
    texts = [t for t in HARD if t.strip() and len(t) < 100]
    ids, mask = tokenizer(texts, 40)
    for row, m, t in zip(ids, mask, texts):
        want = sp.encode(t) + [1]
        assert list(row[: len(want)]) == want and not row[len(want) :].any()
        assert m.sum() == len(want)
    known = [i for i, t in enumerate(texts) if sp.unk_id() not in sp.encode(t)]  # SentencePiece shows unk as ⁇
    assert len(known) >= 3
    assert tokenizer.decode(ids[known]) == [sp.decode(sp.encode(texts[i])) for i in known]
    assert "<extra_id_0>" in tokenizer.backend.get_vocab() and tokenizer.pad_id == 0


def test_clip_special_tokens_and_decoding(folders):
    tokenizer = text.load_clip(folders["clip_old"], "CLIP")
    ids, mask = tokenizer(["change the cat into a dog"], 77)
    assert list(ids[0, :8]) == [49406, 1799, 518, 2368, 1095, 320, 1929, 49407]
    assert mask[0].sum() == 8 and (ids[0, 8:] == 49407).all()  # CLIP pads with <|endoftext|>
    truncated, _ = tokenizer(["word " * 200], 12)
    assert truncated[0, 0] == 49406 and truncated[0, -1] == 49407  # specials survive truncation
    assert tokenizer.decode(tokenizer(["A Photo of a café!", "x"], 20)[0]) == ["a photo of a café !", "x"]
    assert text.load_clip(folders["clip"], "CLIP").decode(ids) == ["change the cat into a dog"]


def test_pad_token_comes_from_the_folder(folders, tmp_path):
    """SD 2's tokenizer pads with "!" (id 0); its tokenizer_config.json says so."""
    folder = shutil.copytree(folders["clip_old"], tmp_path / "sd2_tokenizer")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "pad_token": {"content": "!"}}))
    ids, mask = text.load_clip(str(folder), "SD")(["a cat"], 8)
    assert list(ids[0]) == [49406, 320, 2368, 49407, 0, 0, 0, 0] and list(mask[0]) == [1, 1, 1, 1, 0, 0, 0, 0]


def test_picklable_with_the_same_ids(folders):
    for layout, load in LOADERS.items():
        tokenizer = load(folders[layout], layout)
        tokenizer(HARD, 16)  # caches a fixed-length copy, which pickling leaves out
        again = pickle.loads(pickle.dumps(text.TextEncoder(tokenizer, 16)))
        for got, want in zip(again(HARD), tokenizer(HARD, 16)):
            np.testing.assert_array_equal(got, want)
    ids_only = text.TextEncoder(tokenizer, 16, ids_only=True)(["a"])
    assert ids_only.shape == (1, 16)


def test_bad_input_and_bad_files(folders, tmp_path):
    tokenizer = text.load_t5(folders["t5"], "T5")
    with pytest.raises(ValueError, match="T5: the list of texts is empty"):
        tokenizer([], 8)
    with pytest.raises(TypeError, match="item 1 is int"):
        tokenizer(["ok", 3], 8)
    with pytest.raises(ValueError, match="max_length must be at least 2"):
        tokenizer(["ok"], 1)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(files.TowerFilesError, match=r"has no tokenizer.json or vocab.json \(the CLIP BPE tokenizer\)"):
        text.load_clip(str(empty), "CLIP")
    with pytest.raises(
        files.TowerFilesError, match=r"has no tokenizer.json or spiece.model \(the SentencePiece tokenizer\)"
    ):
        text.load_t5(str(empty), "T5")
    (empty / "spiece.model").write_bytes(b"\x93not a model")
    with pytest.raises(text.TokenizerError, match="is not a SentencePiece model"):
        text.load_t5(str(empty), "T5")
    (empty / "tokenizer.json").write_text("{broken")
    with pytest.raises(text.TokenizerError, match="is not a tokenizers file"):
        text.load_t5(str(empty), "T5")
    folder = shutil.copytree(folders["t5"], tmp_path / "t5")
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<nope>"}))
    with pytest.raises(text.TokenizerError, match="pad token '<nope>' is not in the tokenizer's vocabulary"):
        text.load_t5(str(folder), "T5")
