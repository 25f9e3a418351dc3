"""Writes ``tests/fixtures/torch_reference.npz``: the PyTorch reference for the JAX towers.

Run in the reference environment (``pip install -e ".[reference]"`` adds torch)::

    .venv-reference/bin/python tests/make_torch_reference.py

Rerun it whenever the tiny bundle's weights change (``towers/tiny.py`` or ``convert.py``:
``tests/test_towers_reference.py`` then fails on the bundle hash) or to check a newer
transformers/diffusers. It

* writes the tiny bundle (seed 0, the hub-era layout) and loads every model with the PyTorch
  classes, strictly (no missing, unexpected or mismatched weights);
* re-saves each model and tokenizer with the current libraries' ``save_pretrained`` and stores
  what they write (weight key manifests, config files, tokenizer file names and config): the
  tests rebuild folders in that current layout and load them;
* runs each model in float32 on fixed, seeded inputs at the towers' own input sizes, plus
  diffusers' DDIM scheduler and its whole inpainting pipeline, and stores inputs and outputs.
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
SAMPLER_TEXTS = ["a red apple on a table", "a small dog"]
SAMPLER_STEPS, SAMPLER_GUIDANCE = 3, 7.5
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


def _resave(saver, what: str, name: str | None = None) -> dict:
    """What ``saver.save_pretrained`` writes: file names, its JSON files, the weights' manifest."""
    with tempfile.TemporaryDirectory() as tmp:
        saver.save_pretrained(tmp)
        names = sorted(os.listdir(tmp))
        out = {"files": names, "json": {}}
        for n in names:
            if n.endswith(".json"):
                with open(os.path.join(tmp, n), encoding="utf-8") as f:
                    out["json"][n] = json.load(f)
                out["json"][n].pop("_name_or_path", None)  # where it was saved from
        model = out["json"].get("tokenizer.json", {}).get("model", {})
        if model.get("type") == "BPE":  # CLIP's 49k vocabulary and merges: the tests take them from the bundle
            model["vocab"] = model["merges"] = None
        if name is not None:
            if name not in names:
                raise AssertionError(f"{what}: save_pretrained wrote {names}, not {name}")
            out["manifest"] = convert.safetensors_manifest(os.path.join(tmp, name))
        return out


def _same_tensors(bundle: dict, saved: dict) -> bool:
    """The saved file holds the bundle's tensors, each under its key or a key it ends with
    (transformers 5 drops ``text_model.`` from ``CLIPTextModel``'s keys)."""
    ours = {r[0]: r[1:] for r in bundle["tensors"]}
    theirs = {r[0]: r[1:] for r in saved["tensors"]}
    matched = {}
    for key, spec in theirs.items():
        hits = [k for k in ours if k == key or k.endswith("." + key)]
        if len(hits) != 1 or ours[hits[0]] != spec:
            return False
        matched[hits[0]] = key
    return len(matched) == len(ours)


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


def _ddim_reference(rng) -> dict[str, np.ndarray]:
    """diffusers' DDIM (eta 0) on SD's schedule: timesteps and single updates from seeded states."""
    from diffusers import DDIMScheduler

    out = {}
    for prediction_type in ("epsilon", "v_prediction"):
        for set_alpha_to_one in (False, True):
            config = {**tiny.SCHEDULER_CONFIG, "prediction_type": prediction_type, "set_alpha_to_one": set_alpha_to_one}
            scheduler = DDIMScheduler.from_config(config)
            scheduler.set_timesteps(4)
            states = rng.standard_normal((4, 1, 4, 4, 4)).astype(np.float32)
            outputs = rng.standard_normal((4, 1, 4, 4, 4)).astype(np.float32)
            prev = [
                nhwc(scheduler.step(nchw(o), int(t), nchw(z), eta=0.0).prev_sample)
                for t, z, o in zip(scheduler.timesteps, states, outputs)
            ]
            key = f"ddim_{prediction_type}_{int(set_alpha_to_one)}"
            out.update(
                {
                    f"{key}_timesteps": scheduler.timesteps.numpy().astype(np.int32),
                    f"{key}_states": states,
                    f"{key}_outputs": outputs,
                    f"{key}_prev": np.stack(prev),
                }
            )
    return out


