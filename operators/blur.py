"""Blur (2-D convolution) forward operator."""

from __future__ import annotations

import enum
from typing import Tuple, Union

import numpy as np

import jax
import jax.numpy as jnp

from ._base import ImageOperator, check_image_shape, check_sample_axis, register_operator

__all__ = ["Blur", "BlurBoundary", "check_kernel"]


class BlurBoundary(str, enum.Enum):
    """Boundary handling of :class:`Blur`."""

    SAME = "same"
    """Zero padding, output the same size as the input (``scipy.signal.convolve2d(...,
    mode="same")``)."""
    CIRCULAR = "circular"
    """Periodic extension (circular convolution, diagonalised by the 2-D DFT)."""


def check_kernel(kernel, what: str = "kernel", per_sample: bool = False) -> np.ndarray:
    """Validate a blur kernel and return it as a float32 numpy array.

    Args:
        kernel: Array-like of shape ``(kh, kw)`` with odd `kh`, `kw` (``(N, kh, kw)`` with
            ``per_sample``).
        what: Name used in error messages.
        per_sample: Expect a leading sample axis.

    Returns:
        The kernel as ``np.float32`` (values unchanged).

    Raises:
        TypeError: If the kernel is not numeric real.
        ValueError: If it is not 2-D, has an even side, or has non-finite entries.
    """
    k = np.asarray(kernel)
    if not (np.issubdtype(k.dtype, np.floating) or np.issubdtype(k.dtype, np.integer)):
        raise TypeError(f"{what} must be a real numeric array; got dtype {k.dtype}.")
    if k.ndim != 2 + per_sample:
        want = "3-D (N, kh, kw)" if per_sample else "2-D (kh, kw), or (N, kh, kw) with a batched input_shape"
        raise ValueError(f"{what} must be {want}; got shape {k.shape}.")
    if k.shape[-2] % 2 == 0 or k.shape[-1] % 2 == 0:
        raise ValueError(f"{what} must have odd side lengths (centred); got shape {k.shape}.")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{what} has non-finite entries (NaN or inf).")
    return k.astype(np.float32)


