"""Per-sample choice among several operators: one batch, several inverse problems."""

from __future__ import annotations

import math
from typing import Any, Sequence, Tuple

import numpy as np

import jax
import jax.numpy as jnp

from ._base import ImageOperator, check_image_shape

__all__ = ["Select"]


def _per_sample_output_size(op: ImageOperator) -> int:
    """Number of measurement values ``op`` gives for one image (batched ops: per sample)."""
    shape = op.output_shape[1:] if op.batched else op.output_shape
    return int(math.prod(shape))


class Select(ImageOperator):
    r"""Measure each sample of a batch by an operator of its own choice.

    Sample :math:`n` of a batch :math:`x = (x_1, \dots, x_N)` is measured by the operator
    :math:`A_{k_n}` of the list ``ops`` picked by :math:`k_n` = ``which[n]``; the
    measurement is flattened and zero-padded to the longest one, :math:`p`,

    .. math::
       y_n = P_{k_n} A_{k_n} x_n \in \mathbb{R}^p \;, \qquad
       P_k u = (\mathrm{vec}(u), 0, \dots, 0) \;,

    so that measurements of different shapes (a 4x downsampled image, a blurred one, a
    masked one) fit one array ``(N, p)``. The adjoint, restricted to sample :math:`n`, is

    .. math::
       (A^T y)_n = A_{k_n}^T P_{k_n}^T y_n \;,

    where :math:`P_k^T` crops :math:`y_n` to its first entries and reshapes them to
    :math:`A_k`'s output. It is derived by :func:`jax.linear_transpose` and is exact:
    selection and padding are linear, and their transposes are selection and cropping.

    One compiled solver program thus serves a batch that mixes several tasks; a second
    batch with other choices ``which`` and other kernels or masks of the same shapes reuses
    it (``ops`` and ``which`` are traced data, see :class:`ImageOperator`). Every operator
    is applied to every sample and the unwanted results are discarded, which costs little
    next to the network of a diffusion prior.

    ``which`` is the per-sample data field; :meth:`take` cuts the batch (batched operators
    of ``ops`` by their own :meth:`~ImageOperator.take`) and :meth:`sample` returns a
    ``Select`` on a batch of one, not a single-image operator.

    A ``Select`` is not serialisable (:func:`operators.describe` raises ``TypeError``): a
    problem file stores each task's own operator.

    Args:
        input_shape: Batched shape ``(N, H, W, C)``.
        ops: Non-empty sequence of :class:`ImageOperator`, each on one image
            ``(H, W, C)`` (applied to every sample with :func:`jax.vmap`) or on the whole
            batch ``(N, H, W, C)`` (e.g. per-sample kernels or masks).
        which: Integer array ``(N,)`` with values in ``[0, len(ops))``: the operator of
            each sample.
        jit: Jit-compile forward, adjoint and Gram maps.

    Raises:
        TypeError: If ``ops`` is not a non-empty sequence of :class:`ImageOperator`.
        ValueError: If ``input_shape`` is not batched, an operator's input shape is neither
            ``(H, W, C)`` nor ``(N, H, W, C)``, or ``which`` is not an integer array of
            shape ``(N,)`` with values in ``[0, len(ops))``.
    """

    data_fields = ("ops", "which")

    def __init__(self, input_shape: Tuple[int, ...], ops: Sequence[ImageOperator], which,
                 jit: bool = False):
        input_shape = check_image_shape(input_shape)
        if len(input_shape) != 4:
            raise ValueError(f"Select needs a batched input_shape (N, H, W, C); got {input_shape}.")
        self.ops = _check_ops(ops, input_shape)
        self.which = _check_which(which, input_shape[0], len(self.ops))
        # The adjoint is transposed at each call (cheap: tracing only) instead of eagerly at
        # construction, which would evaluate every operator once on zeros.
        super().__init__(input_shape, self._output_shape(input_shape), adj_fn=self._transpose_at_call, jit=jit)

    def _output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, int]:
        return (int(input_shape[0]), max(_per_sample_output_size(op) for op in self.ops))

    def _parameters(self) -> dict:
        return {"ops": tuple(self.ops), "which": self.which}

    def _restore(self, input_shape, static, arrays) -> None:
        self.ops = tuple(arrays["ops"])
        self.which = arrays["which"]
        self._init_restored(input_shape, self._output_shape(input_shape))
        self._adj = self._transpose_at_call

    @property
    def per_sample(self) -> Tuple[str, ...]:
        """``("which",)``: the choice of operator is per sample (the operators' own
        per-sample arrays are cut by :meth:`take` through the operators)."""
        return ("which",)

    def _eval(self, x: jax.Array) -> jax.Array:
        n, p = self.output_shape
        which = jnp.asarray(self.which)
        y = jnp.zeros((n, p), x.dtype)
        for k, op in enumerate(self.ops):
            out = op._eval(x) if op.batched else jax.vmap(op._eval)(x)
            out = out.reshape((n, -1)).astype(x.dtype)
            out = jnp.pad(out, ((0, 0), (0, p - out.shape[1])))
            y = jnp.where(which[:, None] == k, out, y)
        return y

    def take(self, indices) -> "Select":
        """The ``Select`` on the samples ``indices`` of the batch.

        ``which`` is sliced, batched operators are cut by their own
        :meth:`~ImageOperator.take`, single-image ones are kept.

        Args:
            indices: 1-D integer sequence of sample indices.

        Raises:
            IndexError: If an index is out of range.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.input_shape[0]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"sample indices {idx.tolist()} out of range for a batch of {n}.")
        ops = tuple(op.take(idx) if op.batched else op for op in self.ops)
        return Select((int(idx.size),) + tuple(self.input_shape[1:]), ops, np.asarray(self.which)[idx])

    def sample(self, index: int) -> "Select":
        """``self.take([index])``: a ``Select`` on a batch of one ``(1, H, W, C)``, whose
        output is ``(1, p)`` (not a single-image operator, unlike the other classes)."""
        return self.take([index])


def _check_ops(ops: Any, input_shape: Tuple[int, ...]) -> Tuple[ImageOperator, ...]:
    if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence) or len(ops) == 0:
        raise TypeError(f"Select ops must be a non-empty sequence of ImageOperators; got {ops!r}.")
    batch, image = tuple(input_shape), tuple(input_shape[1:])
    for i, op in enumerate(ops):
        if not isinstance(op, ImageOperator):
            raise TypeError(f"Select ops[{i}] must be an ImageOperator; got {type(op).__name__}.")
        if tuple(op.input_shape) not in (image, batch):
            raise ValueError(f"Select ops[{i}] ({type(op).__name__}) acts on {tuple(op.input_shape)}; "
                             f"expected one image {image} or the batch {batch}.")
    return tuple(ops)


def _check_which(which: Any, n: int, n_ops: int) -> np.ndarray:
    w = np.asarray(which)
    if w.dtype == bool or not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"Select which must be an integer array; got dtype {w.dtype}.")
    if w.shape != (n,):
        raise ValueError(f"Select which must have shape (N,) = ({n},), one entry per sample; got {w.shape}.")
    if w.min() < 0 or w.max() >= n_ops:
        raise ValueError(f"Select which values must be in range [0, {n_ops}) (indices into ops); "
                         f"got {w.tolist()}.")
    return w.astype(np.int32)
