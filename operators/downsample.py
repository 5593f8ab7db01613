"""Downsampling (super-resolution) forward operators.

Two variants are in use in the latent-diffusion inverse-problem literature:

* **average pooling** over ``factor x factor`` blocks, the super-resolution operator of
  P2L (Chung et al., "Prompt-tuning latent diffusion models for inverse problems",
  ICML 2024);
* **anti-aliased bicubic** decimation, the operator of DPS (Chung et al., ICLR 2023) and
  PSLD (Rout et al., NeurIPS 2023), which use a Matlab-``imresize`` clone: the Keys cubic
  kernel (``a = -0.5``) stretched by the factor.
"""

from __future__ import annotations

import enum
from typing import Tuple, Union

import numpy as np

import jax
import jax.numpy as jnp

from ._base import ImageOperator, check_image_shape, register_operator

__all__ = ["Downsample", "DownsampleMethod", "bicubic_weights", "cubic"]


class DownsampleMethod(str, enum.Enum):
    """Downsampling filter."""

    AVERAGE = "average"
    """Mean over non-overlapping ``factor x factor`` blocks."""
    BICUBIC = "bicubic"
    """Anti-aliased bicubic (Keys, ``a = -0.5``), as Matlab ``imresize`` / PIL."""


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    r"""Keys' cubic convolution kernel.

    .. math::
       k(x) = \begin{cases}
         (a + 2)|x|^3 - (a + 3)|x|^2 + 1 & |x| \le 1 \\
         a|x|^3 - 5a|x|^2 + 8a|x| - 4a & 1 < |x| < 2 \\
         0 & \text{otherwise,}
       \end{cases}

    with :math:`a = -0.5` as in Matlab's ``imresize`` and PIL (Keys, "Cubic convolution
    interpolation for digital image processing", IEEE TASSP 1981).
    """
    x = np.abs(np.asarray(x, dtype=np.float64))
    x2, x3 = x * x, x * x * x
    inner = (a + 2) * x3 - (a + 3) * x2 + 1
    outer = a * x3 - 5 * a * x2 + 8 * a * x - 4 * a
    return np.where(x <= 1, inner, np.where(x < 2, outer, 0.0))


