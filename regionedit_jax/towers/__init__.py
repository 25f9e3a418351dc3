"""Frozen pretrained towers, loaded from Hugging Face folders onto the project's own Flax modules
(``regionedit_jax.nn``) and tokenizers built with the ``tokenizers`` library: neither transformers,
diffusers nor torch is needed at run time.

One module per model, each with ``load(name_or_path, dtype=...)`` taking a Hugging Face
hub id or a local folder in the HF layout, returning an object with pure, jittable apply
functions. Images cross this boundary as NHWC floats in [0, 1] of any size.

  clip        text and image embeddings in CLIP's joint space (+ patch tokens)
  t5          instruction tokens
  sd_inpaint  the 9-channel inpainting UNet, VAE, text encoder and noise schedule
  dino        CLS features for the DINO metric
  tiny        writes tiny random towers in the same layouts, for tests and offline demos
  text        the CLIP and T5 tokenizers, from tokenizer.json or the older vocabulary files
  convert     PyTorch-layout weights <-> Flax params
"""