def _pipeline_reference(pipe, rng) -> dict[str, np.ndarray]:
    """diffusers' whole inpainting pipeline with DDIM, eta 0, fixed z_T, from prompts and [0, 1] images.

    One change makes it deterministic: the masked image's VAE posterior gives its mean, as the
    sampler uses, instead of a draw.
    """
    import torch
    from diffusers import DDIMScheduler
    from diffusers.models.autoencoders import vae as vae_module

    vae_module.DiagonalGaussianDistribution.sample = lambda self, generator=None: self.mean
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    size, factor = 32, pipe.vae_scale_factor
    images = rng.uniform(size=(2, size, size, 3)).astype(np.float32)
    masks = np.zeros((2, size, size, 1), np.float32)
    masks[0, 8:24, 4:20] = 1
    masks[1, 16:, :] = 1
    latents = rng.standard_normal((2, size // factor, size // factor, 4)).astype(np.float32)
    edited = pipe(
        prompt=SAMPLER_TEXTS,
        image=images,
        mask_image=masks,
        height=size,
        width=size,
        strength=1.0,
        num_inference_steps=SAMPLER_STEPS,
        guidance_scale=SAMPLER_GUIDANCE,
        eta=0.0,
        latents=nchw(latents),
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    return {
        "pipeline_texts": np.array(SAMPLER_TEXTS),
        "pipeline_images": images,
        "pipeline_masks": masks,
        "pipeline_latents": latents,
        "pipeline_steps": np.array(SAMPLER_STEPS, np.int32),
        "pipeline_guidance": np.array(SAMPLER_GUIDANCE, np.float32),
        "pipeline_edited": np.asarray(edited, np.float32),
    }


def main() -> int:
    import diffusers
    import torch
    import transformers
    from diffusers import AutoencoderKL, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import (
        AutoTokenizer,
        CLIPModel,
        CLIPTextModel,
        T5EncoderModel,
        T5ForConditionalGeneration,
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
        tf_kw = dict(output_loading_info=True, attn_implementation="eager", dtype=torch.float32)
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

        # The bundle's files hold what the current save_pretrained writes (up to key prefixes),
        # and that current layout is recorded for the tests.
        bundle_manifests, saved, failures = {}, {}, []
        for name, rel in FILES.items():
            ours = convert.safetensors_manifest(j(rel))
            saved[rel] = _resave(models[name], name, os.path.basename(rel))
            bundle_manifests[rel] = ours
            if not _same_tensors(ours, saved[rel]["manifest"]):
                failures.append(
                    f"{rel}: the bundle's file differs from save_pretrained's:\n{_diff(ours, saved[rel]['manifest'])}"
                )
        encoder_rows = _resave(t5_encoder, "t5 encoder", "model.safetensors")["manifest"]["tensors"]
        full_rows = {tuple(map(str, r)) for r in bundle_manifests[FILES["t5"]]["tensors"]}
        extra = [r for r in encoder_rows if tuple(map(str, r)) not in full_rows]
        if extra:
            failures.append(f"T5EncoderModel saves weights the full t5 file lacks: {extra}")
        if failures:
            print("\n".join(failures), file=sys.stderr)
            return 1
        for rel, tokenizer in (
            ("clip", AutoTokenizer.from_pretrained(j("clip"))),
            ("t5", AutoTokenizer.from_pretrained(j("t5"))),
            ("sd_inpaint/tokenizer", AutoTokenizer.from_pretrained(j("sd_inpaint", "tokenizer"))),
        ):
            saved[rel] = _resave(tokenizer, rel)
        saved["sd_inpaint"] = _resave(pipe, "sd_inpaint")

        rng = np.random.default_rng(SEED)
        f32 = np.float32
        ref: dict[str, np.ndarray] = {}
        with torch.no_grad():
            # CLIP text and image.
            tok = AutoTokenizer.from_pretrained(j("clip"))
            enc = tok(CLIP_TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="np")
            ids, mask = enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)
            clip = models["clip"]
            emb = clip.get_text_features(
                input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long()
            )
            emb = emb if torch.is_tensor(emb) else emb.pooler_output  # transformers 5: an output object
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
            tok = AutoTokenizer.from_pretrained(j("t5"))
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
            tok = AutoTokenizer.from_pretrained(j("sd_inpaint", "tokenizer"))
            ids = tok(SD_TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="np")[
                "input_ids"
            ].astype(np.int32)
            states = models["text_encoder"](input_ids=torch.from_numpy(ids).long()).last_hidden_state
            pipe_states = pipe.encode_prompt(SD_TEXTS, "cpu", 1, False)[0]
            gap = float((states - pipe_states).abs().max())  # the pipeline's text encoder runs sdpa
            assert gap < 1e-5, f"the pipeline's prompt encoding differs by {gap}"
            ref.update(sd_texts=np.array(SD_TEXTS), sd_input_ids=ids, sd_text_hidden=states.numpy())
            ref.update(_ddim_reference(rng))
            ref.update(_pipeline_reference(pipe, rng))

        ref = {k: (v.astype(f32) if v.dtype.kind == "f" else v) for k, v in ref.items()}
        ref.update(
            bundle_sha256=np.array(tiny.weights_digest(bundle)),
            manifests=np.array(json.dumps(bundle_manifests, sort_keys=True)),
            saved=np.array(json.dumps(saved, sort_keys=True)),
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
