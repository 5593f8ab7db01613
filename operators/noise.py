"""Measurement noise."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["add_noise", "simulate"]


def _check_sigma(sigma) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"Noise sigma must be a real number; got {sigma!r}.") from None
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"Noise sigma must be finite and >= 0; got {s}.")
    return s


def add_noise(key: jax.Array, y, sigma: float) -> jax.Array:
    r"""Add white Gaussian noise, :math:`y + \sigma \varepsilon`, :math:`\varepsilon \sim
    \mathcal{N}(0, I)`.

    `sigma` is in the library's ``[0, 1]`` image units: the :math:`\sigma_y = 0.01` of
    P2L/DPS, stated for images in ``[-1, 1]``, is ``sigma = 0.005`` here.

    Args:
        key: JAX PRNG key (same key, same noise).
        y: Clean measurement (any shape, floating dtype).
        sigma: Noise standard deviation, >= 0 (0 returns `y` unchanged).

    Returns:
        Noisy measurement, same shape and dtype as `y`.

    Raises:
        ValueError: If `sigma` is negative or not finite.
    """
    s = _check_sigma(sigma)
    y = jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.floating):
        raise TypeError(f"add_noise: expected a floating-point measurement, got dtype {y.dtype}.")
    if s == 0.0:
        return y
    return y + jnp.asarray(s, y.dtype) * jax.random.normal(key, y.shape, y.dtype)


def simulate(A, x, sigma: float, key: jax.Array) -> jax.Array:
    r"""Simulate a noisy measurement :math:`y = A x + \sigma \varepsilon`.

    Args:
        A: Forward operator (callable, e.g. a :class:`scico.linop.LinearOperator`).
        x: Image(s) in ``[0, 1]``, shape ``A.input_shape``.
        sigma: Noise standard deviation in ``[0, 1]`` image units, >= 0.
        key: JAX PRNG key.

    Returns:
        The noisy measurement, shape ``A.output_shape``.

    Raises:
        ValueError: If `sigma` is negative, or `x` has the wrong shape.
        TypeError: If `x` is not a floating-point array.
    """
    _check_sigma(sigma)
    return add_noise(key, A(x), sigma)
