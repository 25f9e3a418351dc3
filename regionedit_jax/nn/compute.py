"""How a tower computes, one value every module takes: activation and parameter dtypes, and
the attention kernel (``attention.dot_product_attention``'s ``implementation``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from regionedit_jax.nn.attention import Implementation, check_implementation


@dataclasses.dataclass(frozen=True)
class Compute:
    dtype: Any = jnp.float32  # activations
    param_dtype: Any = jnp.float32  # parameters as stored
    attention: Implementation = None  # None (JAX chooses), "xla" or "cudnn"

    def __post_init__(self) -> None:
        check_implementation(self.attention)

    @property
    def kw(self) -> dict[str, Any]:
        """``dtype`` and ``param_dtype``, as flax layers take them."""
        return {"dtype": self.dtype, "param_dtype": self.param_dtype}
