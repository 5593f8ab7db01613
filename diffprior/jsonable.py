"""One conversion of settings to JSON types, used by the configurations and the HDF5 files.

:func:`to_json` turns dataclasses (tagged with their class name under ``"type"``, so that
:meth:`diffprior.solvers.config.SolverConfig.from_json` can read them back), named tuples,
enums (their values), mappings, sequences, numpy and JAX arrays and scalars, and paths into
JSON types. It imports neither JAX nor the solvers.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["to_json"]


def to_json(obj: Any) -> Any:
    """``obj`` as JSON types (see the module docstring).

    Raises:
        TypeError: For a value with no JSON form.
    """
    if isinstance(obj, enum.Enum):
        return to_json(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"type": type(obj).__name__}
        out.update({f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
        return out
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return {k: to_json(v) for k, v in obj._asdict().items()}
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "__array__"):  # JAX arrays
        return np.asarray(obj).tolist()
    raise TypeError(f"cannot store a value of type {type(obj).__name__} as JSON: {obj!r}")
