"""Tiny random towers, written to disk in exactly the Hugging Face layouts real weights use.

``python -m regionedit_jax.towers.tiny --out DIR [--seed N]`` writes::

  DIR/clip/        config.json, model.safetensors, tokenizer files, preprocessor_config.json
  DIR/t5/          config.json, model.safetensors (full encoder-decoder), spiece.model, tokenizer files
  DIR/sd_inpaint/  model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/
  DIR/dino/        config.json, model.safetensors, preprocessor_config.json
  DIR/bundle.json  what was written, with which seed

Weights are small and random (numpy, deterministic for a seed on every machine); the
tokenizers are real: CLIP's BPE vocabulary from the ``openai-clip`` package and a
SentencePiece model with T5's special ids trained on text shipped in ``assets/``. Every
tower loads the bundle through the same ``load()`` as real weights.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np
from flax import traverse_util

from regionedit_jax import outputs
from regionedit_jax.towers import convert, text

FORMAT = 1  # bump when the bundle's contents change (the torch reference fixture records it)
_ASSETS = os.path.join(os.path.dirname(__file__), "assets")
_CLIP_IMAGE = 32  # tiny CLIP and DINO input resolution
_WIDTH = 32  # every tiny tower's width (so the joint CLIP space and T5 both have d = 32)
# The config files are written as these releases' save_pretrained wrote them (the hub-era layout).
_TRANSFORMERS_VERSION = "4.57.6"
_TRANSFORMER_DEFAULTS = {
    "attention_dropout": 0.0,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
}


# --------------------------------------------------------------------------- tokenizers


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode map."""
    keep = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars)))


def write_clip_tokenizer(out: str) -> None:
    """Writes the real CLIP BPE tokenizer (from the openai-clip package) as the hub's CLIP folders hold
    it: ``vocab.json``, ``merges.txt``, ``tokenizer.json``, ``tokenizer_config.json`` and
    ``special_tokens_map.json``."""
    spec = importlib.util.find_spec("clip")  # located, never imported (it would import torch)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The real CLIP vocabulary ships in the openai-clip package: pip install openai-clip==1.0.1"
        )
    bpe = os.path.join(spec.submodule_search_locations[0], "bpe_simple_vocab_16e6.txt.gz")
    with gzip.open(bpe, "rt", encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().split("\n")[1 : 49152 - 256 - 2 + 1]]
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    specials = text.CLIP_SPECIALS
    text.clip_backend(vocab, merges, specials, "CLIP").save(os.path.join(out, "tokenizer.json"))
    _write_tokenizer_config(out, "CLIPTokenizer", specials, model_max_length=77, errors="replace")


