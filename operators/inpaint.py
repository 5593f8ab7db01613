"""Inpainting (masking) forward operator."""

from __future__ import annotations

from typing import Tuple

import numpy as np

import jax.numpy as jnp
from scico.linop import Diagonal

from ._base import ImageOperator, check_image_shape

__all__ = ["Inpaint", "check_mask"]


def check_mask(mask, image_hw: Tuple[int, int]) -> np.ndarray:
    """Validate an inpainting mask and return it as float32.

    Args:
        mask: Array-like ``(H, W)`` with values in ``[0, 1]`` (1 = observed).
        image_hw: Expected ``(H, W)``.

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
    if m.shape != tuple(image_hw):
        raise ValueError(f"Inpaint mask: expected shape (H, W) = {tuple(image_hw)}, got {m.shape}.")
    m = m.astype(np.float32)
    if not np.all(np.isfinite(m)):
        raise ValueError("Inpaint mask has non-finite entries.")
    if m.min() < 0 or m.max() > 1:
        raise ValueError(f"Inpaint mask values must be in [0, 1]; got [{m.min()}, {m.max()}].")
    return m


class Inpaint(ImageOperator, Diagonal):
    r"""Pixel masking, a :class:`scico.linop.Diagonal` operator.

    .. math::
       (A x)_{n, i, j, c} = m_{i, j}\, x_{n, i, j, c} \;, \qquad A^T = A \;,

    with the mask :math:`m \in [0, 1]^{H \times W}` (1 = observed, 0 = missing) broadcast
    over channels and batch. Measurements keep the image shape, with zeros in the holes,
    which is how DPS, PSLD and P2L pose inpainting. :math:`A` is self-adjoint and, for a
    binary mask, an orthogonal projection. Masks come from :mod:`operators.masks`.

    Args:
        input_shape: ``(H, W, C)`` or ``(N, H, W, C)``.
        mask: ``(H, W)`` array with values in ``[0, 1]``.
        jit: Jit-compile forward, adjoint and Gram maps.

    Raises:
        ValueError: If the mask does not have shape ``(H, W)`` or has values outside
            ``[0, 1]``.
    """

    def __init__(self, input_shape: Tuple[int, ...], mask, jit: bool = False):
        input_shape = check_image_shape(input_shape)
        self.mask = check_mask(mask, input_shape[-3:-1])
        Diagonal.__init__(
            self,
            # Materialised at full size so that scico's Diagonal algebra (gram_op, conj,
            # sums, scalar products), which assumes diagonal.shape == input_shape, holds.
            diagonal=jnp.broadcast_to(jnp.asarray(self.mask)[:, :, None], input_shape),
            input_shape=input_shape,
            input_dtype=np.float32,
            jit=jit,
        )
        if self._adj is None:
            self._set_adjoint()

    def _parameters(self) -> dict:
        return {"mask": self.mask}
