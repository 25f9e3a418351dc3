"""Captioners, rewriters and instruction writers behind one interface, chosen by name.

describer = make("rules")
describer.rewrite(["a cat on a sofa"], ["turn the cat into a dog"])  # ["a dog on a sofa"]
make({"backend": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "..."})
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from regionedit_jax.describe.base import (
    REASONS,
    ROLES,
    BackendError,
    DescribeError,
    Describer,
    Edit,
    UnsupportedRoleError,
)
from regionedit_jax.describe.clip_zero_shot import ClipCaptioner
from regionedit_jax.describe.openai import OpenAIDescriber
from regionedit_jax.describe.rules import RulesDescriber

BACKENDS: Mapping[str, type[Describer]] = {
    "rules": RulesDescriber,
    "openai": OpenAIDescriber,
    "clip": ClipCaptioner,
}

__all__ = [
    "BACKENDS",
    "REASONS",
    "ROLES",
    "BackendError",
    "ClipCaptioner",
    "DescribeError",
    "Describer",
    "Edit",
    "OpenAIDescriber",
    "RulesDescriber",
    "UnsupportedRoleError",
    "make",
]


def _as_dict(config: Any) -> dict[str, Any]:
    if hasattr(config, "to_dict"):  # ml_collections.ConfigDict
        return dict(config.to_dict())
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"make() takes a backend name, a mapping or a ConfigDict, got {type(config).__name__}")


def make(config_or_name: Any = "rules", **kwargs: Any) -> Describer:
    """Build a describe backend.

    config_or_name: a backend name ("rules", "openai"); or a mapping / ConfigDict with the name
        under "backend" (or "name") and constructor options beside it. A sub-mapping keyed by a
        backend's name holds options for that backend only, so one config can carry the options
        of several backends: {"backend": "rules", "openai": {"model": ...}} builds "rules".
    kwargs: constructor options; they override the config's.
    """
    if isinstance(config_or_name, Describer):
        if kwargs:
            raise TypeError("make() got options for an already built describer")
        return config_or_name
    if isinstance(config_or_name, str):
        name, options = config_or_name, {}
    else:
        options = _as_dict(config_or_name)
        name = options.pop("backend", None) or options.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"the describe config names no backend: set 'backend' to one of {sorted(BACKENDS)}")
        options.pop("name", None)
    if name not in BACKENDS:
        raise ValueError(f"unknown describe backend {name!r}; choose from {sorted(BACKENDS)}")
    per_backend = {key: options.pop(key) for key in list(options) if key in BACKENDS}
    own = per_backend.get(name) or {}
    options = {**options, **_as_dict(own), **kwargs}
    cls = BACKENDS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for describe backend {name!r}; accepted: {accepted}")
    return cls(**options)
