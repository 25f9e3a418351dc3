"""Frozen pretrained towers, loaded from Hugging Face folders (CLIP, T5 and DINO on the project's
own ``regionedit_jax.nn`` modules; the SD UNet and VAE on diffusers' Flax classes).

One module per model, each with ``load(name_or_path, dtype=...)`` taking a Hugging Face
hub id or a local folder in the HF layout, returning an object with pure, jittable apply
functions. Images cross this boundary as NHWC floats in [0, 1] of any size.

  clip        text and image embeddings in CLIP's joint space (+ patch tokens)
  t5          instruction tokens
  sd_inpaint  the 9-channel inpainting UNet, VAE, text encoder and noise schedule
  dino        CLS features for the DINO metric
  tiny        writes tiny random towers in the same layouts, for tests and offline demos
  convert     PyTorch-layout weights <-> Flax params
"""

import os as _os

# transformers 4.57 and diffusers 0.39 are the last releases with Flax classes and warn
# about it on every model built; the project pins them on purpose. Both libraries read
# these variables when first imported; a user's own setting wins.
_os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
_os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
