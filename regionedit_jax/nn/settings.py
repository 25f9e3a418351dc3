"""Reading a model's shape from its Hugging Face config.json, strictly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
