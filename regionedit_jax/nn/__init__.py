"""The project's own Flax modules for the frozen towers (NHWC, one attention function).

Submodules are named after the PyTorch checkpoint keys, so loading is the declarative
rename-and-transpose of ``towers.convert`` checked against ``jax.eval_shape`` of ``init``.

  settings.py     reading a model's shape from config.json: every field honoured or refused
  attention.py    dot_product_attention: the one attention function; its kernel is a config value
  transformer.py  the pre-LayerNorm encoder of CLIP's text and vision towers
  clip.py         CLIP: settings read from config.json, text transformer, vision transformer, model
  t5.py           the T5 encoder: relative position buckets, RMS norms, ReLU or gated-GELU feed-forwards
  vit.py          the ViT of transformers' ViTModel layout (DINO)
  conv_blocks.py  the ResNet block, down- and upsampling of SD's UNet and VAE
  unet.py         SD's UNet2DConditionModel (SD 1.x and 2.x)
  vae.py          SD's AutoencoderKL
"""
