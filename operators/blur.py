"""Blur (2-D convolution) forward operator."""

from __future__ import annotations

import enum
from typing import Tuple, Union

import numpy as np

import jax
import jax.numpy as jnp

from ._base import ImageOperator, check_image_shape

__all__ = ["Blur", "BlurBoundary", "check_kernel"]


class BlurBoundary(str, enum.Enum):
    """Boundary handling of :class:`Blur`."""

    SAME = "same"
    """Zero padding, output the same size as the input (``scipy.signal.convolve2d(...,
    mode="same")``)."""
    CIRCULAR = "circular"
    """Periodic extension (circular convolution, diagonalised by the 2-D DFT)."""


def check_kernel(kernel, what: str = "kernel") -> np.ndarray:
    """Validate a blur kernel and return it as a float32 numpy array.

    Args:
        kernel: Array-like of shape ``(kh, kw)`` with odd `kh`, `kw`.
        what: Name used in error messages.

    Returns:
        The kernel as ``np.float32`` (values unchanged).

    Raises:
        TypeError: If the kernel is not numeric real.
        ValueError: If it is not 2-D, has an even side, or has non-finite entries.
    """
    k = np.asarray(kernel)
    if not (np.issubdtype(k.dtype, np.floating) or np.issubdtype(k.dtype, np.integer)):
        raise TypeError(f"{what} must be a real numeric array; got dtype {k.dtype}.")
    if k.ndim != 2:
        raise ValueError(f"{what} must be 2-D (kh, kw); got shape {k.shape}.")
    if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"{what} must have odd side lengths (centred); got shape {k.shape}.")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{what} has non-finite entries (NaN or inf).")
    return k.astype(np.float32)


class Blur(ImageOperator):
    r"""Per-channel 2-D convolution with a fixed kernel.

    Each channel of each image is convolved (true convolution, kernel flipped) with the
    centred kernel :math:`k` of odd size :math:`(k_h, k_w)`,

    .. math::
       (A x)_{m, n, c} = \sum_{p, q} k_{p, q}\, x_{m - p + \lfloor k_h/2 \rfloor,\,
          n - q + \lfloor k_w/2 \rfloor,\, c} \;,

    where out-of-range samples of :math:`x` are zero (``boundary="same"``) or wrap around
    (``boundary="circular"``). The adjoint is correlation with the same kernel
    (convolution with the flipped kernel :math:`\tilde k_{p,q} = k_{-p,-q}`) under the same
    boundary rule; it is derived exactly by :func:`jax.linear_transpose`. Reference code
    (DPS, P2L) often uses the identity or the forward blur in its place.

    ``"same"`` is a direct depthwise convolution at ``HIGHEST`` precision (no TF32 on
    GPUs); ``"circular"`` multiplies 2-D real FFTs, with the kernel folded onto the image
    grid (so kernels larger than the image are handled).

    The Gaussian and motion kernels of DPS/P2L are made by
    :func:`operators.gaussian_kernel` and :func:`operators.motion_kernel`.

    Args:
        input_shape: ``(H, W, C)`` or ``(N, H, W, C)``.
        kernel: ``(kh, kw)`` array, odd sides, finite. Not renormalised.
        boundary: :class:`BlurBoundary` or its string value.
        jit: Jit-compile forward, adjoint and Gram maps.

    Raises:
        ValueError: For an even-sized, non-2-D or non-finite kernel, or an unknown
            boundary.
    """

    def __init__(
        self,
        input_shape: Tuple[int, ...],
        kernel,
        boundary: Union[BlurBoundary, str] = BlurBoundary.SAME,
        jit: bool = False,
    ):
        input_shape = check_image_shape(input_shape)
        self.kernel = check_kernel(kernel)
        try:
            boundary = BlurBoundary(boundary)
        except ValueError:
            raise ValueError(
                f"Unknown blur boundary {boundary!r}; expected one of "
                f"{[b.value for b in BlurBoundary]}."
            ) from None
        self.boundary = boundary
        H, W, C = input_shape[-3:]
        if boundary is BlurBoundary.CIRCULAR:
            kh, kw = self.kernel.shape
            emb = np.zeros((H, W), np.float64)
            rows = (np.arange(kh) - kh // 2) % H
            cols = (np.arange(kw) - kw // 2) % W
            np.add.at(emb, (rows[:, None], cols[None, :]), self.kernel.astype(np.float64))
            self._kernel_fft = np.fft.rfft2(emb).astype(np.complex64)
        super().__init__(input_shape, input_shape, jit=jit)

    def _parameters(self) -> dict:
        return {"kernel": self.kernel, "boundary": self.boundary.value}

    def _eval(self, x: jax.Array) -> jax.Array:
        H, W, C = x.shape[-3:]
        if self.boundary is BlurBoundary.CIRCULAR:
            xf = jnp.fft.rfft2(x, axes=(-3, -2))
            kf = jnp.asarray(self._kernel_fft)[:, :, None]
            return jnp.fft.irfft2(xf * kf, s=(H, W), axes=(-3, -2)).astype(x.dtype)
        xb = x.reshape((-1, H, W, C))
        kh, kw = self.kernel.shape
        # conv_general_dilated computes a correlation: flip for a true convolution.
        rhs = jnp.asarray(self.kernel[::-1, ::-1].copy())[:, :, None, None]
        rhs = jnp.tile(rhs, (1, 1, 1, C))  # HWIO with I = 1, O = C, groups = C
        y = jax.lax.conv_general_dilated(
            xb,
            rhs,
            window_strides=(1, 1),
            padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=C,
            precision=jax.lax.Precision.HIGHEST,
        )
        return y.reshape(x.shape)
