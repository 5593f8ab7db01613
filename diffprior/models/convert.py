"""Map diffusers / transformers PyTorch state dicts onto our Flax parameters and back.

Our modules carry diffusers' names with list indices folded into the name
(``down_blocks.0.resnets.1.conv1.weight`` -> ``down_blocks_0/resnets_1/conv1/kernel``), so the
conversion is a renaming plus the layout change of each tensor:

* convolution weight ``(O, I, kh, kw)`` -> kernel ``(kh, kw, I, O)``;
* linear weight ``(O, I)`` -> kernel ``(I, O)``;
* norm weight -> ``scale``; embedding weight -> ``embedding`` (no transpose);
* a 1x1 convolution ``(O, I, 1, 1)`` and a linear layer ``(O, I)`` hold the same numbers, so
  either form loads into either module (old SD checkpoints store VAE attention projections
  as 1x1 convolutions; diffusers' Transformer2D ``proj_in``/``proj_out`` are 1x1
  convolutions unless ``use_linear_projection``). No other reshaping: a tensor with the right
  number of elements but another shape (a linear weight stored transposed, a convolution
  with in/out channels swapped) is a shape mismatch, never loaded scrambled.

Every problem found (missing tensor, unexpected tensor, wrong shape) is collected and raised
together as one :class:`WeightLoadError`.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from ..errors import DiffpriorError

# Old diffusers VAE attention names (SD v1.4 era checkpoints) -> current names.
_LEGACY = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
# Buffers and heads that some checkpoints carry but the model does not use.
_IGNORED = re.compile(r"(position_ids$|^text_projection\.|^logit_scale$|^visual)")
# PyTorch ModuleList names whose index becomes part of a Flax module name.
_LISTS = {"down_blocks", "up_blocks", "resnets", "attentions", "downsamplers", "upsamplers",
          "transformer_blocks", "layers", "to_out", "net"}


class WeightLoadError(DiffpriorError, ValueError):
    """A state dict does not match the model configuration; lists every problem."""

    def __init__(self, component: str, problems: list[str]):
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{component}: {len(self.problems)} problem(s) loading weights:\n  {shown}{more}")


def _torch_key_to_path(key: str) -> tuple:
    parts = key.split(".")
    if len(parts) >= 2 and parts[-2] in _LEGACY:  # legacy VAE attention
        parts = parts[:-2] + _LEGACY[parts[-2]].split(".") + parts[-1:]
    out: list[str] = []
    for p in parts:
        if p.isdigit() and out:
            out[-1] = f"{out[-1]}_{p}"
        else:
            out.append(p)
    return tuple(out)


def _path_to_torch_key(path: tuple) -> str:
    parts = []
    for p in path[:-1]:
        m = re.fullmatch(r"(.+)_(\d+)", p)
        parts.append(f"{m.group(1)}.{m.group(2)}" if m and m.group(1) in _LISTS else p)
    return ".".join(parts + ["weight" if path[-1] in ("kernel", "scale", "embedding") else path[-1]])


def _torch_shape(path: tuple, shape) -> tuple:
    shape = tuple(shape)
    if path[-1] == "kernel" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if path[-1] == "kernel" and len(shape) == 2:
        return shape[::-1]
    return shape


def _to_flax(value: np.ndarray, leaf: str, shape: tuple) -> np.ndarray | None:
    """``value`` in PyTorch layout converted to the Flax ``shape``, or ``None`` if its shape is
    not one of the layouts diffusers/transformers write for that parameter.

    Accepted: the tensor's own layout (conv ``(O, I, kh, kw)``, linear ``(O, I)``, anything
    else as is) and, for a kernel whose two spatial sizes are 1, the other of the 1x1
    convolution / linear pair (``(O, I, 1, 1)`` <-> ``(O, I)``). Nothing is reshaped by its
    element count alone, so a weight stored transposed or with in/out channels swapped is
    refused rather than loaded scrambled.
    """
    v = np.asarray(value)
    shape = tuple(shape)
    if leaf == "kernel":
        if v.ndim == 4 and len(shape) == 2 and v.shape[2:] == (1, 1):
            v = v[:, :, 0, 0]  # 1x1 convolution -> linear layer
        elif v.ndim == 2 and len(shape) == 4 and shape[:2] == (1, 1):
            v = v[:, :, None, None]  # linear layer -> 1x1 convolution
        if v.ndim == 4:
            v = v.transpose(2, 3, 1, 0)
        elif v.ndim == 2:
            v = v.T
    return v if v.shape == shape else None


def _mismatch(key: str, value, full: tuple, shape: tuple) -> str:
    found = tuple(np.shape(value))
    want = _torch_shape(full, shape)
    hint = ""
    if sorted(found) == sorted(want) and np.prod(found) == np.prod(want):
        hint = " -- same size, different layout: stored transposed or with in/out channels swapped?"
    return (f"shape mismatch for {key}: checkpoint {found}, model expects {want} "
            f"(PyTorch layout; Flax {'/'.join(full)} {shape}){hint}")


def state_dict_to_params(state: Mapping[str, np.ndarray], expected, component: str, dtype=np.float32):
    """Convert a PyTorch-named state dict to a Flax params tree shaped like ``expected``.

    Args:
        state: mapping from PyTorch parameter names to arrays.
        expected: a params tree (arrays or ``jax.ShapeDtypeStruct``) giving target shapes.
        component: name used in error messages (``"unet"``, ``"vae"``, ``"text_encoder"``).
        dtype: dtype of the returned arrays.

    Returns:
        A nested dict of numpy arrays with the structure of ``expected``.

    Raises:
        WeightLoadError: listing every missing, unexpected or mis-shaped tensor.
    """
    target = flatten_dict(expected)
    modules = {p[:-1]: set() for p in target}
    for p in target:
        modules[p[:-1]].add(p[-1])
    roots = {p[0] for p in target}
    if len(roots) == 1:  # transformers >= 5 saves CLIPTextModel without its "text_model." prefix
        root = next(iter(roots))
        if not any(k.startswith(root + ".") for k in state):
            state = {f"{root}.{k}": v for k, v in state.items()}
    out, problems, used = {}, [], set()
    for key, value in state.items():
        if _IGNORED.search(key):
            continue
        path = _torch_key_to_path(key)
        mod, leaf = path[:-1], path[-1]
        if leaf == "weight":
            leaves = modules.get(mod, set())
            leaf = next((n for n in ("kernel", "scale", "embedding") if n in leaves), "kernel")
        full = mod + (leaf,)
        if full not in target:
            problems.append(f"unexpected tensor {key} {tuple(np.shape(value))}")
            continue
        shape = tuple(target[full].shape)
        conv = _to_flax(value, leaf, shape)
        if conv is None:
            problems.append(_mismatch(key, value, full, shape))
            continue
        out[full] = conv.astype(dtype)
        used.add(full)
    for full in target:
        if full not in used and not any(p.startswith(f"shape mismatch for {_path_to_torch_key(full)}:")
                                        for p in problems):
            problems.append(f"missing tensor {_path_to_torch_key(full)} {_torch_shape(full, target[full].shape)}")
    if problems:
        raise WeightLoadError(component, problems)
    return unflatten_dict(out)


def params_to_state_dict(params) -> dict[str, np.ndarray]:
    """Inverse of :func:`state_dict_to_params`: Flax params -> PyTorch-named float32 arrays."""
    out = {}
    for path, value in flatten_dict(params).items():
        v = np.asarray(value, dtype=np.float32)
        leaf = path[-1]
        if leaf == "kernel":
            if v.ndim == 4:
                v = v.transpose(3, 2, 0, 1)
            elif v.ndim == 2:
                v = v.T
        out[_path_to_torch_key(path)] = np.ascontiguousarray(v)
    return out
