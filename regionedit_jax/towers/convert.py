"""PyTorch-layout weights <-> Flax params: the one weight conversion every tower uses.

Hugging Face checkpoints store PyTorch state dicts (``model.safetensors``,
``diffusion_pytorch_model.safetensors``). Loading maps each key to a Flax path by a few
declarative rules, checked against the target tree's shapes (from ``jax.eval_shape``,
so the real 860M-parameter UNet is never randomly initialised just to learn its
shapes). The inverse writes Flax params back in the PyTorch layout; the tiny towers use
it to produce checkpoints in exactly the files real weights come in.

Rules, for a key ``a.b.weight``:
  * norms: ``weight``/``gamma`` -> ``scale``; embeddings: ``weight`` -> ``embedding``;
  * convolutions: ``weight`` [O, I, kh, kw] -> ``kernel`` [kh, kw, I, O];
  * dense layers: ``weight`` [O, I] -> ``kernel`` [I, O]; ``beta`` -> ``bias``;
  * ``naming="diffusers"``: list indices join their list's name (``down_blocks.0`` ->
    ``down_blocks_0``) and the VAE's attention names ``to_q/to_k/to_v/to_out.0`` map to
    ``query/key/value/proj_attn``; ``naming="transformers"``: indices stay path parts.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import numpy as np
from flax import traverse_util
from safetensors.numpy import load_file, save_file

Naming = Literal["transformers", "diffusers"]
Path = tuple[str, ...]

# diffusers module lists whose Flax names carry their index as a suffix (``resnets_1``).
_DIFFUSERS_LISTS = frozenset(
    {
        "down_blocks",
        "up_blocks",
        "resnets",
        "attentions",
        "transformer_blocks",
        "downsamplers",
        "upsamplers",
        "to_out",
        "net",
    }
)
# The VAE attention block's Flax names for the PyTorch ``Attention`` projections.
_VAE_ATTENTION = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out_0": "proj_attn"}


class WeightsError(ValueError):
    """A checkpoint does not fit the model its config.json describes."""


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` file, or every shard listed by a ``.safetensors.index.json``."""
    path = os.fspath(path)
    if path.endswith(".index.json"):
        with open(path, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state: dict[str, np.ndarray] = {}
        for shard in shards:
            state.update(load_file(os.path.join(os.path.dirname(path), shard)))
        return state
    return load_file(path)


def write_safetensors(state: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes a PyTorch-layout state dict as transformers/diffusers ``save_pretrained`` does."""
    arrays = {k: np.array(v, order="C") for k, v in state.items()}  # keeps 0-d arrays 0-d
    save_file(arrays, os.fspath(path), metadata={"format": "pt"})


def safetensors_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """A safetensors file's header: its metadata and sorted ``[key, shape, dtype]`` rows."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    metadata = header.pop("__metadata__", {})
    return {"metadata": metadata, "tensors": sorted([k, list(v["shape"]), v["dtype"]] for k, v in header.items())}


def _torch_path(key: str, naming: Naming) -> Path:
    parts: list[str] = []
    for part in key.split("."):
        if naming == "diffusers" and part.isdigit() and parts:
            parts[-1] = f"{parts[-1]}_{part}"
        else:
            parts.append(part)
    return tuple(parts)


def _candidates(path: Path, value: np.ndarray) -> Iterable[tuple[Path, Callable[[np.ndarray], np.ndarray]]]:
    """Flax paths a PyTorch tensor may map to, most specific first, with their transforms."""
    *parent, leaf = path
    parents = [tuple(parent)]
    if parent and parent[-1] in _VAE_ATTENTION:
        parents.insert(0, (*parent[:-1], _VAE_ATTENTION[parent[-1]]))
    same = lambda x: x
    for p in parents:
        if leaf in ("weight", "gamma"):
            yield (*p, "scale"), same
        if leaf == "weight":
            yield (*p, "embedding"), same
            if value.ndim == 4 and value.shape[2:] == (1, 1):  # 1x1 conv stored for a dense layer
                yield (*p, "kernel"), lambda x: x[:, :, 0, 0].T
            if value.ndim == 4:
                yield (*p, "kernel"), lambda x: x.transpose(2, 3, 1, 0)
            if value.ndim == 2:
                yield (*p, "kernel"), lambda x: x.T
        if leaf in ("bias", "beta"):
            yield (*p, "bias"), same
    yield path, same


def torch_to_flax(
    state: Mapping[str, np.ndarray],
    target: Any,
    *,
    naming: Naming,
    ignore: Iterable[str] = (),
    strip_prefixes: Iterable[str] = (),
    dtype: Any = None,
    source: str = "checkpoint",
) -> Any:
    """Maps a PyTorch state dict onto a Flax params tree.

    Args:
      state: PyTorch key -> array, as read by ``read_safetensors``.
      target: the Flax params tree or its ``jax.eval_shape`` (anything with ``.shape``).
      naming: "transformers" or "diffusers" (how list indices appear in Flax paths).
      ignore: regexes for keys the Flax model has no use for (buffers, unused heads).
      strip_prefixes: leading key parts to drop when the target has no such part
        (a base model's weights saved inside a model with a head, e.g. ``vit.``).
      dtype: cast every array to this dtype (default: keep the stored dtype).
      source: the file the state came from, named in errors.
    Returns:
      A params tree shaped like ``target``, holding numpy arrays.
    Raises:
      WeightsError: a key is unexpected, a shape differs, or a parameter is missing.
    """
    flat_target = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(target).items()}
    ignore_res = [re.compile(p) for p in ignore]
    prefixes = tuple(strip_prefixes)
    out: dict[Path, np.ndarray] = {}
    unexpected, wrong_shape = [], []
    for key, value in state.items():
        path = _torch_path(key, naming)
        while path[0] in prefixes and not any(k[0] == path[0] for k in flat_target):
            path = path[1:]
        match = None
        for flax_path, transform in _candidates(path, value):
            if flax_path in flat_target:
                converted = transform(value)
                if tuple(converted.shape) == flat_target[flax_path]:
                    match = flax_path, converted
                    break
                wrong_shape.append(
                    f"{key} {tuple(value.shape)} -> {'/'.join(flax_path)} expects {flat_target[flax_path]}"
                )
        if match is None:
            if not any(r.search(key) for r in ignore_res):
                unexpected.append(key)
            continue
        flax_path, converted = match
        out[flax_path] = converted if dtype is None else converted.astype(dtype)
    missing = sorted("/".join(k) for k in flat_target if k not in out)
    if missing or unexpected:
        lines = [f"{source} does not fit the model described by its config.json."]
        if wrong_shape:
            lines.append(f"  shape mismatches ({len(wrong_shape)}): " + "; ".join(wrong_shape[:5]))
        if missing:
            lines.append(f"  missing parameters ({len(missing)}): " + ", ".join(missing[:8]))
        if unexpected:
            lines.append(f"  unexpected weights ({len(unexpected)}): " + ", ".join(sorted(unexpected)[:8]))
        lines.append("  Is this folder the right model type, with weights saved from the same config?")
        raise WeightsError("\n".join(lines))
    return traverse_util.unflatten_dict(out)


def _torch_key(path: Path, naming: Naming) -> str:
    parts = []
    for part in path:
        head, _, index = part.rpartition("_")
        if naming == "diffusers" and index.isdigit() and head in _DIFFUSERS_LISTS:
            parts.extend([head, index])
        else:
            parts.append(part)
    return ".".join(parts)


def flax_to_torch(params: Any, *, naming: Naming) -> dict[str, np.ndarray]:
    """Writes a Flax params tree as the PyTorch state dict ``save_pretrained`` would store."""
    inverse_attention = {v: k for k, v in _VAE_ATTENTION.items()}
    state = {}
    for path, value in traverse_util.flatten_dict(params).items():
        value = np.asarray(value)
        *parent, leaf = path
        if naming == "diffusers" and parent and parent[-1] in inverse_attention:
            parent[-1] = inverse_attention[parent[-1]]
        if leaf == "kernel":
            leaf, value = "weight", value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
        elif leaf in ("scale", "embedding"):
            leaf = "weight"
        state[_torch_key((*parent, leaf), naming)] = value
    return state


def load_params(
    folder: str,
    base: str,
    target: Any,
    *,
    what: str,
    naming: Naming,
    dtype: Any,
    ignore: Iterable[str] = (),
    strip_prefixes: Iterable[str] = (),
) -> Any:
    """Reads ``folder/base.safetensors`` (or its shards) onto ``target``, cast to ``dtype``.

    Returns device arrays (``jax.numpy``). ``target`` is usually ``jax.eval_shape`` of the
    model's init. Errors name the file and what does not fit.
    """
    import jax.numpy as jnp

    from regionedit_jax.towers import files

    path = files.weights_file(folder, what, base)
    params = torch_to_flax(
        read_safetensors(path),
        target,
        naming=naming,
        ignore=ignore,
        strip_prefixes=strip_prefixes,
        source=f"{what}: {path!r}",
    )
    return traverse_util.unflatten_dict(
        {k: jnp.asarray(v, dtype) for k, v in traverse_util.flatten_dict(params).items()}
    )
