"""Parallel-beam computed tomography forward operator."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

import jax
import jax.numpy as jnp

from ._base import ImageOperator, check_image_shape, register_operator

__all__ = ["CT"]


@register_operator
class CT(ImageOperator):
    r"""Parallel-beam X-ray projector (sparse-view CT), per channel and per batch item.

    Wraps :class:`scico.linop.xray.XRayTransform2D` (pixels projected as boxcars onto
    unit-width detector bins, pixel side :math:`\sqrt{2}/2` bins):

    .. math::
       (A x)_{a, d, c} = \sum_{i, j} w_{a, d}(i, j)\, x_{i, j, c} \;,

    for view angles :math:`\theta_a = \pi a / n_\text{angles}`, :math:`a = 0, \dots,
    n_\text{angles} - 1`, on ``det_count`` detector bins. The adjoint is scico's matched
    back projector :math:`(A^T y)_{i,j,c} = \sum_{a,d} w_{a,d}(i,j)\, y_{a,d,c}` (explicit,
    not derived by transposition).

    Measurements have shape ``(n_angles, det_count, C)`` (or with the batch axis in
    front). Grayscale (``C = 1``) is the usual case; each channel is projected alone.

    The geometry is static structure, not traced data (see :class:`ImageOperator`): scico's
    projector is built from concrete view angles, so one ``CT`` serves a batch, and another
    ``n_angles`` or ``det_count`` compiles another program.

    Args:
        input_shape: ``(H, W, C)`` or ``(N, H, W, C)``.
        n_angles: Number of views, evenly spaced in :math:`[0, \pi)`.
        det_count: Number of detector bins; by default
            :math:`\lceil \sqrt{H^2 + W^2} \rceil` (scico's default).
        jit: Jit-compile forward, adjoint and Gram maps.

    Raises:
        ValueError: If `n_angles` or `det_count` is not a positive int.
    """

    def __init__(
        self,
        input_shape: Tuple[int, ...],
        n_angles: int,
        det_count: Optional[int] = None,
        jit: bool = False,
    ):
        from scico.linop.xray import XRayTransform2D  # heavy import (scipy.spatial): lazy

        input_shape = check_image_shape(input_shape)
        if (
            isinstance(n_angles, bool)
            or not isinstance(n_angles, (int, np.integer))
            or n_angles < 1
        ):
            raise ValueError(f"CT n_angles must be a positive int; got {n_angles!r}.")
        H, W, C = input_shape[-3:]
        if det_count is None:
            det_count = int(np.ceil(np.hypot(H, W)))
        if (
            isinstance(det_count, bool)
            or not isinstance(det_count, (int, np.integer))
            or det_count < 1
        ):
            raise ValueError(f"CT det_count must be a positive int; got {det_count!r}.")
        self.n_angles = int(n_angles)
        self.det_count = int(det_count)
        self.angles = np.linspace(0.0, np.pi, self.n_angles, endpoint=False).astype(np.float32)
        self._xray = XRayTransform2D((H, W), self.angles, det_count=self.det_count)
        output_shape = input_shape[:-3] + (self.n_angles, self.det_count, C)
        super().__init__(input_shape, output_shape, adj_fn=self._back_project, jit=jit)

    def _parameters(self) -> dict:
        return {"n_angles": self.n_angles, "det_count": self.det_count}

    def _eval(self, x: jax.Array) -> jax.Array:
        H, W, C = x.shape[-3:]
        lead = x.shape[:-3]
        xb = jnp.moveaxis(x.reshape((-1, H, W, C)), -1, 1).reshape((-1, H, W))
        y = jax.vmap(self._xray.project)(xb)  # (B * C, n_angles, det_count)
        y = jnp.moveaxis(y.reshape((-1, C) + y.shape[1:]), 1, -1)
        return y.reshape(lead + y.shape[1:])

    def _back_project(self, y: jax.Array) -> jax.Array:
        A, D, C = y.shape[-3:]
        lead = y.shape[:-3]
        yb = jnp.moveaxis(y.reshape((-1, A, D, C)), -1, 1).reshape((-1, A, D))
        x = jax.vmap(self._xray.back_project)(yb)  # (B * C, H, W)
        x = jnp.moveaxis(x.reshape((-1, C) + x.shape[1:]), 1, -1)
        return x.reshape(lead + x.shape[1:])
