"""Serialisable descriptions of operators (stored in problem files by :mod:`diffprior.io`).

A description is a flat ``dict``: ``"class"`` (the operator's class name),
``"input_shape"`` (list of ints), the remaining constructor arguments as JSON-able scalars
(ints, floats, strings) and numpy arrays (blur kernel, inpainting mask). Arrays are stored
as such, so a random mask or motion kernel is rebuilt exactly, without its key. A
per-sample operator keeps the sample axis of its arrays (kernels ``(N, kh, kw)``) and its
batched ``input_shape`` ``(N, H, W, C)``. Classes are known through
:func:`operators.register_operator`.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from ._base import OPERATOR_CLASSES, ImageOperator

__all__ = ["describe", "from_description", "OPERATOR_CLASSES"]


def describe(A: ImageOperator) -> Dict[str, Any]:
    """Describe an operator by its class and constructor arguments.

    Args:
        A: An operator of :data:`OPERATOR_CLASSES`.

    Returns:
        ``{"class": ..., "input_shape": [...], **parameters}`` with JSON-able scalars and
        numpy arrays.

    Raises:
        TypeError: If `A` is not an operator of this package.
    """
    if type(A).__name__ not in OPERATOR_CLASSES or not isinstance(A, ImageOperator):
        raise TypeError(f"describe() supports {sorted(OPERATOR_CLASSES)}; got {type(A).__name__}.")
    d: Dict[str, Any] = {"class": type(A).__name__, "input_shape": [int(s) for s in A.input_shape]}
    for k, v in A._parameters().items():
        d[k] = np.array(v) if k in A.data_fields or isinstance(v, np.ndarray) else v
    return d


def from_description(d: Dict[str, Any]) -> ImageOperator:
    """Rebuild an operator from :func:`describe`'s output.

    Args:
        d: Description dict (arrays may be any array-like; shapes may be lists).

    Returns:
        An operator equal to the described one (same output on any input).

    Raises:
        ValueError: If ``"class"`` or ``"input_shape"`` is missing or the class unknown.
        TypeError: If a parameter is not accepted by the class.
    """
    d = dict(d)
    for key in ("class", "input_shape"):
        if key not in d:
            raise ValueError(f"Operator description lacks {key!r}; got keys {sorted(d)}.")
    name = d.pop("class")
    if name not in OPERATOR_CLASSES:
        raise ValueError(
            f"Unknown operator class {name!r}; expected one of {sorted(OPERATOR_CLASSES)}."
        )
    d["input_shape"] = tuple(int(s) for s in np.asarray(d["input_shape"]).ravel())
    for k, v in list(d.items()):
        if isinstance(v, np.generic):
            d[k] = v.item()
    return OPERATOR_CLASSES[name](**d)
