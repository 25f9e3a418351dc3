"""The device mesh and how every pytree is laid out on it.

Axes ``data`` and ``fsdp`` (sizes in ``config.mesh``; -1 takes the remaining devices).
Batches split over both axes. Trainable params follow the logical axis names their
modules declare (``config.sharding.logical_rules``: logical name -> mesh axis or None).
Frozen tower params follow regex rules on their paths (``config.sharding.frozen``:
``(regex, "fsdp" | "replicate")``, first match wins): ``fsdp`` shards a leaf's largest
dimension that the fsdp axis divides, so big towers need not fit on every device.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp")
BATCH = P(AXES)


def make_mesh(sizes: dict[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ("data", "fsdp") mesh; one size may be -1 (the rest). Errors say what fits."""
    devices = list(devices if devices is not None else jax.devices())
    shape = [int(sizes.get(a, 1)) for a in AXES]
    if shape.count(-1) > 1:
        raise ValueError(f"mesh: at most one axis may be -1; got {dict(zip(AXES, shape))}.")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if len(devices) % known:
            raise ValueError(f"mesh {dict(zip(AXES, shape))}: {len(devices)} devices are not a multiple of {known}.")
        shape[shape.index(-1)] = len(devices) // known
    if int(np.prod(shape)) != len(devices):
        raise ValueError(
            f"mesh {dict(zip(AXES, shape))} needs {int(np.prod(shape))} devices; there are {len(devices)}."
        )
    return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))


def logical_shardings(boxed_tree: Any, mesh: Mesh, rules: Sequence[tuple[str, str | None]]) -> Any:
    """NamedShardings for a tree of flax ``Partitioned`` (or plain) leaves via logical rules.

    A dimension the rule's mesh axes do not divide (e.g. a 1-wide ``embed`` output) is
    replicated instead, as ``frozen_shardings`` does for the towers.
    """
    specs = nn.get_partition_spec(boxed_tree)
    shardings = nn.logical_to_mesh_sharding(specs, mesh, [tuple(r) for r in rules])

    def fit(sharding: NamedSharding, leaf: Any) -> NamedSharding:
        spec = list(sharding.spec)
        for i, axes in enumerate(spec):
            names = (axes,) if isinstance(axes, str) else tuple(axes or ())
            if names and leaf.shape[i] % int(np.prod([mesh.shape[a] for a in names])):
                spec[i] = None
        return NamedSharding(mesh, P(*spec))

    return jax.tree_util.tree_map(fit, shardings, nn.meta.unbox(boxed_tree))


def _fsdp_spec(shape: tuple[int, ...], size: int) -> P:
    for axis in np.argsort(shape)[::-1]:
        if shape[axis] % size == 0 and shape[axis] >= size:
            spec = [None] * len(shape)
            spec[axis] = "fsdp"
            return P(*spec)
    return P()


def frozen_shardings(tree: Any, mesh: Mesh, rules: Sequence[tuple[str, str]]) -> Any:
    """NamedShardings for frozen params from (regex, strategy) rules on "a/b/c" paths."""
    compiled = [(re.compile(pattern), strategy) for pattern, strategy in rules]
    for _, strategy in compiled:
        if strategy not in ("fsdp", "replicate"):
            raise ValueError(f"sharding.frozen: strategy must be 'fsdp' or 'replicate'; got {strategy!r}.")
    size = mesh.shape["fsdp"]

    def one(path, leaf):
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        strategy = next((s for r, s in compiled if r.search(name)), "replicate")
        spec = _fsdp_spec(tuple(leaf.shape), size) if strategy == "fsdp" and size > 1 else P()
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(one, tree)
