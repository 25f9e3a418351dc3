"""The train state (trainable params + optimizer) and the optimizer from the config."""

from __future__ import annotations

from typing import Any

import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    step: Any  # int32 scalar
    params: Any  # {"region": ..., "projector": ...}
    opt_state: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation) -> TrainState:
        import jax.numpy as jnp

        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), tx=tx)

    def apply_gradients(self, grads: Any) -> TrainState:
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates), opt_state=opt_state)


def learning_rate(config) -> optax.Schedule:
    """Linear warmup to ``lr``, then cosine decay to ``lr * end_lr_factor`` at ``num_steps``."""
    c = config.optimizer
    warmup = min(c.warmup_steps, max(1, config.train.num_steps - 1))
    return optax.warmup_cosine_decay_schedule(
        0.0, c.lr, warmup, max(config.train.num_steps, warmup + 1), c.lr * c.end_lr_factor
    )


def make_optimizer(config) -> optax.GradientTransformation:
    """AdamW with warmup + cosine, after global-norm clipping (``config.optimizer``)."""
    c = config.optimizer
    return optax.chain(
        optax.clip_by_global_norm(c.grad_clip),
        optax.adamw(learning_rate(config), b1=c.b1, b2=c.b2, weight_decay=c.weight_decay),
    )