@register_operator
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
    GPUs) for kernels of up to :data:`DIRECT_MAX_TAPS` taps, and for larger ones the same
    linear convolution by 2-D real FFTs of the zero-padded ``(H + k_h - 1) x (W + k_w - 1)``
    grid, cropped (equal up to float rounding; a direct convolution costs
    :math:`k_h k_w` multiplications per pixel, the FFTs a few dozen: e.g. 21 x 21 motion
    kernels at 96 x 96 pixels). ``"circular"`` multiplies 2-D real FFTs, with the kernel
    folded onto the image grid (so kernels larger than the image are handled).

    The Gaussian and motion kernels of DPS/P2L are made by
    :func:`operators.gaussian_kernel` and :func:`operators.motion_kernel`.

    Per-sample kernels: with ``input_shape = (N, H, W, C)``, ``kernel`` may be ``(N, kh,
    kw)``; kernel :math:`k^{(n)}` then blurs image :math:`n` (the paper draws one motion
    kernel per test image). The kernel is traced data (see :class:`ImageOperator`): new
    kernels of the same shape reuse a compiled solver.

    Args:
        input_shape: ``(H, W, C)`` or ``(N, H, W, C)``.
        kernel: ``(kh, kw)`` array, odd sides, finite, or ``(N, kh, kw)`` per sample. Not
            renormalised.
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
        per_sample = check_sample_axis(np.asarray(kernel), input_shape, 2, "Blur kernel")
        self.kernel = check_kernel(kernel, per_sample=per_sample)
        try:
            boundary = BlurBoundary(boundary)
        except ValueError:
            raise ValueError(
                f"Unknown blur boundary {boundary!r}; expected one of "
                f"{[b.value for b in BlurBoundary]}."
            ) from None
        self.boundary = boundary
        super().__init__(input_shape, input_shape, jit=jit)

    data_fields = ("kernel",)

    def _parameters(self) -> dict:
        return {"kernel": self.kernel, "boundary": self.boundary.value}

    def _restore(self, input_shape, static, arrays) -> None:
        self.kernel = arrays["kernel"]
        self.boundary = BlurBoundary(static["boundary"])
        self._init_restored(input_shape, input_shape)

    def _is_per_sample(self, field: str) -> bool:
        return np.ndim(self.kernel) == 3

    def _folded_kernel_fft(self, k: jax.Array, H: int, W: int) -> jax.Array:
        """The kernel folded onto the periodic ``H x W`` grid, centred at 0, then ``rfft2``."""
        kh, kw = k.shape[-2:]
        rows = (np.arange(kh) - kh // 2) % H
        cols = (np.arange(kw) - kw // 2) % W
        emb = jnp.zeros(k.shape[:-2] + (H, W), k.dtype)
        emb = emb.at[..., rows[:, None], cols[None, :]].add(k)
        return jnp.fft.rfft2(emb, axes=(-2, -1))

    def _eval(self, x: jax.Array) -> jax.Array:
        H, W, C = x.shape[-3:]
        k = jnp.asarray(self.kernel, x.dtype)
        if self.boundary is BlurBoundary.CIRCULAR:
            xf = jnp.fft.rfft2(x, axes=(-3, -2))
            kf = self._folded_kernel_fft(k, H, W)[..., None]  # (H, W', 1) or (N, H, W', 1)
            return jnp.fft.irfft2(xf * kf, s=(H, W), axes=(-3, -2)).astype(x.dtype)
        if k.shape[-2] * k.shape[-1] > DIRECT_MAX_TAPS:
            return _convolve_same_fft(x, k)
        if k.ndim == 3:  # one kernel per sample
            return jax.vmap(_convolve_same)(x, k)
        return _convolve_same(x, k)


#: Largest kernel (``k_h * k_w`` taps) that ``"same"`` blurs by a direct convolution; larger
#: kernels go through FFTs (:func:`_convolve_same_fft`).
DIRECT_MAX_TAPS = 81


def _convolve_same_fft(x: jax.Array, k: jax.Array) -> jax.Array:
    """``_convolve_same`` by FFTs: the full linear convolution of ``(..., H, W, C)`` images with
    a ``(kh, kw)`` kernel, or ``(N, kh, kw)`` kernels for ``(N, H, W, C)`` images, is the
    circular one on the ``(H + kh - 1, W + kw - 1)`` grid (both zero-padded at the end); the
    ``'same'`` part starts at ``(kh // 2, kw // 2)``."""
    H, W = x.shape[-3:-1]
    kh, kw = k.shape[-2:]
    P, Q = H + kh - 1, W + kw - 1
    wide = jnp.promote_types(x.dtype, jnp.float32)  # FFTs in at least float32 (none in half precision)
    xf = jnp.fft.rfft2(x.astype(wide), s=(P, Q), axes=(-3, -2))
    kf = jnp.fft.rfft2(k.astype(wide), s=(P, Q), axes=(-2, -1))[..., None]  # (P, Q', 1) or (N, P, Q', 1)
    full = jnp.fft.irfft2(xf * kf, s=(P, Q), axes=(-3, -2))
    return full[..., kh // 2:kh // 2 + H, kw // 2:kw // 2 + W, :].astype(x.dtype)


def _convolve_same(x: jax.Array, k: jax.Array) -> jax.Array:
    """Depthwise 'same' convolution of ``(..., H, W, C)`` images with one ``(kh, kw)`` kernel."""
    H, W, C = x.shape[-3:]
    xb = x.reshape((-1, H, W, C))
    kh, kw = k.shape
    # conv_general_dilated computes a correlation: flip for a true convolution.
    rhs = jnp.tile(k[::-1, ::-1][:, :, None, None], (1, 1, 1, C))  # HWIO, I = 1, O = C, groups = C
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