def bicubic_weights(n: int, factor: int) -> Tuple[np.ndarray, np.ndarray]:
    """Gather indices and weights of 1-D anti-aliased bicubic decimation by `factor`.

    Output sample ``i`` is centred on input coordinate ``i * factor + (factor - 1) / 2``
    (pixel centres, as in Matlab/PIL). The cubic kernel is stretched by `factor` (its
    support becomes ``4 * factor`` input pixels) and the taps are normalised to sum to 1.
    Indices falling outside ``[0, n)`` are mirrored symmetrically (``... b a | a b ...``),
    Matlab ``imresize``'s boundary rule.

    Args:
        n: Input length (a multiple of `factor`).
        factor: Integer decimation factor.

    Returns:
        ``(indices, weights)`` with shapes ``(n // factor, T)`` and ``(T,)``.
    """
    centre = (factor - 1) / 2.0
    ks = np.arange(-2 * factor, 3 * factor + 1)
    d = ks - centre
    keep = np.abs(d) < 2 * factor
    ks, d = ks[keep], d[keep]
    w = cubic(d / factor)
    w = w / w.sum()
    j = np.arange(n // factor)[:, None] * factor + ks[None, :]
    period = 2 * n
    j = np.mod(j, period)
    j = np.where(j < n, j, period - 1 - j)
    return j.astype(np.int32), w.astype(np.float32)


@register_operator
class Downsample(ImageOperator):
    r"""Downsample images by an integer factor.

    **Average pooling** (``method="average"``), with :math:`f` the factor,

    .. math::
       (A x)_{i, j, c} = \frac{1}{f^2} \sum_{p=0}^{f-1} \sum_{q=0}^{f-1}
          x_{f i + p,\, f j + q,\, c} \;,

    whose adjoint spreads each low-resolution pixel uniformly over its block,

    .. math::
       (A^T y)_{m, n, c} = \frac{1}{f^2}\, y_{\lfloor m / f \rfloor,\, \lfloor n / f \rfloor,\, c}
       \;,

    so that :math:`A A^T = f^{-2} I`.

    **Anti-aliased bicubic** (``method="bicubic"``) applies the separable strided filter
    :math:`(A x) = D_f (h_f * x)` along rows and columns, with
    :math:`h_f(t) \propto k(t / f)` the Keys cubic kernel :func:`cubic` stretched by
    :math:`f` (taps normalised to sum 1) and :math:`D_f` keeping every :math:`f`-th sample
    centred on each ``f x f`` block. Samples outside the image are mirrored symmetrically
    (edge pixel repeated), which is Matlab ``imresize``'s rule; away from the border
    (``2 f`` pixels) the result equals PIL's ``Image.resize(..., BICUBIC)`` and the
    ``Resizer`` used by DPS/PSLD. Mirroring folds into the gather, so the adjoint (derived by
    :func:`jax.linear_transpose`) is exact.

    Args:
        input_shape: ``(H, W, C)`` or ``(N, H, W, C)``; `H` and `W` must be multiples of
            `factor`.
        factor: Integer downsampling factor (>= 1).
        method: :class:`DownsampleMethod` or its string value.
        jit: Jit-compile forward, adjoint and Gram maps.

    Raises:
        ValueError: If `factor` does not divide `H` and `W`, or the method is unknown.
        TypeError: If `factor` is not an int.
    """

    def __init__(
        self,
        input_shape: Tuple[int, ...],
        factor: int,
        method: Union[DownsampleMethod, str] = DownsampleMethod.AVERAGE,
        jit: bool = False,
    ):
        input_shape = check_image_shape(input_shape)
        if isinstance(factor, (bool, np.bool_)) or not isinstance(factor, (int, np.integer)):
            raise TypeError(f"Downsample factor must be an int; got {factor!r}.")
        factor = int(factor)
        if factor < 1:
            raise ValueError(f"Downsample factor must be >= 1; got {factor}.")
        try:
            method = DownsampleMethod(method)
        except ValueError:
            raise ValueError(
                f"Unknown downsample method {method!r}; expected one of "
                f"{[m.value for m in DownsampleMethod]}."
            ) from None
        H, W, C = input_shape[-3:]
        if H % factor or W % factor:
            raise ValueError(
                f"Downsample factor {factor} must divide the image size; got H={H}, W={W} "
                f"(input_shape {input_shape})."
            )
        self.factor = factor
        self.method = method
        if method is DownsampleMethod.BICUBIC:
            self._idx_h, w_h = bicubic_weights(H, factor)
            self._idx_w, w_w = bicubic_weights(W, factor)
            self._w = w_h  # identical taps along both axes for an integer factor
            assert np.array_equal(w_h, w_w)
        output_shape = input_shape[:-3] + (H // factor, W // factor, C)
        super().__init__(input_shape, output_shape, jit=jit)

    def _parameters(self) -> dict:
        return {"factor": self.factor, "method": self.method.value}

    def _eval(self, x: jax.Array) -> jax.Array:
        f = self.factor
        H, W, C = x.shape[-3:]
        if self.method is DownsampleMethod.AVERAGE:
            xb = x.reshape(x.shape[:-3] + (H // f, f, W // f, f, C))
            return jnp.mean(xb, axis=(-4, -2))
        w = jnp.asarray(self._w)
        hi = jax.lax.Precision.HIGHEST
        # rows: (..., Ho, T, W, C) -> (..., Ho, W, C)
        xh = jnp.take(x, jnp.asarray(self._idx_h), axis=-3)
        xh = jnp.einsum("...htwc,t->...hwc", xh, w, precision=hi)
        # columns: (..., Ho, Wo, T, C) -> (..., Ho, Wo, C)
        xw = jnp.take(xh, jnp.asarray(self._idx_w), axis=-2)
        return jnp.einsum("...hwtc,t->...hwc", xw, w, precision=hi)
