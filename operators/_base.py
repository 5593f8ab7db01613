"""Shared machinery of the image operators: shape conventions and input checks.

Every operator in :mod:`operators` acts on float32 images in channel-last layout,
``(H, W, C)`` or with a leading batch axis ``(N, H, W, C)``. The batch size is part of the
operator's ``input_shape`` (as in scico, where an operator has one fixed input shape);
samples in a batch never interact.

scico's :class:`~scico.linop.LinearOperator` checks the shape of an input array but not its
dtype, and an integer or complex image would otherwise fail deep inside XLA (or silently
promote). :class:`ImageOperator` checks both and states what it expected.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

import jax
import jax.numpy as jnp
from scico.linop import LinearOperator
from scico.operator import Operator

__all__ = ["ImageOperator", "check_image_shape", "check_array"]


def check_image_shape(input_shape: Any, name: str = "input_shape") -> Tuple[int, ...]:
    """Validate an image shape ``(H, W, C)`` or ``(N, H, W, C)`` and return it as a tuple.

    Args:
        input_shape: Candidate shape.
        name: Name used in the error message.

    Returns:
        The shape as a tuple of Python ints.

    Raises:
        TypeError: If `input_shape` is not a sequence of integers.
        ValueError: If it does not have 3 or 4 positive entries.
    """
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(
            f"{name} must be a tuple (H, W, C) or (N, H, W, C) of ints; got {input_shape!r}."
        )
    shape = []
    for s in input_shape:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"{name} must contain ints; got {input_shape!r}.")
        shape.append(int(s))
    if len(shape) not in (3, 4) or any(s < 1 for s in shape):
        raise ValueError(
            f"{name} must be (H, W, C) or (N, H, W, C) with positive entries; "
            f"got {tuple(shape)}."
        )
    return tuple(shape)


def check_array(x: Any, expected_shape: Tuple[int, ...], expected_dtype: Any, what: str) -> Any:
    """Check shape and dtype of an operator argument, casting real floats to `expected_dtype`.

    Works on concrete arrays and on JAX tracers (only static properties are read).

    Args:
        x: Array-like argument.
        expected_shape: Required shape.
        expected_dtype: Required (floating) dtype; other real floating dtypes are cast.
        what: Description used in error messages, e.g. ``"Blur input"``.

    Returns:
        `x` as an array of dtype `expected_dtype`.

    Raises:
        TypeError: If `x` is not an array of a real floating dtype.
        ValueError: If the shape differs from `expected_shape`.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        if isinstance(x, (list, tuple, int, float)):
            x = np.asarray(x)
        else:
            raise TypeError(f"{what}: expected an array, got {type(x).__name__}.")
    dtype = np.dtype(x.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{what}: expected a real floating-point array ({np.dtype(expected_dtype).name}), "
            f"got dtype {dtype.name}."
        )
    if tuple(x.shape) != tuple(expected_shape):
        raise ValueError(f"{what}: expected shape {tuple(expected_shape)}, got {tuple(x.shape)}.")
    if dtype != np.dtype(expected_dtype):
        x = jnp.asarray(x).astype(expected_dtype)
    return x


class ImageOperator(LinearOperator):
    """Base class of the linear image operators in :mod:`operators`.

    Subclasses implement :meth:`_eval` for inputs of shape ``input_shape`` (leading batch
    axis or not) and pass their analytic ``output_shape``; the adjoint is derived by
    :func:`jax.linear_transpose` unless an explicit matched adjoint is supplied.
    """

    def __init__(
        self,
        input_shape: Tuple[int, ...],
        output_shape: Tuple[int, ...],
        adj_fn: Optional[Any] = None,
        jit: bool = False,
    ):
        super().__init__(
            input_shape=check_image_shape(input_shape),
            output_shape=tuple(output_shape),
            adj_fn=adj_fn,
            input_dtype=np.float32,
            output_dtype=np.float32,
            jit=jit,
        )

        if self._adj is None:
            self._set_adjoint()

    def _set_adjoint(self):
        """Derive the adjoint by :func:`jax.linear_transpose`, now rather than lazily.

        scico derives it at the first :meth:`adj` call; if that call happens inside a
        ``jax.jit`` trace, the transposed function captures tracers and fails on later use.
        Transposing under :func:`jax.ensure_compile_time_eval` at construction (tracing
        only, no compilation) keeps its constants concrete.
        """
        with jax.ensure_compile_time_eval():
            zeros = jnp.zeros(self.input_shape, self.input_dtype)
            transpose = jax.linear_transpose(self._eval, zeros)
        self._adj = lambda y: transpose(y)[0]

    @property
    def batched(self) -> bool:
        """``True`` if the input has a leading batch axis ``(N, H, W, C)``."""
        return len(self.input_shape) == 4

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """Shape ``(H, W, C)`` of one image."""
        return tuple(self.input_shape[-3:])  # type: ignore[return-value]

    def _parameters(self) -> dict:
        """Constructor arguments other than `input_shape` (see :func:`operators.describe`)."""
        raise NotImplementedError

    def __call__(self, x):
        """Apply the operator to `x`, checking its shape and dtype first.

        Raises:
            TypeError: If `x` is not a real floating-point array.
            ValueError: If `x.shape != self.input_shape`.
        """
        if isinstance(x, Operator):
            return super().__call__(x)
        x = check_array(x, self.input_shape, self.input_dtype, f"{type(self).__name__} input")
        return super().__call__(x)

    def adj(self, y):
        """Apply the adjoint to `y`, checking its shape and dtype first.

        Raises:
            TypeError: If `y` is not a real floating-point array.
            ValueError: If `y.shape != self.output_shape`.
        """
        if isinstance(y, Operator):
            return super().adj(y)
        y = check_array(
            y, self.output_shape, self.output_dtype, f"{type(self).__name__} adjoint input"
        )
        return super().adj(y)

    def __repr__(self) -> str:
        params = []
        for k, v in self._parameters().items():
            if isinstance(v, np.ndarray):
                params.append(f"{k}=<array {v.shape} {v.dtype}>")
            else:
                params.append(f"{k}={v!r}")
        args = ", ".join([f"input_shape={self.input_shape}"] + params)
        return f"{type(self).__name__}({args})"
