"""Every number a config carries, checked where it enters: before towers load or anything compiles.

``check(config)`` raises one ``ValueError`` naming the first bad key, its value and the range it
accepts (``train.num_steps=0: must be an integer >= 1``). Keys a config does not have are skipped,
so the check serves the training, editing and evaluation configs alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

# key -> (test, the accepted range in words)
_INT_POSITIVE = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
_INT_NONNEGATIVE = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
_FINITE_NONNEGATIVE = (lambda v: _is_number(v) and math.isfinite(v) and v >= 0, "a finite number >= 0")
_FINITE_POSITIVE = (lambda v: _is_number(v) and math.isfinite(v) and v > 0, "a finite number > 0")
_OPEN_UNIT = (lambda v: _is_number(v) and 0 < v < 1, "a number strictly between 0 and 1")
_UNIT = (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
_BETA = (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
_SEED = (lambda v: _is_int(v) and 0 <= v < 2**31, "an integer in [0, 2**31)")

RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": _SEED,
    "image_size": _INT_POSITIVE,
    "global_batch_size": _INT_POSITIVE,
    "edit.max_side": _INT_POSITIVE,
    "region.width": _INT_NONNEGATIVE,
    "region.num_heads": _INT_POSITIVE,
    "region.depth": _INT_NONNEGATIVE,
    "region.mlp_ratio": _INT_POSITIVE,
    "region.threshold": _OPEN_UNIT,
    "generator.num_steps": _INT_POSITIVE,
    "generator.guidance_scale": _FINITE_NONNEGATIVE,
    "train.num_steps": _INT_POSITIVE,
    "train.generator_steps": _INT_POSITIVE,
    "train.log_every": _INT_POSITIVE,
    "train.checkpoint_every": _INT_POSITIVE,
    "train.keep_checkpoints": _INT_POSITIVE,
    "train.panel_every": _INT_NONNEGATIVE,
    "train.panel_images": _INT_NONNEGATIVE,
    "train.eval_every": _INT_NONNEGATIVE,
    "optimizer.lr": _FINITE_POSITIVE,
    "optimizer.warmup_steps": _INT_NONNEGATIVE,
    "optimizer.end_lr_factor": _UNIT,
    "optimizer.b1": _BETA,
    "optimizer.b2": _BETA,
    "optimizer.weight_decay": _FINITE_NONNEGATIVE,
    "optimizer.grad_clip": _FINITE_NONNEGATIVE,
    **{
        f"loss.{k}": _FINITE_NONNEGATIVE
        for k in ("alpha", "beta", "clip", "direction", "structure", "direction_floor", "area")
    },
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _lookup(config, dotted: str) -> tuple[bool, Any]:
    node = config
    for part in dotted.split("."):
        try:
            node = node[part]
        except (KeyError, AttributeError, TypeError):
            return False, None
    return True, node


def violation(name: str, value: Any) -> str | None:
    """The range ``value`` misses for key ``name`` of ``RULES`` ("an integer >= 1"), or None if it is fine."""
    test, accepted = RULES[name]
    return None if test(value) else accepted


def check_value(name: str, value: Any) -> None:
    """One key of ``RULES`` (e.g. a command-line override of ``generator.guidance_scale``)."""
    accepted = violation(name, value)
    if accepted:
        raise ValueError(f"{name}={value!r}: must be {accepted}.")


def check(config) -> None:
    """Raises ValueError for the first key of ``RULES`` whose value is out of range."""
    for name in RULES:
        present, value = _lookup(config, name)
        if present:
            check_value(name, value)
    present, scales = _lookup(config, "region.scales")
    if present and (not scales or not all(_is_int(s) and s >= 1 for s in scales)):
        raise ValueError(
            f"region.scales={tuple(scales)!r}: must be a non-empty tuple of integers >= 1, e.g. (1, 2, 4)."
        )
    present, fusion = _lookup(config, "region.fusion")
    if present and fusion not in ("paper", "decoder"):
        raise ValueError(f"region.fusion={fusion!r}: must be 'paper' (Eq.1-2) or 'decoder'.")
