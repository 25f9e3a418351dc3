"""Reading a model's shape from its Hugging Face config.json, strictly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regionedit_jax.nn.transformer import ACTIVATIONS


class SettingsError(ValueError):
    """A config.json field this architecture cannot honour."""


def field(config: Mapping[str, Any], key: str, default: Any, where: str, positive: bool = True) -> Any:
    """``config[key]`` (``default`` when absent or null), of ``default``'s type; numbers > 0
    when ``positive``."""
    value = config.get(key, default)
    if value is None:
        value = default
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != isinstance(default, bool):
        raise SettingsError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
    if positive and kind in (int, float) and value <= 0:
        raise SettingsError(f"{where}: {key} must be positive, got {value}")
    return value


def activation(config: Mapping[str, Any], default: str, where: str) -> str:
    """``hidden_act``, one of the activations the transformer layers build."""
    act = field(config, "hidden_act", default, where)
    if act not in ACTIVATIONS:
        raise SettingsError(f"{where}: hidden_act {act!r} is not supported; supported: {sorted(ACTIVATIONS)}")
    return act


def refuse_unbuilt(config: Mapping[str, Any], only: Mapping[str, tuple[Any, ...]], where: str, model: str) -> None:
    """A field of ``only`` whose value builds another architecture than ``model`` is refused."""
    for key, allowed in only.items():
        if key in config and config[key] not in allowed:
            builds = " or ".join(map(repr, allowed))
            raise SettingsError(f"{where}: {key}={config[key]!r} is not built by this {model} (it builds {builds})")


def check_heads(width: int, heads: int, where: str) -> None:
    if width % heads:
        raise SettingsError(f"{where}: hidden_size {width} is not a multiple of num_attention_heads {heads}")


def vision_fields(config: Mapping[str, Any], defaults: Any, where: str) -> dict[str, Any]:
    """The fields a ViT's config shares between CLIP's vision tower and ``ViTModel``, read with
    ``defaults``' values where absent: width, mlp, depth, heads, image_size, patch_size,
    channels, activation, eps."""
    d = defaults
    out = dict(
        width=field(config, "hidden_size", d.width, where),
        mlp=field(config, "intermediate_size", d.mlp, where),
        depth=field(config, "num_hidden_layers", d.depth, where),
        heads=field(config, "num_attention_heads", d.heads, where),
        image_size=field(config, "image_size", d.image_size, where),
        patch_size=field(config, "patch_size", d.patch_size, where),
        channels=field(config, "num_channels", d.channels, where),
        activation=activation(config, d.activation, where),
        eps=field(config, "layer_norm_eps", d.eps, where),
    )
    check_heads(out["width"], out["heads"], where)
    if out["image_size"] % out["patch_size"]:
        raise SettingsError(
            f"{where}: image_size {out['image_size']} is not a multiple of patch_size {out['patch_size']}"
        )
    return out