def write_t5_tokenizer(out: str, vocab_size: int = 2000) -> int:
    """Trains a SentencePiece unigram model with T5's ids (pad 0, eos 1, unk 2, no bos) and writes it as
    the hub's T5 folders hold it: ``spiece.model``, ``tokenizer.json``, ``tokenizer_config.json`` and
    ``special_tokens_map.json``.

    Returns the tokenizer's vocabulary size including T5's 100 sentinel tokens.
    """
    import sentencepiece as spm

    os.makedirs(out, exist_ok=True)
    prefix = os.path.join(out, "spiece")
    spm.SentencePieceTrainer.train(
        input=os.path.join(_ASSETS, "t5_corpus.txt"),
        model_prefix=prefix,
        model_type="unigram",
        vocab_size=vocab_size,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    os.remove(prefix + ".vocab")
    specials = text.T5_SPECIALS
    backend = text.t5_backend(prefix + ".model", text.T5_EXTRA_IDS, specials, "T5")
    backend.save(os.path.join(out, "tokenizer.json"))
    sentinels = [f"<extra_id_{i}>" for i in range(text.T5_EXTRA_IDS)]
    _write_tokenizer_config(
        out,
        "T5Tokenizer",
        specials,
        model_max_length=512,
        extra_ids=text.T5_EXTRA_IDS,
        additional_special_tokens=sentinels,
        legacy=True,
        add_prefix_space=True,
    )
    return backend.get_vocab_size(with_added_tokens=True)


def _write_tokenizer_config(out: str, tokenizer_class: str, specials: dict[str, str], **fields: Any) -> None:
    """``tokenizer_config.json`` and ``special_tokens_map.json`` with the fields transformers writes."""
    tokens = {f"{key}_token": value for key, value in specials.items()}
    extra = {k: v for k, v in fields.items() if k == "additional_special_tokens"}
    _write_json(os.path.join(out, "special_tokens_map.json"), {**tokens, **extra})
    _write_json(
        os.path.join(out, "tokenizer_config.json"),
        {**tokens, **fields, "clean_up_tokenization_spaces": False, "tokenizer_class": tokenizer_class},
    )


# ------------------------------------------------------------------------------ weights


def random_params(shapes: Any, seed: int) -> Any:
    """Random params for a tree of shapes: every value non-trivial, so a mis-mapped weight shows.

    Each leaf's values depend only on (seed, its path), via numpy's PCG64: identical on
    every machine. Kernels ~ N(0, 1/fan_in); norm scales ~ 1 + N(0, 0.1); the rest ~ N(0, 0.05).
    """
    out = {}
    for path, leaf in traverse_util.flatten_dict(shapes).items():
        digest = hashlib.sha256(f"{seed}/{'/'.join(path)}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        shape, name = tuple(leaf.shape), path[-1]
        noise = rng.standard_normal(shape)
        if name == "kernel":
            value = noise / np.sqrt(max(1, int(np.prod(shape[:-1]))))
        elif name == "scale" or (name == "weight" and len(shape) == 1):
            value = 1.0 + 0.1 * noise
        elif name == "logit_scale":
            value = np.full(shape, np.log(1 / 0.07))
        elif name == "embedding":
            value = 0.5 * noise
        else:
            value = 0.05 * noise
        out[path] = value.astype(np.float32)
    return traverse_util.unflatten_dict(out)


def write_model(out: str, params: Any, naming: convert.Naming, base: str) -> None:
    """Writes Flax ``params`` as ``out/base.safetensors`` in the PyTorch key layout."""
    os.makedirs(out, exist_ok=True)
    convert.write_safetensors(convert.flax_to_torch(params, naming=naming), os.path.join(out, f"{base}.safetensors"))


def _write_json(path: str, obj: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def _clip_text_config(**overrides) -> dict[str, Any]:
    return {
        **_TRANSFORMER_DEFAULTS,
        "hidden_act": "quick_gelu",
        "hidden_size": _WIDTH,
        "intermediate_size": 64,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "pad_token_id": 49407,
        "vocab_size": 49408,
        **overrides,
    }


def clip_config(
    *,
    width: int = _WIDTH,
    mlp: int = 64,
    heads: int = 4,
    text_layers: int = 2,
    vision_layers: int = 2,
    image_size: int = _CLIP_IMAGE,
    patch_size: int = 4,
):
    """A small CLIP ``config.json`` (as ``CLIPConfig.save_pretrained`` writes it): both towers and the
    joint space ``width`` wide."""
    return {
        "architectures": ["CLIPModel"],
        "initializer_factor": 1.0,
        "logit_scale_init_value": 2.6592,
        "model_type": "clip",
        "projection_dim": width,
        "text_config": _clip_text_config(
            hidden_size=width,
            intermediate_size=mlp,
            num_hidden_layers=text_layers,
            num_attention_heads=heads,
            model_type="clip_text_model",
            projection_dim=512,
        ),
        "transformers_version": _TRANSFORMERS_VERSION,
        "vision_config": {
            **_TRANSFORMER_DEFAULTS,
            "hidden_act": "quick_gelu",
            "hidden_size": width,
            "image_size": image_size,
            "intermediate_size": mlp,
            "layer_norm_eps": 1e-05,
            "model_type": "clip_vision_model",
            "num_attention_heads": heads,
            "num_channels": 3,
            "num_hidden_layers": vision_layers,
            "patch_size": patch_size,
            "projection_dim": 512,
        },
    }


def write_clip(out: str, seed: int, config=None) -> None:
    """Writes a random CLIP folder: ``config`` (default: the tiny ``clip_config()``), weights, tokenizer."""
    from regionedit_jax.nn import clip as clip_nn

    config = clip_config() if config is None else config
    size = config["vision_config"]["image_size"]
    _write_json(os.path.join(out, "config.json"), config)
    shapes = clip_nn.ClipModel(clip_nn.ClipSettings.from_config(config)).shapes()
    write_model(out, random_params(shapes, seed), "transformers", "model")
    write_clip_tokenizer(out)
    _write_json(
        os.path.join(out, "preprocessor_config.json"),
        {
            "crop_size": {"height": size, "width": size},
            "do_center_crop": True,
            "do_normalize": True,
            "do_resize": True,
            "image_processor_type": "CLIPImageProcessor",
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "resample": 3,
            "size": {"shortest_edge": size},
        },
    )


def t5_with_decoder(encoder: dict[str, Any], vocab_size: int, width: int) -> dict[str, Any]:
    """The parameter shapes of a whole ``T5ForConditionalGeneration`` from its encoder's: each
    decoder block is the encoder block's self-attention, a cross-attention ("EncDecAttention") of
    the same shapes, and its feed-forward; plus an untied ``lm_head``."""
    import jax

    decoder_blocks = {}
    for i, block in encoder["encoder"]["block"].items():
        attention, feed_forward = block["layer"]["0"], block["layer"]["1"]
        cross = {k: v for k, v in attention["SelfAttention"].items() if k != "relative_attention_bias"}
        decoder_blocks[i] = {
            "layer": {
                "0": attention,
                "1": {"EncDecAttention": cross, "layer_norm": attention["layer_norm"]},
                "2": feed_forward,
            }
        }
    return {
        **encoder,
        "decoder": {"block": decoder_blocks, "final_layer_norm": encoder["encoder"]["final_layer_norm"]},
        "lm_head": {"kernel": jax.ShapeDtypeStruct((width, vocab_size), np.float32)},
    }


def write_t5(out: str, seed: int) -> None:
    """Writes a random T5 folder: a whole encoder-decoder, as real checkpoints come."""
    from regionedit_jax.nn import t5

    vocab = write_t5_tokenizer(out)
    config = {
        "architectures": ["T5ForConditionalGeneration"],
        "classifier_dropout": 0.0,
        "d_ff": 64,
        "d_kv": 8,
        "d_model": _WIDTH,
        "decoder_start_token_id": 0,
        "dense_act_fn": "gelu_new",
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "feed_forward_proj": "gated-gelu",
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "is_gated_act": True,
        "layer_norm_epsilon": 1e-06,
        "model_type": "t5",
        "num_decoder_layers": 2,
        "num_heads": 4,
        "num_layers": 2,
        "pad_token_id": 0,
        "relative_attention_max_distance": 128,
        "relative_attention_num_buckets": 32,
        "tie_word_embeddings": False,
        "transformers_version": _TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": vocab,
    }
    _write_json(os.path.join(out, "config.json"), config)
    encoder = t5.T5Encoder(t5.T5Settings.from_config(config)).shapes()
    write_model(out, random_params(t5_with_decoder(encoder, vocab, _WIDTH), seed), "transformers", "model")


def write_dino(out: str, seed: int) -> None:
    """Writes a random ViT folder in the ``ViTModel`` layout, pooler included (as transformers saves it)."""
    import jax

    from regionedit_jax.nn import vit

    config = {
        "architectures": ["ViTModel"],
        "attention_probs_dropout_prob": 0.0,
        "encoder_stride": 16,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "hidden_size": _WIDTH,
        "image_size": _CLIP_IMAGE,
        "initializer_range": 0.02,
        "intermediate_size": 64,
        "layer_norm_eps": 1e-12,
        "model_type": "vit",
        "num_attention_heads": 4,
        "num_channels": 3,
        "num_hidden_layers": 2,
        "patch_size": 8,
        "pooler_act": "tanh",
        "pooler_output_size": _WIDTH,
        "qkv_bias": True,
        "transformers_version": _TRANSFORMERS_VERSION,
    }
    _write_json(os.path.join(out, "config.json"), config)
    shapes = vit.ViTModel(vit.ViTSettings.from_config(config)).shapes()
    leaf = lambda *shape: jax.ShapeDtypeStruct(shape, np.float32)  # noqa: E731
    shapes["pooler"] = {"dense": {"kernel": leaf(_WIDTH, _WIDTH), "bias": leaf(_WIDTH)}}
    write_model(out, random_params(shapes, seed), "transformers", "model")
    _write_json(
        os.path.join(out, "preprocessor_config.json"),
        {
            "do_normalize": True,
            "do_resize": True,
            "image_processor_type": "ViTImageProcessor",
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
            "resample": 3,
            "size": {"height": _CLIP_IMAGE, "width": _CLIP_IMAGE},
        },
    )


# The fields diffusers' save_pretrained writes for SD 1.x inpainting, at tiny sizes.
UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 4,
    "block_out_channels": [32, 64],
    "center_input_sample": False,
    "cross_attention_dim": _WIDTH,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 9,
    "layers_per_block": 1,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 16,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}
VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [32, 64],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 32,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
}
# SD 1.x's real training schedule (scheduler/scheduler_config.json of the inpainting pipeline).
SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def write_sd_inpaint(
    out: str,
    seed: int,
    unet_config: dict[str, Any] | None = None,
    vae_config: dict[str, Any] | None = None,
    text_config: dict[str, Any] | None = None,
) -> None:
    """Writes a random SD inpainting pipeline folder; the configs default to the tiny ones (pass
    SD 1.5's for a full-size folder: ``regionedit_jax.benchmark_full_size``)."""
    from regionedit_jax.nn import clip as clip_nn
    from regionedit_jax.nn import unet, vae

    version = {"_diffusers_version": "0.39.0"}
    _write_json(
        os.path.join(out, "model_index.json"),
        {
            "_class_name": "StableDiffusionInpaintPipeline",
            **version,
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "PNDMScheduler"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
    )
    unet_config, vae_config = unet_config or UNET_CONFIG, vae_config or VAE_CONFIG
    modules = {
        "unet": unet.UNet(unet.UNetSettings.from_config(unet_config)),
        "vae": vae.AutoencoderKL(vae.VAESettings.from_config(vae_config)),
    }
    for sub, config in (("unet", unet_config), ("vae", vae_config)):
        _write_json(os.path.join(out, sub, "config.json"), {**config, **version})
        shapes = modules[sub].shapes()
        write_model(
            os.path.join(out, sub), random_params(shapes, seed + hash_name(sub)), "diffusers", "diffusion_pytorch_model"
        )
    text_config = _clip_text_config(
        **{
            "architectures": ["CLIPTextModel"],
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "model_type": "clip_text_model",
            "projection_dim": 512,
            "transformers_version": _TRANSFORMERS_VERSION,
            **(text_config or {}),
        }
    )
    _write_json(os.path.join(out, "text_encoder", "config.json"), text_config)
    text_shapes = clip_nn.ClipTextModel(clip_nn.TextSettings.from_config(text_config)).shapes()
    write_model(
        os.path.join(out, "text_encoder"), random_params(text_shapes, seed + hash_name("text")), "transformers", "model"
    )
    write_clip_tokenizer(os.path.join(out, "tokenizer"))
    _write_json(os.path.join(out, "scheduler", "scheduler_config.json"), {**SCHEDULER_CONFIG, **version})


def hash_name(name: str) -> int:
    """A small stable integer per name (Python's hash() differs between processes)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:2], "little")


def weights_digest(bundle: str) -> str:
    """sha256 over the bundle's safetensors files (sorted relative paths and bytes)."""
    digest = hashlib.sha256()
    paths = sorted(
        os.path.relpath(os.path.join(d, f), bundle).replace(os.sep, "/")
        for d, _, names in os.walk(bundle)
        for f in names
        if f.endswith(".safetensors")
    )
    for rel in paths:
        digest.update(rel.encode() + b"\0")
        with open(os.path.join(bundle, rel), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


WRITERS = {"clip": write_clip, "t5": write_t5, "sd_inpaint": write_sd_inpaint, "dino": write_dino}


class BundleFolderError(ValueError):
    """The folder named for a tiny bundle holds something else (never overwritten)."""


def read_manifest(out: str) -> dict[str, Any] | None:
    """The ``bundle.json`` of a tiny bundle folder, or None when ``out`` holds none."""
    marker = os.path.join(out, "bundle.json")
    if not os.path.isfile(marker):
        return None
    try:
        with open(marker, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "seed" in manifest and "format" in manifest else None


def write_bundle(out: str, seed: int = 0, force: bool = False) -> str:
    """Writes the tiny bundle to ``out`` (atomically); returns ``out``.

    An existing complete bundle with the same seed and format is kept. A bundle of another
    seed or format is replaced only with ``force`` (a checkpoint trained on it would be
    silently wrong otherwise). A folder that is not a tiny bundle and is not empty is never
    touched, with or without ``force``.
    """
    manifest = {"format": FORMAT, "seed": seed, "towers": sorted(WRITERS)}
    existing = read_manifest(out)
    if existing == manifest:
        return out
    if os.path.lexists(out):
        if not os.path.isdir(out) or os.path.islink(out):
            raise BundleFolderError(
                f"towers bundle {out!r} exists and is not a folder; name a new folder for the tiny bundle."
            )
        if existing is None and os.listdir(out):
            raise BundleFolderError(
                f"towers bundle {out!r} is a folder that holds no tiny bundle "
                "(no bundle.json); it is left untouched. Name an empty or new folder."
            )
        if existing is not None and not force:
            raise BundleFolderError(
                f"towers bundle {out!r} was written with seed {existing.get('seed')} (format "
                f"{existing.get('format')}), not seed {seed} (format {FORMAT}); a checkpoint trained on it "
                "would not match other towers. Use another folder, or rewrite it with --force."
            )
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tiny-", dir=parent)
    outputs.make_readable(tmp)
    try:
        for name, write in WRITERS.items():
            write(os.path.join(tmp, name), seed + hash_name(name))
        _write_json(os.path.join(tmp, "bundle.json"), manifest)
        if os.path.isdir(out):  # an empty folder, or a bundle that ``force`` replaces
            old = tempfile.mkdtemp(prefix=".tiny-old-", dir=parent)
            os.replace(out, os.path.join(old, "bundle"))
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the bundle into")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the weights")
    parser.add_argument("--force", action="store_true", help="rewrite an existing bundle")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    write_bundle(args.out, args.seed, args.force)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.out) for f in fs)
    print(f"tiny bundle in {args.out} ({size / 2**20:.1f} MiB, {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
