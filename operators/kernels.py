"""Blur kernel makers: Gaussian, random motion trajectories, and kernels read from files.

All kernels are float32 numpy arrays of odd size, nonnegative and normalised to sum 1.
Defaults follow DPS (Chung et al., ICLR 2023) and P2L (Chung et al., ICML 2024): 61 x 61
kernels, Gaussian with standard deviation 3.0, motion blur with intensity 0.5.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional, Union

import numpy as np

import jax
import jax.numpy as jnp

from .blur import check_kernel

__all__ = ["gaussian_kernel", "motion_kernel", "load_kernel", "normalize_kernel"]


def _check_size(size) -> int:
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"Kernel size must be an int; got {size!r}.")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Kernel size must be a positive odd int; got {size}.")
    return int(size)


def normalize_kernel(kernel, what: str = "kernel") -> np.ndarray:
    """Validate a blur kernel as a point-spread function and scale it to sum 1.

    Args:
        kernel: Array-like ``(kh, kw)``.
        what: Name used in error messages.

    Returns:
        float32 kernel with nonnegative entries summing to 1.

    Raises:
        ValueError: If the kernel is not 2-D, has an even side, has non-finite or negative
            entries, or sums to zero.
    """
    k = check_kernel(kernel, what).astype(np.float64)
    if np.any(k < 0):
        raise ValueError(f"{what} has negative entries (min {k.min():.3g}); a PSF must be >= 0.")
    total = k.sum()
    if not total > 0:
        raise ValueError(f"{what} sums to {total:.3g}; expected a positive sum.")
    return (k / total).astype(np.float32)


def gaussian_kernel(size: int = 61, sigma: float = 3.0) -> np.ndarray:
    r"""Isotropic Gaussian blur kernel.

    .. math::
       k_{p, q} \propto \exp\!\left(-\frac{p^2 + q^2}{2 \sigma^2}\right), \qquad
       p, q \in \{-\lfloor s/2 \rfloor, \dots, \lfloor s/2 \rfloor\},

    normalised to sum 1. DPS builds the same kernel by Gaussian-filtering a delta (which
    truncates it at :math:`4\sigma`; the difference is below :math:`10^{-3}` of the peak).

    Args:
        size: Odd side length :math:`s`.
        sigma: Standard deviation in pixels (> 0).

    Returns:
        ``(size, size)`` float32 kernel.

    Raises:
        ValueError: For an even/nonpositive size or nonpositive sigma.
    """
    size = _check_size(size)
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"Gaussian kernel sigma must be finite and > 0; got {sigma}.")
    r = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return (k / k.sum()).astype(np.float32)


_MOTION_STEPS = 96  # trajectory samples
_MOTION_SUBSTEPS = 8  # points splatted per trajectory segment


@functools.partial(jax.jit, static_argnames=("size",))
def _motion_kernel(key: jax.Array, size: int, intensity: jax.Array) -> jax.Array:
    k_theta, k_noise, k_jerk_on, k_jerk, k_len = jax.random.split(key, 5)
    T = _MOTION_STEPS
    # Boracchi & Foi style camera-shake trajectory: a constant-speed random walk whose
    # velocity gets Gaussian perturbations ("anxiety"), rare large jerks (impulsive shake)
    # and a weak pull back to the origin (the hand returns to its rest position).
    anxiety = 0.03 + 0.3 * intensity
    p_jerk = 0.01 + 0.09 * intensity
    centripetal = 0.01 * intensity
    theta0 = jax.random.uniform(k_theta, (), minval=0.0, maxval=2 * jnp.pi)
    noise = jax.random.normal(k_noise, (T, 2))
    jerk_on = jax.random.bernoulli(k_jerk_on, p_jerk, (T,))
    jerk = jax.random.normal(k_jerk, (T, 2)) * 2.0

    def step(carry, inp):
        pos, vel = carry
        n, on, j = inp
        dv = anxiety * n + jnp.where(on, 1.0, 0.0) * j - centripetal * pos
        v = vel + dv
        v = v / jnp.maximum(jnp.linalg.norm(v), 1e-6)
        pos = pos + v
        return (pos, v), pos

    v0 = jnp.stack([jnp.cos(theta0), jnp.sin(theta0)])
    _, path = jax.lax.scan(step, (jnp.zeros(2), v0), (noise, jerk_on, jerk))
    path = jnp.concatenate([jnp.zeros((1, 2)), path], axis=0)  # (T + 1, 2)

    # Dense resampling of the polyline, then fit into the kernel support.
    s = (jnp.arange(_MOTION_SUBSTEPS) / _MOTION_SUBSTEPS)[None, :, None]
    pts = (path[:-1, None, :] * (1 - s) + path[1:, None, :] * s).reshape(-1, 2)
    pts = jnp.concatenate([pts, path[-1:]], axis=0)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    extent = jnp.maximum((hi - lo).max(), 1e-6)
    # Blur length: longer for larger intensity, randomly 60-100 % of the nominal length.
    length = (
        (size - 3) * (0.3 + 0.6 * intensity) * jax.random.uniform(k_len, (), minval=0.6, maxval=1.0)
    )
    pts = (pts - (lo + hi) / 2) * (length / extent) + (size - 1) / 2.0

    # Bilinear splat of equally weighted points (time spent at each position).
    i0 = jnp.clip(jnp.floor(pts).astype(jnp.int32), 0, size - 2)
    f = pts - i0
    k = jnp.zeros((size, size), jnp.float32)
    for di in (0, 1):
        for dj in (0, 1):
            wi = f[:, 0] if di else 1 - f[:, 0]
            wj = f[:, 1] if dj else 1 - f[:, 1]
            k = k.at[i0[:, 0] + di, i0[:, 1] + dj].add(wi * wj)
    k = jnp.maximum(k, 0.0)
    return k / k.sum()


def motion_kernel(key: jax.Array, size: int = 61, intensity: float = 0.5) -> np.ndarray:
    """Random camera-shake (motion blur) kernel.

    Follows the idea of Boracchi & Foi ("Modeling the performance of image restoration
    from motion blur", IEEE TIP 2012) that the ``motionblur`` package used by DPS and P2L
    implements: a 2-D trajectory is drawn as a constant-speed random walk whose velocity
    receives Gaussian perturbations, occasional large jerks and a weak pull back to the
    origin; the trajectory is scaled to a length that grows with `intensity`, centred in the
    ``size x size`` support and rasterised by bilinear splatting (each point weighs the
    time spent there). ``intensity=0`` gives an almost straight (linear-motion) blur, 1 a
    long erratic shake. This is an independent implementation: kernels are statistically
    alike, not equal, to those of ``motionblur``.

    Args:
        key: JAX PRNG key; the same key gives the same kernel, bit for bit on one machine.
        size: Odd side length.
        intensity: Shake intensity in ``[0, 1]``.

    Returns:
        ``(size, size)`` float32 kernel, nonnegative, summing to 1.

    Raises:
        ValueError: For an even/too small size or an intensity outside ``[0, 1]``.
    """
    size = _check_size(size)
    if size < 5:
        raise ValueError(f"Motion kernel size must be >= 5; got {size}.")
    intensity = float(intensity)
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"Motion kernel intensity must be in [0, 1]; got {intensity}.")
    k = np.asarray(_motion_kernel(key, size, jnp.float32(intensity)), dtype=np.float64)
    return (k / k.sum()).astype(np.float32)


def _pick(arrays: dict, name: Optional[str], path: Path) -> np.ndarray:
    if name is not None:
        if name not in arrays:
            raise KeyError(f"{path}: no array named {name!r}; found {sorted(arrays)}.")
        return arrays[name]
    candidates = {k: v for k, v in arrays.items() if np.ndim(v) == 2}
    if len(candidates) != 1:
        raise ValueError(
            f"{path}: expected exactly one 2-D array (or pass name=...); found 2-D arrays "
            f"{sorted(candidates)} among {sorted(arrays)}."
        )
    return next(iter(candidates.values()))


def load_kernel(path: Union[str, Path], name: Optional[str] = None) -> np.ndarray:
    """Read a blur kernel from a ``.npy``, ``.mat`` or ``.h5``/``.hdf5`` file.

    For ``.mat`` (read with :func:`scipy.io.loadmat`, MATLAB v5-v7.2) and HDF5 files the
    array is the one called `name`, or else the only 2-D numeric array in the file.

    Args:
        path: File path.
        name: Variable (``.mat``) or dataset path (HDF5) to read.

    Returns:
        The kernel, validated (2-D, odd sides, finite, nonnegative, positive sum) and
        normalised to sum 1, as float32.

    Raises:
        FileNotFoundError: If `path` does not exist.
        KeyError: If `name` is not in the file.
        ValueError: For an unsupported suffix, an ambiguous file or an invalid kernel.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Kernel file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        k = np.load(path, allow_pickle=False)
    elif suffix == ".mat":
        import scipy.io

        data = scipy.io.loadmat(path)
        arrays = {
            k: np.asarray(v)
            for k, v in data.items()
            if not k.startswith("__")
            and isinstance(v, np.ndarray)
            and (np.issubdtype(v.dtype, np.number))
        }
        k = _pick(arrays, name, path)
    elif suffix in (".h5", ".hdf5"):
        import h5py

        arrays = {}
        with h5py.File(path, "r") as f:
            if name is not None:
                if name not in f or not isinstance(f[name], h5py.Dataset):
                    raise KeyError(f"{path}: no dataset named {name!r}.")
                arrays[name] = f[name][()]
            else:

                def visit(n, obj):
                    if isinstance(obj, h5py.Dataset) and obj.ndim == 2:
                        arrays[n] = obj[()]

                f.visititems(visit)
        k = _pick(arrays, name, path)
    else:
        raise ValueError(f"{path}: unsupported kernel file type {suffix!r}; use .npy, .mat or .h5.")
    return normalize_kernel(k, what=f"kernel from {path}")
