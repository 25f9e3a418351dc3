"""CLIP in Flax: the text transformer (also SD's text encoder), the vision transformer, the model.

Settings come from a Hugging Face ``config.json`` (``model_type`` "clip" or "clip_text_model")
through ``ClipSettings.from_config`` / ``TextSettings.from_config``: every field the
architecture reads is taken, with transformers' defaults where a field is absent, and a value
it cannot honour is refused with a message naming the field. Parameter names follow the
PyTorch keys (``text_model.encoder.layers.0.self_attn.q_proj``); images are NHWC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from regionedit_jax.nn.compute import Compute
from regionedit_jax.nn.settings import activation, check_heads, field, vision_fields
from regionedit_jax.nn.transformer import Encoder


@dataclasses.dataclass(frozen=True)
class TextSettings:
    """The text tower's shape (transformers' ``CLIPTextConfig`` defaults)."""

    vocab_size: int = 49408
    width: int = 512
    mlp: int = 2048
    depth: int = 12
    heads: int = 8
    max_length: int = 77  # positions
    activation: str = "quick_gelu"
    eps: float = 1e-5
    eos_token_id: int = 49407  # configs written before transformers 4.31 say 2: pool at the highest id

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "CLIP text config") -> TextSettings:
        d = cls()
        out = cls(
            vocab_size=field(config, "vocab_size", d.vocab_size, where),
            width=field(config, "hidden_size", d.width, where),
            mlp=field(config, "intermediate_size", d.mlp, where),
            depth=field(config, "num_hidden_layers", d.depth, where),
            heads=field(config, "num_attention_heads", d.heads, where),
            max_length=field(config, "max_position_embeddings", d.max_length, where),
            activation=activation(config, d.activation, where),
            eps=field(config, "layer_norm_eps", d.eps, where),
            eos_token_id=field(config, "eos_token_id", d.eos_token_id, where, positive=False),
        )
        check_heads(out.width, out.heads, where)
        return out


@dataclasses.dataclass(frozen=True)
class VisionSettings:
    """The vision tower's shape (transformers' ``CLIPVisionConfig`` defaults)."""

    width: int = 768
    mlp: int = 3072
    depth: int = 12
    heads: int = 12
    image_size: int = 224
    patch_size: int = 32
    channels: int = 3
    activation: str = "quick_gelu"
    eps: float = 1e-5

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "CLIP vision config") -> VisionSettings:
        return cls(**vision_fields(config, cls(), where))


@dataclasses.dataclass(frozen=True)
class ClipSettings:
    text: TextSettings = TextSettings()
    vision: VisionSettings = VisionSettings()
    projection_dim: int = 512

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str = "CLIP config") -> ClipSettings:
        return cls(
            text=TextSettings.from_config(config.get("text_config") or {}, f"{where} text_config"),
            vision=VisionSettings.from_config(config.get("vision_config") or {}, f"{where} vision_config"),
            projection_dim=field(config, "projection_dim", cls.projection_dim, where),
        )


class _TextEmbeddings(nn.Module):
    settings: TextSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, input_ids: jax.Array, position_ids: jax.Array) -> jax.Array:
        s = self.settings
        tokens = nn.Embed(s.vocab_size, s.width, param_dtype=self.compute.param_dtype, name="token_embedding")(
            input_ids
        )
        return tokens + nn.Embed(
            s.max_length, s.width, param_dtype=self.compute.param_dtype, name="position_embedding"
        )(position_ids)


class TextTransformer(nn.Module):
    """Causal text transformer. ids [B, L] (L <= max_length), mask [B, L] (1 = token) ->
    (hidden [B, L, W] after the final LayerNorm, pooled [B, W] at the end-of-text token)."""

    settings: TextSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(
        self, input_ids: jax.Array, attention_mask: jax.Array | None = None, position_ids: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        s = self.settings
        b, length = input_ids.shape
        if length > s.max_length:
            raise ValueError(f"{length} text tokens; this CLIP takes at most {s.max_length}")
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(length), (b, length))
        x = _TextEmbeddings(s, self.compute, name="embeddings")(input_ids, position_ids).astype(self.compute.dtype)
        mask = jnp.tril(jnp.ones((length, length), bool))[None, None]  # [1, 1, L, L]
        if attention_mask is not None:
            mask = mask & (attention_mask[:, None, None, :] > 0)
        x = Encoder(s.depth, s.heads, s.mlp, s.activation, s.eps, self.compute, name="encoder")(x, mask)
        x = nn.LayerNorm(epsilon=s.eps, **self.compute.kw, name="final_layer_norm")(x)
        if s.eos_token_id == 2:  # legacy configs: the end-of-text token has the highest id
            eos = jnp.argmax(input_ids, axis=-1)
        else:
            eos = jnp.argmax(input_ids == s.eos_token_id, axis=-1)
        return x, x[jnp.arange(b), eos]


class _VisionEmbeddings(nn.Module):
    settings: VisionSettings
    compute: Compute = Compute()

    @nn.compact
    def __call__(self, pixels: jax.Array) -> jax.Array:
        s = self.settings
        cls = self.param("class_embedding", nn.initializers.normal(1.0), (s.width,), self.compute.param_dtype)
        p = s.patch_size
        patches = nn.Conv(
            s.width,
            (p, p),
            strides=(p, p),
            padding="VALID",
            use_bias=False,
            dtype=pixels.dtype,
            param_dtype=self.compute.param_dtype,
            name="patch_embedding",
        )(pixels)  # [B, g, g, W]
        b = patches.shape[0]
        tokens = jnp.concatenate(
            [jnp.broadcast_to(cls.astype(patches.dtype), (b, 1, s.width)), patches.reshape(b, -1, s.width)], axis=1
        )
        positions = nn.Embed(s.grid**2 + 1, s.width, param_dtype=self.compute.param_dtype, name="position_embedding")
        return tokens + positions(jnp.arange(s.grid**2 + 1))[None]


class VisionTransformer(nn.Module):
    """ViT. pixels [B, S, S, C] (normalised, S = image_size) -> (hidden [B, 1 + N, W] before the
    post-LayerNorm, pooled [B, W] = post-LayerNorm of the class token)."""

    settings: VisionSettings
    compute: Compute = Compute()

    def setup(self) -> None:
        s = self.settings
        self.embeddings = _VisionEmbeddings(s, self.compute)
        self.pre_layrnorm = nn.LayerNorm(epsilon=s.eps, **self.compute.kw)
        self.encoder = Encoder(s.depth, s.heads, s.mlp, s.activation, s.eps, self.compute)
        self.post_layernorm = nn.LayerNorm(epsilon=s.eps, **self.compute.kw)

    def __call__(self, pixels: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = self.settings
        if pixels.shape[1:] != (s.image_size, s.image_size, s.channels):
            raise ValueError(
                f"pixels must be [B, {s.image_size}, {s.image_size}, {s.channels}] (NHWC), got {pixels.shape}"
            )
        x = self.encoder(self.pre_layrnorm(self.embeddings(pixels.astype(self.compute.dtype))))
        return x, self.post_layernorm(x[:, 0])


class ClipModel(nn.Module):
    """Both towers and their projections into the joint space (``projection_dim``)."""

    settings: ClipSettings
    compute: Compute = Compute()

    def setup(self) -> None:
        s, kw = self.settings, self.compute.kw
        self.text_model = TextTransformer(s.text, compute=self.compute)
        self.vision_model = VisionTransformer(s.vision, compute=self.compute)
        self.text_projection = nn.Dense(s.projection_dim, use_bias=False, **kw)
        self.visual_projection = nn.Dense(s.projection_dim, use_bias=False, **kw)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(2.6592), (), self.compute.param_dtype)

    def __call__(
        self, input_ids: jax.Array, attention_mask: jax.Array, pixels: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """-> (text [B, d], image [B, d] projections, unnormalised; logit scale, a log)."""
        text = self.text_projection(self.text_model(input_ids, attention_mask)[1])
        image = self.visual_projection(self.vision_model(pixels)[1])
        return text, image, self.logit_scale

    def shapes(self, batch: int = 1) -> Any:
        """The parameter tree as ``jax.ShapeDtypeStruct`` leaves (nothing is initialised)."""
        s = self.settings
        ids = jnp.zeros((batch, s.text.max_length), jnp.int32)
        pixels = jnp.zeros((batch, s.vision.image_size, s.vision.image_size, s.vision.channels), self.compute.dtype)
        return jax.eval_shape(lambda: self.init(jax.random.key(0), ids, ids, pixels))["params"]


class ClipTextModel(nn.Module):
    """The text tower alone (SD's text encoder): ids [B, L] -> hidden [B, L, W]."""

    settings: TextSettings
    compute: Compute = Compute()

    def setup(self) -> None:
        self.text_model = TextTransformer(self.settings, self.compute)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        return self.text_model(input_ids, attention_mask)[0]

    def shapes(self, batch: int = 1) -> Any:
        ids = jnp.zeros((batch, self.settings.max_length), jnp.int32)
        return jax.eval_shape(lambda: self.init(jax.random.key(0), ids))["params"]
