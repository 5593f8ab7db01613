"""Inpainting (masking) forward operator."""

from __future__ import annotations

from typing import Tuple

import numpy as np

import jax
import jax.numpy as jnp
from scico.linop import Diagonal

from ._base import ImageOperator, check_image_shape, check_sample_axis, register_operator

__all__ = ["Inpaint", "check_mask"]


def check_mask(mask, image_hw: Tuple[int, int], n: int | None = None) -> np.ndarray:
    """Validate an inpainting mask and return it as float32.

    Args:
        mask: Array-like ``(H, W)`` with values in ``[0, 1]`` (1 = observed), or ``(n, H, W)``.
        image_hw: Expected ``(H, W)``.
        n: Number of per-sample masks expected (``None``: one shared mask).

    Returns:
        The mask as ``np.float32``.

    Raises:
        TypeError: If the mask is not real numeric or boolean.
        ValueError: For a wrong shape, non-finite values or values outside ``[0, 1]``.
    """
    m = np.asarray(mask)
    if not (
        m.dtype == bool or np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)
    ):
        raise TypeError(f"Inpaint mask must be a real or boolean array; got dtype {m.dtype}.")
    want = tuple(image_hw) if n is None else (n,) + tuple(image_hw)
    if m.shape != want:
        what = "(H, W)" if n is None else "(N, H, W)"
        raise ValueError(f"Inpaint mask: expected shape {what} = {want}, got {m.shape}.")
    m = m.astype(np.float32)
    if not np.all(np.isfinite(m)):
        raise ValueError("Inpaint mask has non-finite entries.")
    if m.min() < 0 or m.max() > 1:
        raise ValueError(f"Inpaint mask values must be in [0, 1]; got [{m.min()}, {m.max()}].")
    return m


@register_operator
class Inpaint(ImageOperator, Diagonal):
    r"""Pixel masking, a :class:`scico.linop.Diagonal` operator.

    .. math::
       (A x)_{n, i, j, c} = m_{n, i, j}\, x_{n, i, j, c} \;, \qquad A^T = A \;,

    with the mask :math:`m \in [0, 1]^{H \times W}` (1 = observed, 0 = missing) broadcast
    over channels (and over the batch for a shared mask). Measurements keep the image shape,
    with zeros in the holes, which is how DPS, PSLD and P2L pose inpainting. :math:`A` is
    self-adjoint and, for a binary mask, an orthogonal projection. Masks come from
    :mod:`operators.masks`.

    Per-sample masks: with ``input_shape = (N, H, W, C)``, ``mask`` may be ``(N, H, W)``
    (mask :math:`m_n` for image :math:`n`). The mask is traced data (see
    :class:`ImageOperator`).

    Args:
        input_shape: ``(H, W, C)`` or ``(N, H, W, C)``.
        mask: ``(H, W)`` array with values in ``[0, 1]``, or ``(N, H, W)`` per sample.
        jit: Jit-compile forward, adjoint and Gram maps.

    Raises:
        ValueError: If the mask does not have shape ``(H, W)`` (or ``(N, H, W)``) or has
            values outside ``[0, 1]``.
    """

    data_fields = ("mask",)

    def __init__(self, input_shape: Tuple[int, ...], mask, jit: bool = False):
        input_shape = check_image_shape(input_shape)
        per_sample = check_sample_axis(np.asarray(mask), input_shape, 2, "Inpaint mask")
        self.mask = check_mask(mask, input_shape[-3:-1], input_shape[0] if per_sample else None)
        self._init_diagonal(input_shape, jit)
        if self._adj is None:
            self._set_adjoint()

    def _init_diagonal(self, input_shape, jit: bool = False) -> None:
        # scico's Diagonal.__init__ would read the diagonal's shape, i.e. compute with the mask,
        # which may be an abstract placeholder when the operator is rebuilt inside a trace:
        # initialise the LinearOperator base directly (a diagonal keeps the input shape).
        from scico.linop import LinearOperator

        LinearOperator.__init__(self, input_shape=tuple(input_shape), output_shape=tuple(input_shape),
                                input_dtype=np.float32, output_dtype=np.float32, jit=jit)

    @property
    def _diagonal(self):
        m = jnp.asarray(self.mask)
        return jnp.broadcast_to(m[..., None], self.input_shape)

    @_diagonal.setter
    def _diagonal(self, value):  # scico's constructor stores it; ours is derived from the mask
        pass

    def _restore(self, input_shape, static, arrays) -> None:
        self.mask = arrays["mask"]
        self._init_diagonal(input_shape)
        self._adj = self._transpose_at_call

    def _is_per_sample(self, field: str) -> bool:
        return np.ndim(self.mask) == 3

    def _parameters(self) -> dict:
        return {"mask": self.mask}
