"""Region-conditioned generators behind one contract (``base.Generator``), chosen by name.

``config.generator`` is shared by training and editing::

  generator = dict(name="sd_inpaint", num_steps=50, guidance_scale=7.5,
                   sd_inpaint=dict(eta=0.0, blend=True))   # options of the named generator

Training builds the same generator with its own step count (``config.train.generator_steps``).
A generator is a module with ``TOWERS`` (the frozen towers it needs, by ``config.towers``
name), ``OPTIONS`` (option defaults) and ``build(towers, options, num_steps) -> Generator``.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from regionedit_jax.generators.base import Generator

# name -> module implementing it
REGISTRY = {
    "sd_inpaint": "regionedit_jax.generators.sd_inpaint",
    "oracle": "regionedit_jax.generators.oracle",  # the shapes world (regionedit_jax/worlds)
}

__all__ = ["Generator", "REGISTRY", "make", "options", "towers_for"]


def _module(name: str):
    if name not in REGISTRY:
        near = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"config.generator.name {name!r} is not a generator{hint}; choose one of {sorted(REGISTRY)}.")
    return importlib.import_module(REGISTRY[name])


def towers_for(generator_config) -> tuple[str, ...]:
    """The ``config.towers`` names the configured generator loads."""
    return tuple(_module(generator_config.name).TOWERS)


def options(generator_config) -> dict[str, Any]:
    """The named generator's options: its defaults updated by ``config.generator.<name>``.

    An unknown option is an error naming the nearest known one.
    """
    module = _module(generator_config.name)
    given = dict(generator_config.get(generator_config.name, None) or {})
    for key in given:
        if key not in module.OPTIONS:
            near = difflib.get_close_matches(key, module.OPTIONS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(
                f"config.generator.{generator_config.name}.{key} is not an option of "
                f"{generator_config.name!r}{hint} (it takes {sorted(module.OPTIONS)})."
            )
    return {**module.OPTIONS, **given}


def make(generator_config, towers: dict[str, Any], *, num_steps: int | None = None) -> Generator:
    """Builds the configured generator from loaded ``towers`` (``towers.bundle.load``).

    ``num_steps`` overrides ``config.generator.num_steps`` (training uses fewer).
    """
    module = _module(generator_config.name)
    missing = [t for t in module.TOWERS if t not in towers]
    if missing:
        raise ValueError(
            f"generator {generator_config.name!r} needs the towers {missing}; load them with "
            f"towers.bundle.load(config.towers, ..., {tuple(module.TOWERS)})."
        )
    steps = int(generator_config.num_steps if num_steps is None else num_steps)
    if steps < 1:
        raise ValueError(f"generator steps must be at least 1; got {steps}.")
    return module.build({t: towers[t] for t in module.TOWERS}, options(generator_config), steps)
