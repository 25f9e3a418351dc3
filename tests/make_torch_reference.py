"""Writes ``tests/fixtures/torch_reference.npz``: the PyTorch reference for the JAX towers.

Run in the reference environment (``pip install -e ".[reference]"`` adds torch)::

    .venv-reference/bin/python tests/make_torch_reference.py

Rerun it whenever the tiny bundle's weights change (``towers/tiny.py`` or ``convert.py``:
``tests/test_towers_reference.py`` then fails on the bundle hash) or when the pinned
transformers/diffusers versions change. It

* writes the tiny bundle (seed 0) and loads every model with the PyTorch classes, strictly
  (no missing, unexpected or mismatched weights);
* re-saves each model with ``save_pretrained`` and checks that the file torch writes has
  exactly the keys, shapes and dtypes of the bundle's file;
* runs each model in float32 on fixed, seeded inputs at the towers' own input sizes and
  stores inputs, outputs, the key manifests and the bundle's hash.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402

from regionedit_jax.towers import convert, tiny  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "torch_reference.npz")
SEED = 0
# Model files whose save_pretrained layout the bundle must reproduce (bundle-relative).
FILES = {
    "clip": "clip/model.safetensors",
    "t5": "t5/model.safetensors",
    "dino": "dino/model.safetensors",
    "unet": "sd_inpaint/unet/diffusion_pytorch_model.safetensors",
    "vae": "sd_inpaint/vae/diffusion_pytorch_model.safetensors",
    "text_encoder": "sd_inpaint/text_encoder/model.safetensors",
}
CLIP_TEXTS = ["a photo of a cat on a red sofa", "make the sky purple", "replace the dog with a small bear"]
T5_TEXTS = ["turn the car blue", "remove the person on the left of the bench", "add snow"]
SD_TEXTS = ["a bowl of fruit", "a snowy mountain at sunset"]
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _strict(loaded, what: str, allow_unexpected: tuple[str, ...] = ()):
    """(model, loading_info) -> model, failing on any missing/unexpected/mismatched weight."""
    model, info = loaded
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith(allow_unexpected)]
    bad = {
        "missing": sorted(info["missing_keys"]),
        "unexpected": sorted(unexpected),
        "mismatched": sorted(map(str, info["mismatched_keys"])),
        "errors": list(info.get("error_msgs", [])),
    }
    if any(bad.values()):
        raise AssertionError(f"{what} does not load strictly: {bad}")
    return model.eval()


def _state_keys_match(model, path: str, what: str) -> None:
    """Every file key is a model parameter/buffer and vice versa (up to tied weights)."""
    file_keys = {row[0] for row in convert.safetensors_manifest(path)["tensors"]}
    state_keys = set(model.state_dict())
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = sorted(state_keys - file_keys - tied)
    unexpected = sorted(file_keys - state_keys)
    if missing or unexpected:
        raise AssertionError(f"{what}: state_dict vs {path}: missing {missing[:8]}, unexpected {unexpected[:8]}")


def _resave_manifest(model, what: str, name: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        path = os.path.join(tmp, name)
        if not os.path.isfile(path):
            raise AssertionError(f"{what}: save_pretrained wrote {sorted(os.listdir(tmp))}, not {name}")
        return convert.safetensors_manifest(path)


def _diff(ours: dict, torch_: dict) -> str:
    a = {r[0]: r[1:] for r in ours["tensors"]}
    b = {r[0]: r[1:] for r in torch_["tensors"]}
    lines = [
        f"  only in the bundle: {sorted(set(a) - set(b))}",
        f"  only in save_pretrained: {sorted(set(b) - set(a))}",
        f"  shape/dtype differ: {[(k, a[k], b[k]) for k in sorted(set(a) & set(b)) if a[k] != b[k]]}",
    ]
    if ours["metadata"] != torch_["metadata"]:
        lines.append(f"  metadata: bundle {ours['metadata']} vs save_pretrained {torch_['metadata']}")
    return "\n".join(lines)


def nchw(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy().transpose(0, 2, 3, 1)).astype(np.float32)


def main() -> int:
    import diffusers
    import torch
    import transformers
    from diffusers import AutoencoderKL, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import (
        CLIPModel,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPTokenizerFast,
        T5EncoderModel,
        T5ForConditionalGeneration,
        T5TokenizerFast,
        ViTModel,
    )

    start = time.perf_counter()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    diffusers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = tiny.write_bundle(os.path.join(tmp, "tiny"), seed=SEED)
        j = lambda *p: os.path.join(bundle, *p)
        tf_kw = dict(output_loading_info=True, attn_implementation="eager", torch_dtype=torch.float32)
        df_kw = dict(output_loading_info=True, low_cpu_mem_usage=False, torch_dtype=torch.float32)
        models = {
            "clip": _strict(CLIPModel.from_pretrained(j("clip"), **tf_kw), "CLIPModel"),
            "t5": _strict(T5ForConditionalGeneration.from_pretrained(j("t5"), **tf_kw), "T5ForConditionalGeneration"),
            "dino": _strict(ViTModel.from_pretrained(j("dino"), **tf_kw), "ViTModel"),
            "unet": _strict(
                UNet2DConditionModel.from_pretrained(j("sd_inpaint", "unet"), **df_kw), "UNet2DConditionModel"
            ),
            "vae": _strict(AutoencoderKL.from_pretrained(j("sd_inpaint", "vae"), **df_kw), "AutoencoderKL"),
            "text_encoder": _strict(
                CLIPTextModel.from_pretrained(j("sd_inpaint", "text_encoder"), **tf_kw), "CLIPTextModel"
            ),
        }
        # The encoder alone, from the full checkpoint: only the decoder and LM head are left over.
        t5_encoder = _strict(
            T5EncoderModel.from_pretrained(j("t5"), **tf_kw),
            "T5EncoderModel",
            allow_unexpected=("decoder.", "lm_head."),
        )
        pipe = StableDiffusionInpaintPipeline.from_pretrained(
            j("sd_inpaint"), safety_checker=None, low_cpu_mem_usage=False, torch_dtype=torch.float32
        )
        for name in ("unet", "vae", "text_encoder"):
            ours, theirs = getattr(pipe, name).state_dict(), models[name].state_dict()
            assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name

        # The bundle's files are what save_pretrained writes.
        bundle_manifests, failures = {}, []
        for name, rel in FILES.items():
            ours = convert.safetensors_manifest(j(rel))
            _state_keys_match(models[name], j(rel), name)
            theirs = _resave_manifest(models[name], name, os.path.basename(rel))
            bundle_manifests[rel] = theirs
            if ours != theirs:
                failures.append(f"{rel}: the bundle's file differs from save_pretrained's:\n{_diff(ours, theirs)}")
        encoder_rows = _resave_manifest(t5_encoder, "t5 encoder", "model.safetensors")["tensors"]
        full_rows = {tuple(map(str, r)) for r in bundle_manifests[FILES["t5"]]["tensors"]}
        extra = [r for r in encoder_rows if tuple(map(str, r)) not in full_rows]
        if extra:
            failures.append(f"T5EncoderModel saves weights the full t5 file lacks: {extra}")
        if failures:
            print("\n".join(failures), file=sys.stderr)
            return 1

        rng = np.random.default_rng(SEED)
        f32 = np.float32
        ref: dict[str, np.ndarray] = {}
        with torch.no_grad():
            # CLIP text and image.
            tok = CLIPTokenizerFast.from_pretrained(j("clip"))
            enc = tok(CLIP_TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="np")
            ids, mask = enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)
            clip = models["clip"]
            emb = clip.get_text_features(
                input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long()
            )
            emb = emb / emb.norm(dim=-1, keepdim=True)
            ref.update(
                clip_texts=np.array(CLIP_TEXTS),
                clip_input_ids=ids,
                clip_attention_mask=mask,
                clip_text_embeds=emb.numpy().astype(f32),
            )
            images = rng.uniform(0, 1, (2, 32, 32, 3)).astype(f32)
            pixels = (images - np.asarray(CLIP_MEAN, f32)) / np.asarray(CLIP_STD, f32)
            vision = clip.vision_model(pixel_values=nchw(pixels))
            cls = clip.visual_projection(vision.pooler_output)  # post_layernorm(last_hidden_state[:, 0])
            patches = clip.visual_projection(clip.vision_model.post_layernorm(vision.last_hidden_state[:, 1:]))
            ref.update(
                clip_images=images,
                clip_image_cls=(cls / cls.norm(dim=-1, keepdim=True)).numpy(),
                clip_image_patches=patches.numpy(),
            )

            # T5 encoder, from both classes.
            tok = T5TokenizerFast.from_pretrained(j("t5"))
            enc = tok(T5_TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="np")
            ids, mask = enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)
            args = dict(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long())
            hidden = models["t5"].encoder(**args).last_hidden_state
            alone = t5_encoder(**args).last_hidden_state
            assert torch.equal(hidden, alone), "T5EncoderModel and T5ForConditionalGeneration.encoder differ"
            ref.update(t5_texts=np.array(T5_TEXTS), t5_input_ids=ids, t5_attention_mask=mask, t5_hidden=hidden.numpy())

            # DINO ViT CLS.
            images = rng.uniform(0, 1, (2, 32, 32, 3)).astype(f32)
            pixels = (images - np.asarray(IMAGENET_MEAN, f32)) / np.asarray(IMAGENET_STD, f32)
            out = models["dino"](pixel_values=nchw(pixels)).last_hidden_state[:, 0]
            ref.update(dino_images=images, dino_cls=out.numpy())

            # SD inpainting: UNet, VAE encode/decode, text encoder.
            sample = rng.standard_normal((2, 16, 16, 9)).astype(f32)
            timesteps = np.array([10, 500], np.int32)
            text_states = rng.standard_normal((2, 77, 32)).astype(f32)
            eps = models["unet"](
                nchw(sample), torch.from_numpy(timesteps).long(), encoder_hidden_states=torch.from_numpy(text_states)
            ).sample
            ref.update(unet_sample=sample, unet_timesteps=timesteps, unet_text=text_states, unet_eps=nhwc(eps))
            vae, sf = models["vae"], f32(models["vae"].config.scaling_factor)
            images = rng.uniform(0, 1, (2, 32, 32, 3)).astype(f32)
            mean = vae.encode(nchw(images * f32(2) - f32(1))).latent_dist.mean * float(sf)
            latents = rng.standard_normal((2, 16, 16, 4)).astype(f32)
            decoded = vae.decode(nchw(latents) / float(sf)).sample
            ref.update(
                vae_images=images,
                vae_latents_mean=nhwc(mean),
                vae_latents=latents,
                vae_decoded=nhwc((decoded / 2 + 0.5).clamp(0, 1)),
            )
            tok = CLIPTokenizer.from_pretrained(j("sd_inpaint", "tokenizer"))
            ids = tok(SD_TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="np")[
                "input_ids"
            ].astype(np.int32)
            states = models["text_encoder"](input_ids=torch.from_numpy(ids).long()).last_hidden_state
            pipe_states = pipe.encode_prompt(SD_TEXTS, "cpu", 1, False)[0]
            gap = float((states - pipe_states).abs().max())  # the pipeline's text encoder runs sdpa
            assert gap < 1e-5, f"the pipeline's prompt encoding differs by {gap}"
            ref.update(sd_texts=np.array(SD_TEXTS), sd_input_ids=ids, sd_text_hidden=states.numpy())

        ref = {k: (v.astype(f32) if v.dtype.kind == "f" else v) for k, v in ref.items()}
        ref.update(
            bundle_sha256=np.array(tiny.weights_digest(bundle)),
            manifests=np.array(json.dumps(bundle_manifests, sort_keys=True)),
            versions=np.array(
                json.dumps(
                    {
                        "torch": torch.__version__,
                        "transformers": transformers.__version__,
                        "diffusers": diffusers.__version__,
                        "tiny_format": tiny.FORMAT,
                        "seed": SEED,
                    },
                    sort_keys=True,
                )
            ),
        )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    np.savez_compressed(OUT, **ref)
    print(f"wrote {os.path.relpath(OUT)} ({os.path.getsize(OUT) / 1024:.0f} KiB, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
