"""Frozen pretrained towers, loaded from Hugging Face folders onto the project's own Flax modules
(``regionedit_jax.nn``): no transformers or diffusers model class is used at run time.

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

# Tokenizers still load through transformers, which logs conversion notices on every load
# ("You set `add_prefix_space`...", T5's legacy behaviour); it reads this variable when first
# imported, and a user's own setting wins.
_os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
