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

import functools
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

import jax
import jax.numpy as jnp
from scico.linop import LinearOperator
from scico.operator import Operator

__all__ = ["ImageOperator", "OPERATOR_CLASSES", "register_operator", "check_image_shape", "check_array",
           "check_sample_axis"]

OPERATOR_CLASSES: Dict[str, type] = {}
"""Operator classes that :func:`operators.from_description` can rebuild, by class name."""


def register_operator(cls: type) -> type:
    """Class decorator: make an :class:`ImageOperator` known to :func:`operators.describe`,
    :func:`operators.from_description` and the problem files (one line per operator)."""
    if not (isinstance(cls, type) and issubclass(cls, ImageOperator)):
        raise TypeError(f"register_operator takes an ImageOperator subclass, got {cls!r}")
    if OPERATOR_CLASSES.get(cls.__name__, cls) is not cls:
        raise ValueError(f"another operator class is registered as {cls.__name__!r}")
    OPERATOR_CLASSES[cls.__name__] = cls
    return cls


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


def check_sample_axis(array: np.ndarray, input_shape: Tuple[int, ...], per_item_ndim: int,
                      what: str) -> bool:
    """Whether an operator parameter carries a leading sample axis, checked against the shape.

    A parameter of ``per_item_ndim`` dimensions is shared by every image; one with a leading
    axis more holds one value per sample and needs a batched ``input_shape`` ``(N, H, W, C)``
    with the same ``N``.

    Raises:
        ValueError: If the parameter has a sample axis that does not match ``input_shape``.
    """
    if array.ndim == per_item_ndim:
        return False
    if array.ndim == per_item_ndim + 1:
        if len(input_shape) != 4:
            raise ValueError(f"{what} has a leading sample axis (shape {array.shape}), so input_shape must be "
                             f"(N, H, W, C) with N = {array.shape[0]}; got {tuple(input_shape)}.")
        if array.shape[0] != input_shape[0]:
            raise ValueError(f"{what} holds {array.shape[0]} per-sample values (shape {array.shape}), but "
                             f"input_shape {tuple(input_shape)} has N = {input_shape[0]} samples.")
        return True
    return False  # let the operator's own check report the rank


class ImageOperator(LinearOperator):
    """Base class of the linear image operators in :mod:`operators`.

    Subclasses implement :meth:`_eval` for inputs of shape ``input_shape`` (leading batch
    axis or not) and pass their analytic ``output_shape``; the adjoint is derived by
    :func:`jax.linear_transpose` unless an explicit matched adjoint is supplied.

    **Operators are data.** Every subclass is a JAX pytree: the arrays named in
    :attr:`data_fields` (a blur kernel, an inpainting mask) are its leaves, and everything
    else (class, ``input_shape``, scalar parameters such as the boundary rule) is its static
    structure. Passing an operator through :func:`jax.jit` therefore traces its arrays:
    new kernels or masks of the same shapes reuse the compiled program. An operator rebuilt
    from its leaves (inside a trace) skips the constructor's checks, which ran when the
    original was built, and derives its adjoint by transposition at each call.

    Per-sample parameters: a parameter with one more leading axis than one image needs
    (kernels ``(N, kh, kw)``, masks ``(N, H, W)``) applies its ``i``-th entry to image
    ``i`` of a batched ``input_shape`` ``(N, H, W, C)``; :meth:`take` selects samples.
    """

    #: Names of the array attributes that are traced data (pytree leaves).
    data_fields: Tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, _flatten_operator, functools.partial(_unflatten_operator, cls))

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

    def _restore(self, input_shape: Tuple[int, ...], static: Dict[str, Any], arrays: Dict[str, Any]) -> None:
        """Set the attributes of an operator rebuilt from its pytree parts.

        ``arrays`` may be tracers or abstract values: only store them, never compute with
        them here. The default, for operators without data fields, runs the constructor
        on the static parameters; operators with data fields override it.
        """
        if self.data_fields:
            raise NotImplementedError(f"{type(self).__name__} has data fields and must implement _restore")
        with jax.ensure_compile_time_eval():  # constants of the construction stay concrete in a trace
            type(self).__init__(self, input_shape, **static)

    def _init_restored(self, input_shape, output_shape) -> None:
        LinearOperator.__init__(self, input_shape=tuple(input_shape), output_shape=tuple(output_shape),
                                adj_fn=self._transpose_at_call, input_dtype=np.float32,
                                output_dtype=np.float32)

    def _transpose_at_call(self, y):
        spec = jax.ShapeDtypeStruct(self.input_shape, self.input_dtype)
        return jax.linear_transpose(self._eval, spec)(y)[0]

    @property
    def per_sample(self) -> Tuple[str, ...]:
        """Names of the data fields that hold one value per sample (leading axis ``N``)."""
        return tuple(f for f in self.data_fields if self._is_per_sample(f))

    def _is_per_sample(self, field: str) -> bool:
        return False

    def take(self, indices) -> "ImageOperator":
        """The operator on the samples ``indices`` of the batch (per-sample parameters sliced).

        A shared operator (no per-sample parameter) keeps its parameters; an unbatched one
        ``(H, W, C)`` is returned unchanged.

        Args:
            indices: 1-D integer sequence of sample indices.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if not self.batched:
            return self
        return type(self)((int(idx.size),) + tuple(self.input_shape[1:]), **self._sliced_parameters(idx))

    def sample(self, index: int) -> "ImageOperator":
        """The single-image operator ``(H, W, C)`` of sample ``index`` (its own parameters)."""
        if not self.batched:
            return self
        return type(self)(tuple(self.input_shape[1:]), **self._sliced_parameters(int(index)))

    def _sliced_parameters(self, index) -> Dict[str, Any]:
        """Constructor parameters with the per-sample ones indexed by ``index`` (an int or array)."""
        n = self.input_shape[0]
        idx = np.asarray(index)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"sample indices {idx.tolist()} out of range for a batch of {n}.")
        return {k: (np.asarray(v)[index] if k in self.per_sample else v) for k, v in self._parameters().items()}

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


def _hashable(v):
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(u) for u in v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _flatten_operator(op: ImageOperator):
    arrays = tuple(getattr(op, f) for f in op.data_fields)
    static = tuple(sorted((k, _hashable(v)) for k, v in op._parameters().items() if k not in op.data_fields))
    return arrays, (tuple(op.input_shape), static)


def _unflatten_operator(cls, aux, children):
    input_shape, static = aux
    op = object.__new__(cls)
    op._restore(input_shape, dict(static), dict(zip(cls.data_fields, children)))
    return op
