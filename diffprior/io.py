"""HDF5 files of inverse problems and of their reconstructions (schema version 2).

Functions take and return numpy arrays; the caller decides device placement. This module
imports neither JAX nor the operators, so it is cheap to import in data-handling scripts.

Problem files
-------------
Root attributes ``schema = "diffprior-problem"``, ``schema_version = 2``,
``library_version`` (``diffprior.__version__`` of the writer), ``created`` (ISO 8601 UTC),
``task`` (optional: name of the task preset that made the problem, e.g.
``"motion-deblur"``).

=================  ========================  =============================================
member             shape / type              content
=================  ========================  =============================================
``measurement``    ``(N, ...)`` float32      noisy measurements :math:`y_n = A x_n + \\sigma
                                             \\varepsilon_n`, one per sample; finite
``ground_truth``   ``(N, H, W, C)`` float32  optional; finite images in ``[0, 1]``
``noise_sigma``    scalar float64            :math:`\\sigma \\ge 0` in ``[0, 1]`` image
                                             units
``seeds``          ``(N,)`` int64            optional; per-sample seeds
``names``          ``(N,)`` UTF-8 strings    optional; per-sample names (e.g. file names)
``operator/``      group                     :func:`operators.describe` of the forward
                                             operator: attribute ``description`` holds the
                                             JSON object of its scalar entries (``class``,
                                             ``input_shape``, ...), one dataset per array
                                             entry (``kernel``, ``mask``), named by its
                                             key; attribute ``per_sample`` holds the JSON
                                             list of the array keys that carry a leading
                                             sample axis (``[]`` for a shared operator)
=================  ========================  =============================================

The operator acts on one sample (``input_shape = (H, W, C)``, applied to each) or on the
whole batch (``input_shape = (N, H, W, C)``, first entry the file's `N`). A batched operator
may carry per-sample parameters: each array named in ``per_sample`` has a leading axis of
length `N` (e.g. ``kernel`` ``(N, k, k)`` of a ``Blur``, ``mask`` ``(N, H, W)`` of an
``Inpaint``); the others are shared by all samples. Operator arrays are finite.

:func:`read_problem` checks everything :func:`write_problem` enforces (shapes, finite
values, ground truth in ``[0, 1]``, :math:`\\sigma \\ge 0`, integer seeds, the sample axes),
so a file corrupted after it was written is refused with an error naming the member rather
than giving NaN metrics later.

Result files
------------
Root attributes ``schema = "diffprior-result"``, ``schema_version = 2``,
``library_version``, ``created``, ``solver`` (name), ``hyperparameters`` (JSON object),
``seed`` (int; absent if none), ``n_samples``, ``image_shape``, ``problem`` (optional: the
problem file it solves), ``run_id`` (random hex string naming this file's journal entries).

====================  ==========================  =========================================
member                shape / type                content
====================  ==========================  =========================================
``reconstruction``    ``(N, H, W, C)`` float32    reconstructions in ``[0, 1]``; NaN where
                                                  not done
``done``              ``(N,)`` uint8              1 once sample ``n`` is complete
``wall_time``         ``(N,)`` float64            seconds per sample; NaN where unknown
``metrics/<name>``    ``(N,)`` float64            per-sample metrics (``psnr``, ``ssim``,
                                                  ``lpips``, ...); NaN where not reported
``history/<n>/<s>``   ``(T, ...)`` numeric        iteration history of sample ``n``
                                                  (zero-padded to 6 digits), one dataset
                                                  per statistic ``s`` (first axis: step)
====================  ==========================  =========================================

Journal. Samples appended since the last compaction live next to the result, in the folder
``<result>.parts/`` (e.g. ``results.h5.parts/``), one small HDF5 file per sample named
``<n>.h5`` (zero-padded to 6 digits): root attributes ``schema = "diffprior-result-part"``,
``schema_version = 1``, ``run_id`` (the result's), ``index`` (``n``); members
``reconstruction`` ``(H, W, C)`` float32, ``wall_time`` scalar float64, ``metrics/<name>``
scalar float64, ``history/<s>`` arrays. A sample is *done* when it is flagged in the main
file or has a valid part; a part replaces the whole sample (its reconstruction, wall time,
all metrics, history). Parts that cannot be read, or whose ``run_id``, ``index`` or shape
do not match, are ignored by readers and deleted by the next writer. :func:`read_result`,
:meth:`ResultWriter.done_indices` and resuming see the main file and the journal together,
so a result is complete and readable whether or not it has been compacted. Copy or move a
result after :meth:`ResultWriter.close` (which empties the journal), or together with its
``.parts`` folder.

Schema versions
---------------
Version 2 adds, to problem files, the ``task`` attribute and the ``per_sample`` attribute
of the ``operator`` group (per-sample operator arrays); to result files, the ``run_id``
attribute and the ``.parts`` journal (a version-1 reader would not see journaled samples,
hence the new version). Version-1 files are still read: a problem without ``task`` and
with a shared operator (``per_sample = []``); a result without journal. Resuming a
version-1 result upgrades it to version 2 (one copy of the file, before the first append).

Atomicity
---------
Every file is written through a temporary file in the same folder (``.<name>.<pid>.tmp``)
which is flushed, ``fsync``-ed and moved over the target with :func:`os.replace`, then the
folder is ``fsync``-ed: a crash at any moment leaves the file before or after the write,
never a half-written one (an HDF5 file modified in place can become unreadable when the
writer dies).

:meth:`ResultWriter.append` writes only its sample: one part file (a few MB for a
512x512x3 image), committed that way; the sample counts as done the moment the part's
:func:`os.replace` has happened. An append therefore costs the same for the thousandth
sample as for the first, where copying the growing result per sample (this module's
version-1 design) cost O(N) per append and O(N^2) per run. Each entry leaves the page cache
once synced (it is read again only when compacting), so a long run's journal does not fill
memory and slow later writes down. :meth:`ResultWriter.close`
(also run by ``with ResultWriter(...) as w:``) *compacts*: one copy-on-write of the main
file adds every journaled sample and is committed atomically, then the parts are deleted.
A crash before the commit leaves the old main file and the journal (together: every
sample); a crash after it leaves parts that duplicate samples of the main file (same data;
they are deleted by the next compaction). A ``kill -9`` thus never loses a finished sample
and never leaves an unreadable result. Why a journal rather than one HDF5 file updated in
place (HDF5 has no crash-safe in-place update: a killed writer can corrupt the whole file,
and SWMR mode only protects readers) or an append-only raw log (needs its own format and
torn-write detection; a part file is a self-describing HDF5 file, committed by a rename).
Compaction needs free disk space for one more copy of the result. Temporary files left by
a crash are removed when a :class:`ResultWriter` next opens the result. A result file has a
single writer at a time; readers may read while it writes (a reader that overlaps a
compaction rereads).

Errors
------
All reading and validation errors derive from :class:`DiffpriorIOError` (a
:class:`ValueError`) and name the file and member: :class:`MissingMemberError`,
:class:`SchemaError` (wrong kind of file, or a newer ``schema_version``),
:class:`ShapeMismatchError`, :class:`InvalidDataError` (values outside what the schema
allows: NaN, ground truth outside ``[0, 1]``, negative sigma, non-integer seeds),
:class:`CorruptFileError` (not HDF5, truncated, unreadable),
:class:`IncompatibleResultError` (resuming with other settings).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DiffpriorError
from .jsonable import to_json

__all__ = [
    "SCHEMA_VERSION",
    "PROBLEM_SCHEMA",
    "RESULT_SCHEMA",
    "PART_SCHEMA",
    "DiffpriorIOError",
    "MissingMemberError",
    "SchemaError",
    "ShapeMismatchError",
    "InvalidDataError",
    "CorruptFileError",
    "IncompatibleResultError",
    "Problem",
    "Result",
    "WriteMode",
    "write_problem",
    "read_problem",
    "ResultWriter",
    "read_result",
    "read_samples",
    "compact_result",
    "journal_path",
]

SCHEMA_VERSION = 2
"""Schema version written by this library (and the newest it reads), problems and results."""
PROBLEM_SCHEMA = "diffprior-problem"
RESULT_SCHEMA = "diffprior-result"
PART_SCHEMA = "diffprior-result-part"
"""Schema of a journal entry (one appended sample) of a result file."""
PART_SCHEMA_VERSION = 1

PathLike = Union[str, os.PathLike]

# Operator array entries whose rank without a sample axis is known, so that write_problem
# can tell a per-sample array (one axis more) from a shared one when not told.
_PER_ITEM_NDIM: Dict[Tuple[str, str], int] = {("Blur", "kernel"): 2, ("Inpaint", "mask"): 2}
# --------------------------------------------------------------------------- errors


class DiffpriorIOError(DiffpriorError, ValueError):
    """Base class of file errors; `path` and `member` say where."""

    def __init__(self, message: str, path: Optional[PathLike] = None, member: Optional[str] = None):
        self.path = None if path is None else str(path)
        self.member = member
        where = ""
        if self.path is not None:
            where = f"{self.path}" + (f" [{member}]" if member else "") + ": "
        super().__init__(where + message)


class MissingMemberError(DiffpriorIOError):
    """A required dataset, group or attribute is missing."""


class SchemaError(DiffpriorIOError):
    """The file is not of the expected schema, or has a newer/unknown schema version."""


class ShapeMismatchError(DiffpriorIOError):
    """Array shapes are inconsistent with each other or with the file."""


class InvalidDataError(DiffpriorIOError):
    """Values outside what the schema allows (NaN or infinite data, ground truth outside
    ``[0, 1]``, negative sigma, non-integer seeds, a sample axis of the wrong length)."""


class CorruptFileError(DiffpriorIOError):
    """The file is not a readable HDF5 file (e.g. truncated)."""


class IncompatibleResultError(DiffpriorIOError):
    """An existing result file was written with other settings than those to resume with."""


# --------------------------------------------------------------------------- helpers


def _h5py():
    import h5py

    return h5py


def _library_version() -> str:
    from diffprior import __version__

    return __version__


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _json_dumps(obj: Any) -> str:
    return json.dumps(to_json(obj), sort_keys=True, allow_nan=True)


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync_file(path: Path, drop_cache: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if drop_cache and hasattr(os, "posix_fadvise"):
            # Written once, read again only when compacting: keep it out of the page cache,
            # which would otherwise fill (and slow every later write) as a run goes on.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _commit(tmp: Path, path: Path, drop_cache: bool = False) -> None:
    _fsync_file(tmp, drop_cache)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _atomic_write(
    path: Path, fill: Callable[[Any], None], copy_from: Optional[Path] = None
) -> None:
    """Write `path` through a temporary file: new (``fill(f)`` on an empty file) or a
    modified copy of `copy_from`; the target is replaced only if `fill` succeeds."""
    h5py = _h5py()
    tmp = _tmp_path(path)
    try:
        if copy_from is not None:
            shutil.copyfile(copy_from, tmp)
            mode = "r+"
        else:
            mode = "w"
        with h5py.File(tmp, mode) as f:
            fill(f)
        _commit(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def _open_read(path: PathLike):
    """Open an HDF5 file for reading, mapping failures to clear exceptions."""
    h5py = _h5py()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise CorruptFileError(f"not a readable HDF5 file ({e}).", path) from e


def _check_schema(f, path: Path, schema: str) -> int:
    attrs = f.attrs
    if "schema" not in attrs:
        raise MissingMemberError(
            f"attribute 'schema' missing; not a {schema} file.", path, "/@schema"
        )
    got = attrs["schema"]
    got = got.decode() if isinstance(got, bytes) else str(got)
    if got != schema:
        raise SchemaError(f"expected schema {schema!r}, got {got!r}.", path, "/@schema")
    if "schema_version" not in attrs:
        raise MissingMemberError("attribute 'schema_version' missing.", path, "/@schema_version")
    version = attrs["schema_version"]
    if not isinstance(version, (int, np.integer)) or isinstance(version, (bool, np.bool_)):
        raise SchemaError(
            f"schema_version must be an int, got {version!r}.", path, "/@schema_version"
        )
    version = int(version)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"schema_version {version} is newer than this library reads ({SCHEMA_VERSION}); "
            f"upgrade diffprior.",
            path,
            "/@schema_version",
        )
    if version < 1:
        raise SchemaError(f"unknown schema_version {version}.", path, "/@schema_version")
    return version


def _dataset(f, name: str, path: Path) -> np.ndarray:
    h5py = _h5py()
    if name not in f:
        raise MissingMemberError(f"required member {name!r} missing.", path, name)
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        raise MissingMemberError(f"{name!r} is not a dataset.", path, name)
    try:
        return obj[()]
    except OSError as e:
        raise CorruptFileError(f"cannot read {name!r} ({e}).", path, name) from e


def _attr_str(attrs, name: str, path: Path, member: str) -> str:
    if name not in attrs:
        raise MissingMemberError(f"attribute {name!r} missing.", path, member)
    v = attrs[name]
    return v.decode() if isinstance(v, bytes) else str(v)


def _attr_json(attrs, name: str, path: Path, member: str, what: str, valid, expected: str) -> Any:
    """The JSON value of a string attribute, checked by ``valid`` (it must be ``expected``)."""
    text = _attr_str(attrs, name, path, member)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{what} is not valid JSON ({e}).", path, member) from e
    if not valid(value):
        raise CorruptFileError(f"{what} must be {expected}; got {text!r}.", path, member)
    return value


def _as_float_array(x, what: str, ndim: Optional[int] = None, min_ndim: int = 1) -> np.ndarray:
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{what}: expected a real numeric array, got dtype {a.dtype}.")
    if ndim is not None and a.ndim != ndim:
        raise ShapeMismatchError(f"{what}: expected {ndim} dimensions, got shape {a.shape}.")
    if a.ndim < min_ndim:
        raise ShapeMismatchError(
            f"{what}: expected at least {min_ndim} dimensions, got shape {a.shape}."
        )
    return a.astype(np.float32)


def _check_sigma(sigma) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise TypeError(f"noise sigma must be a real number; got {sigma!r}.") from None
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"noise sigma must be finite and >= 0; got {s}.")
    return s




def _check_numeric(a: np.ndarray, path: Path, member: str) -> None:
    if a.dtype.kind not in "biuf":
        raise InvalidDataError(
            f"{member} must hold real numbers; got dtype {a.dtype}.", path, member
        )


def _check_finite(a: np.ndarray, path: Path, member: str) -> None:
    """Raise :class:`InvalidDataError` naming `member` if `a` has NaN or infinite entries."""
    _check_numeric(a, path, member)
    if a.dtype.kind != "f":
        return  # integers and booleans are finite
    bad = ~np.isfinite(a)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InvalidDataError(
            f"{member} has {int(bad.sum())} non-finite entries (NaN or inf; first at index "
            f"{first}).",
            path,
            member,
        )


# --------------------------------------------------------------------------- problems


@dataclasses.dataclass(frozen=True)
class Problem:
    """An inverse problem read from a file (numpy arrays throughout).

    Attributes:
        measurement: ``(N, ...)`` float32 measurements.
        operator: Operator description (see :func:`operators.describe`); arrays named in
            `per_sample_keys` have a leading axis of length `N`.
        noise_sigma: Noise standard deviation in ``[0, 1]`` image units.
        ground_truth: ``(N, H, W, C)`` float32 or ``None``.
        seeds: ``(N,)`` int64 or ``None``.
        names: List of `N` strings or ``None``.
        schema_version: Version of the file's schema.
        library_version: diffprior version that wrote the file.
        task: Name of the task preset that made the problem (e.g. ``"motion-deblur"``), or
            ``None`` (also for version-1 files).
        per_sample_keys: Keys of the operator arrays that hold one entry per sample
            (leading axis `N`); empty for an operator shared by all samples.
    """

    measurement: np.ndarray
    operator: Dict[str, Any]
    noise_sigma: float
    ground_truth: Optional[np.ndarray] = None
    seeds: Optional[np.ndarray] = None
    names: Optional[List[str]] = None
    schema_version: int = SCHEMA_VERSION
    library_version: str = ""
    task: Optional[str] = None
    per_sample_keys: Tuple[str, ...] = ()

    @property
    def n_samples(self) -> int:
        """Number of samples `N`."""
        return int(self.measurement.shape[0])

    def build_operator(self):
        """Rebuild the forward operator (imports :mod:`operators`, hence JAX)."""
        from operators import from_description

        return from_description(self.operator)


def _check_problem(
    path: Path,
    measurement: np.ndarray,
    sigma: float,
    ground_truth: Optional[np.ndarray],
    seeds: Optional[np.ndarray],
    names: Optional[Sequence[str]],
    input_shape: Sequence[int],
    arrays: Mapping[str, np.ndarray],
    per_sample: Sequence[str],
) -> None:
    """The checks :func:`write_problem` and :func:`read_problem` share (numpy inputs)."""
    if measurement.ndim < 2:
        raise ShapeMismatchError(
            f"measurement must be (N, ...); got shape {measurement.shape}.", path, "measurement"
        )
    N = measurement.shape[0]
    _check_finite(measurement, path, "measurement")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise InvalidDataError(
            f"noise sigma must be finite and >= 0; got {sigma}.", path, "noise_sigma"
        )
    shape = tuple(int(s) for s in input_shape)
    if ground_truth is not None:
        if ground_truth.ndim != 4:
            raise ShapeMismatchError(
                f"ground_truth must be (N, H, W, C); got shape {ground_truth.shape}.",
                path,
                "ground_truth",
            )
        if ground_truth.shape[0] != N:
            raise ShapeMismatchError(
                f"ground_truth has {ground_truth.shape[0]} samples, measurement has {N}.",
                path,
                "ground_truth",
            )
        if tuple(ground_truth.shape[1:]) != shape[-3:]:
            raise ShapeMismatchError(
                f"ground_truth images have shape {ground_truth.shape[1:]}, operator "
                f"input_shape is {shape}.",
                path,
                "ground_truth",
            )
        _check_finite(ground_truth, path, "ground_truth")
        lo, hi = float(ground_truth.min()), float(ground_truth.max())
        if lo < 0 or hi > 1:
            raise InvalidDataError(
                f"ground_truth must be in [0, 1]; got values in [{lo}, {hi}].",
                path,
                "ground_truth",
            )
    if len(shape) == 4 and shape[0] != N:
        raise ShapeMismatchError(
            f"batched operator input_shape {shape} does not match N={N} samples.",
            path,
            "operator",
        )
    if seeds is not None and seeds.shape != (N,):
        raise ShapeMismatchError(f"seeds must have shape ({N},); got {seeds.shape}.", path, "seeds")
    if names is not None and len(names) != N:
        raise ShapeMismatchError(f"names must have {N} entries; got {len(names)}.", path, "names")
    for k in per_sample:
        if k not in arrays:
            raise InvalidDataError(
                f"per_sample names {k!r}, which is not an array of the operator (arrays: "
                f"{sorted(arrays)}).",
                path,
                "operator/@per_sample",
            )
    if per_sample and len(shape) != 4:
        raise ShapeMismatchError(
            f"per-sample operator arrays {list(per_sample)} need a batched input_shape "
            f"(N, H, W, C); got {shape}.",
            path,
            "operator",
        )
    for k in per_sample:
        a = arrays[k]
        if a.ndim < 1 or a.shape[0] != N:
            raise ShapeMismatchError(
                f"per-sample operator array {k!r} has shape {a.shape}; expected a leading "
                f"axis of length N={N}.",
                path,
                f"operator/{k}",
            )
    for k, a in arrays.items():
        _check_finite(a, path, f"operator/{k}")


def _infer_per_sample(cls: Any, shape: Sequence[int], arrays: Mapping[str, np.ndarray]) -> List[str]:
    """Per-sample arrays of an operator of a known class (one axis more than shared); the
    checks then refuse them unless the operator is batched with the file's `N`."""
    out = []
    for k, a in arrays.items():
        nd = _PER_ITEM_NDIM.get((str(cls), k))
        if nd is not None and a.ndim == nd + 1:
            out.append(k)
    return out


def write_problem(
    path: PathLike,
    measurement,
    operator_description: Mapping[str, Any],
    sigma: float,
    ground_truth=None,
    seeds=None,
    names: Optional[Sequence[str]] = None,
    *,
    task: Optional[str] = None,
    per_sample: Optional[Sequence[str]] = None,
) -> None:
    """Write a problem file atomically (see the module docstring for the schema).

    Args:
        path: Target file (replaced if it exists).
        measurement: ``(N, ...)`` measurements.
        operator_description: :func:`operators.describe` of the forward operator. For a
            batched operator (``input_shape = (N, H, W, C)``) its arrays may carry a leading
            sample axis of length `N` (e.g. ``kernel`` ``(N, k, k)``).
        sigma: Noise standard deviation in ``[0, 1]`` image units, >= 0.
        ground_truth: Optional ``(N, H, W, C)`` images in ``[0, 1]``.
        seeds: Optional ``(N,)`` integer seeds.
        names: Optional `N` sample names.
        task: Optional name of the task preset that made the problem (``"motion-deblur"``).
        per_sample: Keys of the operator arrays that carry a sample axis (pass the
            operator's ``per_sample``). Default: a ``"per_sample"`` entry of the
            description if it has one, else inferred for ``Blur`` (``kernel`` of rank 3)
            and ``Inpaint`` (``mask`` of rank 3); other arrays count as shared.

    Raises:
        ShapeMismatchError: If the arrays disagree in `N`, with the operator's input shape,
            or a per-sample array's leading axis is not `N`.
        InvalidDataError: (a :class:`ValueError`) for a negative or non-finite sigma,
            non-finite data, ground truth outside ``[0, 1]``.
        ValueError: For a description without ``class``/``input_shape`` or an empty task.
        TypeError: For non-numeric arrays or values that are not JSON-able.
    """
    path = Path(path)
    measurement = _as_float_array(measurement, "measurement", min_ndim=2)
    sigma = _check_sigma(sigma)
    if ground_truth is not None:
        ground_truth = _as_float_array(ground_truth, "ground_truth")
    if seeds is not None:
        seeds = np.asarray(seeds)
        if not np.issubdtype(seeds.dtype, np.integer):
            raise TypeError(f"seeds must be integers; got dtype {seeds.dtype}.")
        seeds = seeds.astype(np.int64)
    if names is not None:
        names = [str(n) for n in names]
    if task is not None:
        if not isinstance(task, str):
            raise TypeError(f"task must be a str; got {task!r}.")
        if not task:
            raise ValueError("task must be a non-empty str (or None).")
    description = dict(operator_description)
    for key in ("class", "input_shape"):
        if key not in description:
            raise ValueError(f"operator_description lacks {key!r}; got keys {sorted(description)}.")
    described_per_sample = description.pop("per_sample", None)
    scalars: Dict[str, Any] = {}
    arrays: Dict[str, np.ndarray] = {}
    for k, v in description.items():
        if not isinstance(k, str) or not k or "/" in k:
            raise ValueError(f"operator_description key {k!r} must be a non-empty str without '/'.")
        if k == "input_shape":
            scalars[k] = [int(s) for s in np.asarray(v).ravel()]
        elif isinstance(v, np.ndarray) or (hasattr(v, "__array__") and np.ndim(v) > 0):
            arrays[k] = np.asarray(v)
        else:
            scalars[k] = v
    if per_sample is None:
        per_sample = described_per_sample
    if per_sample is None:
        per_sample = _infer_per_sample(scalars["class"], scalars["input_shape"], arrays)
    if isinstance(per_sample, (str, bytes)) or not all(isinstance(k, str) for k in per_sample):
        raise TypeError(f"per_sample must be a sequence of array keys; got {per_sample!r}.")
    per_sample = list(dict.fromkeys(per_sample))
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise TypeError(f"operator array {k!r}: expected a real numeric array, got dtype {a.dtype}.")
    _check_problem(
        path, measurement, sigma, ground_truth, seeds, names, scalars["input_shape"], arrays,
        per_sample,
    )
    scalars_json = _json_dumps(scalars)
    h5py = _h5py()

    def fill(f):
        f.attrs["schema"] = PROBLEM_SCHEMA
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        f.attrs["library_version"] = _library_version()
        f.attrs["created"] = _now()
        if task is not None:
            f.attrs["task"] = task
        f.create_dataset("measurement", data=measurement)
        f.create_dataset("noise_sigma", data=np.float64(sigma))
        if ground_truth is not None:
            f.create_dataset("ground_truth", data=ground_truth)
        if seeds is not None:
            f.create_dataset("seeds", data=seeds)
        if names is not None:
            f.create_dataset("names", data=names, dtype=h5py.string_dtype("utf-8"))
        g = f.create_group("operator")
        g.attrs["description"] = scalars_json
        g.attrs["per_sample"] = json.dumps(per_sample)
        for k, v in arrays.items():
            g.create_dataset(k, data=v)

    _atomic_write(path, fill)


def read_problem(path: PathLike) -> Problem:
    """Read and validate a problem file (schema version 1 or 2).

    Every check of :func:`write_problem` is made again, so a file corrupted after it was
    written (NaN in the data, ground truth outside ``[0, 1]``, ...) is refused.

    Args:
        path: File written by :func:`write_problem`.

    Returns:
        The :class:`Problem`.

    Raises:
        FileNotFoundError: If `path` does not exist.
        CorruptFileError: If it is not a readable HDF5 file.
        SchemaError: If it is not a problem file or its schema version is newer.
        MissingMemberError: If a required member is missing.
        ShapeMismatchError: If members disagree in shape.
        InvalidDataError: If values are outside what the schema allows (non-finite
            measurement, ground truth or operator arrays, ground truth outside ``[0, 1]``,
            negative sigma, non-integer seeds).
    """
    path = Path(path)
    h5py = _h5py()
    with _open_read(path) as f:
        version = _check_schema(f, path, PROBLEM_SCHEMA)
        measurement = _dataset(f, "measurement", path)
        _check_numeric(measurement, path, "measurement")
        sigma = _dataset(f, "noise_sigma", path)
        if np.shape(sigma) != ():
            raise ShapeMismatchError(
                f"noise_sigma must be a scalar; got shape {np.shape(sigma)}.", path, "noise_sigma"
            )
        _check_numeric(np.asarray(sigma), path, "noise_sigma")
        sigma = float(sigma)
        ground_truth = _dataset(f, "ground_truth", path) if "ground_truth" in f else None
        if ground_truth is not None:
            _check_numeric(ground_truth, path, "ground_truth")
        seeds = _dataset(f, "seeds", path) if "seeds" in f else None
        if seeds is not None and seeds.dtype.kind not in "iu":
            raise InvalidDataError(
                f"seeds must be integers; got dtype {seeds.dtype}.", path, "seeds"
            )
        names = None
        if "names" in f:
            try:
                names = [str(s) for s in f["names"].asstr()[()]]
            except (OSError, TypeError) as e:
                raise CorruptFileError(f"cannot read names ({e}).", path, "names") from e
        task = _attr_str(f.attrs, "task", path, "/@task") if "task" in f.attrs else None
        if "operator" not in f or not isinstance(f["operator"], h5py.Group):
            raise MissingMemberError("required group 'operator' missing.", path, "operator")
        g = f["operator"]
        description = _attr_json(g.attrs, "description", path, "operator/@description", "operator description",
                                 lambda v: isinstance(v, dict), "a JSON object")
        for key in ("class", "input_shape"):
            if key not in description:
                raise MissingMemberError(
                    f"operator description lacks {key!r}.", path, "operator/@description"
                )
        try:
            input_shape = [int(s) for s in description["input_shape"]]
        except (TypeError, ValueError):
            raise InvalidDataError(
                f"operator input_shape must be a list of ints; got "
                f"{description['input_shape']!r}.",
                path,
                "operator/@description",
            ) from None
        arrays: Dict[str, np.ndarray] = {}
        for k in g:
            arrays[k] = np.asarray(_dataset(g, k, path))
        per_sample: List[str] = []
        if version >= 2:
            per_sample = _attr_json(g.attrs, "per_sample", path, "operator/@per_sample", "per_sample",
                                    lambda v: isinstance(v, list) and all(isinstance(k, str) for k in v),
                                    "a JSON list of array keys")
        description.update(arrays)
        library_version = str(f.attrs.get("library_version", ""))
    _check_problem(
        path, measurement, sigma, ground_truth, seeds, names, input_shape, arrays, per_sample
    )
    return Problem(
        measurement=np.asarray(measurement),
        operator=description,
        noise_sigma=sigma,
        ground_truth=None if ground_truth is None else np.asarray(ground_truth),
        seeds=None if seeds is None else np.asarray(seeds),
        names=names,
        schema_version=version,
        library_version=library_version,
        task=task,
        per_sample_keys=tuple(per_sample),
    )
# --------------------------------------------------------------------------- results


def setting_differences(theirs: Any, mine: Any, name: str) -> List[str]:
    """Where two settings differ, as ``"<dotted name> <file's value> (this run: <value>)"``.

    Nested mappings are compared key by key, so a long hyperparameter record names only the
    entries that differ; a configuration of another type (another solver) is named once.
    """
    if isinstance(theirs, Mapping) and isinstance(mine, Mapping):
        if theirs.get("type") != mine.get("type"):
            return [f"{name} {theirs.get('type')!r} (this run: {mine.get('type')!r})"] if (
                "type" in theirs or "type" in mine) else []
        out: List[str] = []
        for k in sorted(set(theirs) | set(mine), key=str):
            out += setting_differences(theirs.get(k), mine.get(k), f"{name}.{k}")
        return out
    if isinstance(theirs, (list, tuple)) and isinstance(mine, (list, tuple)) and list(theirs) == list(mine):
        return []
    return [] if theirs == mine else [f"{name} {_short(theirs)} (this run: {_short(mine)})"]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


class WriteMode(str, enum.Enum):
    """What :class:`ResultWriter` does with an existing file."""

    RESUME = "resume"
    """Keep finished samples if the file matches the run's settings, else raise."""
    OVERWRITE = "overwrite"
    """Start a fresh file."""
    NEW = "new"
    """Raise :class:`FileExistsError` if the file exists."""




@dataclasses.dataclass(frozen=True)
class Result:
    """A result file's content (numpy arrays throughout), journal included.

    Attributes:
        reconstruction: ``(N, H, W, C)`` float32, NaN for samples not done.
        done: ``(N,)`` bool.
        metrics: Metric name -> ``(N,)`` float64 (NaN where missing).
        wall_time: ``(N,)`` float64 seconds (NaN where missing).
        history: Sample index -> {statistic -> array}, for samples that have one.
        solver: Solver name.
        hyperparameters: Solver hyperparameters.
        seed: Run seed or ``None``.
        problem: Problem file the run solved, or ``None``.
        library_version: diffprior version that created the file.
        schema_version: Version of the file's schema.
        journal_samples: How many samples were read from the journal (appended since the
            last compaction); 0 for a compacted file.
    """

    reconstruction: np.ndarray
    done: np.ndarray
    metrics: Dict[str, np.ndarray]
    wall_time: np.ndarray
    history: Dict[int, Dict[str, np.ndarray]]
    solver: str
    hyperparameters: Dict[str, Any]
    seed: Optional[int]
    problem: Optional[str]
    library_version: str
    schema_version: int = SCHEMA_VERSION
    journal_samples: int = 0

    @property
    def done_indices(self) -> np.ndarray:
        """Indices of finished samples."""
        return np.flatnonzero(self.done)


def _read_result_header(f, path: Path) -> Dict[str, Any]:
    version = _check_schema(f, path, RESULT_SCHEMA)
    a = f.attrs
    for name in ("n_samples", "image_shape", "solver", "hyperparameters"):
        if name not in a:
            raise MissingMemberError(f"attribute {name!r} missing.", path, f"/@{name}")
    try:
        hyper = json.loads(_attr_str(a, "hyperparameters", path, "/@hyperparameters"))
    except json.JSONDecodeError as e:
        raise CorruptFileError(
            f"hyperparameters are not valid JSON ({e}).", path, "/@hyperparameters"
        ) from e
    return {
        "schema_version": version,
        "n_samples": int(a["n_samples"]),
        "image_shape": tuple(int(s) for s in np.asarray(a["image_shape"]).ravel()),
        "solver": _attr_str(a, "solver", path, "/@solver"),
        "hyperparameters": hyper,
        "seed": int(a["seed"]) if "seed" in a else None,
        "problem": _attr_str(a, "problem", path, "/@problem") if "problem" in a else None,
        "library_version": str(a.get("library_version", "")),
        "run_id": _attr_str(a, "run_id", path, "/@run_id") if version >= 2 else None,
    }


def _check_result_members(f, path: Path, header: Mapping[str, Any]) -> None:
    N, shape = header["n_samples"], header["image_shape"]
    expected = {"reconstruction": (N,) + shape, "done": (N,), "wall_time": (N,)}
    for name, shp in expected.items():
        if name not in f:
            raise MissingMemberError(f"required member {name!r} missing.", path, name)
        if tuple(f[name].shape) != shp:
            raise ShapeMismatchError(
                f"{name!r} has shape {tuple(f[name].shape)}, expected {shp}.", path, name
            )
    if "metrics" in f:
        for k, ds in f["metrics"].items():
            if tuple(ds.shape) != (N,):
                raise ShapeMismatchError(
                    f"metric {k!r} has shape {tuple(ds.shape)}, expected {(N,)}.",
                    path,
                    f"metrics/{k}",
                )


# ------------------------------------------------------------------ the journal (parts)

_PART_NAME = re.compile(r"^(\d+)\.h5$")


def journal_path(path: PathLike) -> Path:
    """The journal folder of result file `path` (``<path>.parts``)."""
    path = Path(path)
    return path.with_name(path.name + ".parts")


def _part_file(journal: Path, index: int) -> Path:
    return journal / f"{index:06d}.h5"


def _list_parts(journal: Path) -> List[Tuple[int, Path]]:
    """``(index, file)`` of the committed parts in `journal`, by index (temp files skipped)."""
    try:
        names = os.listdir(journal)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for name in names:
        m = _PART_NAME.match(name)
        if m:
            out.append((int(m.group(1)), journal / name))
    return sorted(out)


def _as_str(v: Any) -> Optional[str]:
    if v is None:
        return None
    return v.decode() if isinstance(v, bytes) else str(v)


def _read_part(
    part: Path, index: int, header: Mapping[str, Any], load: bool = True
) -> Optional[Dict[str, Any]]:
    """The content of a journal entry (``{}`` if not `load`), or ``None`` if the entry is
    not a valid part of this result (unreadable, truncated, vanished, foreign ``run_id``,
    wrong index or shape)."""
    h5py = _h5py()
    if header["run_id"] is None or not 0 <= index < header["n_samples"]:
        return None
    try:
        with h5py.File(part, "r") as p:
            a = p.attrs
            if _as_str(a.get("schema")) != PART_SCHEMA:
                return None
            version = a.get("schema_version")
            if not isinstance(version, (int, np.integer)) or not 1 <= int(version) <= PART_SCHEMA_VERSION:
                return None
            if _as_str(a.get("run_id")) != header["run_id"] or int(a.get("index", -1)) != index:
                return None
            rec, wt = p.get("reconstruction"), p.get("wall_time")
            mg, hg = p.get("metrics"), p.get("history")
            if not (
                isinstance(rec, h5py.Dataset)
                and tuple(rec.shape) == tuple(header["image_shape"])
                and isinstance(wt, h5py.Dataset)
                and wt.shape == ()
                and isinstance(mg, h5py.Group)
                and isinstance(hg, h5py.Group)
                and all(isinstance(d, h5py.Dataset) and d.shape == () for d in mg.values())
                and all(isinstance(d, h5py.Dataset) for d in hg.values())
            ):
                return None
            if not load:
                return {}
            return {
                "reconstruction": np.asarray(rec[()], np.float32),
                "wall_time": float(wt[()]),
                "metrics": {k: float(d[()]) for k, d in mg.items()},
                "history": {k: d[()] for k, d in hg.items()},
            }
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):
        return None


def _merge_part(
    index: int,
    part: Mapping[str, Any],
    done: np.ndarray,
    wall_time: np.ndarray,
    metrics: Dict[str, np.ndarray],
) -> None:
    """Put a part's per-sample scalars into the ``(N,)`` arrays (the part replaces the
    whole sample: metrics it does not report become NaN)."""
    done[index] = 1
    wall_time[index] = part["wall_time"]
    for arr in metrics.values():
        arr[index] = np.nan
    for k, v in part["metrics"].items():
        if k not in metrics:
            metrics[k] = np.full(done.shape[0], np.nan)
        metrics[k][index] = v


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _remove_journal(journal: Path) -> None:
    """Delete a journal folder and everything in it."""
    if journal.is_dir():
        shutil.rmtree(journal, ignore_errors=True)
        _fsync_dir(journal.parent)


def _stat_key(path: Path) -> Tuple[int, int, int, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"No such file: {path}") from None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _compact(path: Path) -> List[int]:
    """Merge the journal of result `path` into it (one copy-on-write commit), then delete
    the journal. Returns the indices merged."""
    journal = journal_path(path)
    listed = _list_parts(journal)
    if not journal.is_dir():
        return []
    with _open_read(path) as f:
        header = _read_result_header(f, path)
        _check_result_members(f, path, header)
    merged: List[int] = []
    valid = [(i, p) for i, p in listed if _read_part(p, i, header, load=False) is not None]
    if valid:

        def fill(f):
            done = np.asarray(f["done"][()], np.uint8)
            wall_time = np.asarray(f["wall_time"][()], np.float64)
            mg = f.require_group("metrics")
            metrics = {k: np.asarray(mg[k][()], np.float64) for k in mg}
            hg = f.require_group("history")
            rec = f["reconstruction"]
            for index, part_file in valid:
                part = _read_part(part_file, index, header, load=True)
                if part is None:  # pragma: no cover - damaged since it was checked
                    continue
                rec[index] = part["reconstruction"]
                _merge_part(index, part, done, wall_time, metrics)
                name = f"{index:06d}"
                if name in hg:
                    del hg[name]
                if part["history"]:
                    sg = hg.create_group(name)
                    for k, v in part["history"].items():
                        sg.create_dataset(k, data=v)
                merged.append(index)
            f["wall_time"][...] = wall_time
            for k, v in metrics.items():
                if k in mg:
                    mg[k][...] = v
                else:
                    mg.create_dataset(k, data=v)
            f["done"][...] = done  # the samples count in the main file once this commits

        _atomic_write(path, fill, copy_from=path)
    # Committed (or nothing valid to merge): the listed parts are now duplicates or junk.
    for _, part_file in listed:
        _unlink(part_file)
    for leftover in journal.glob(".*.tmp"):
        _unlink(leftover)
    try:
        journal.rmdir()
    except OSError:
        pass  # not empty: entries that appeared meanwhile are left for the next compaction
    _fsync_dir(path.parent)
    return merged


def compact_result(path: PathLike) -> int:
    """Merge a result's journal (``<path>.parts``) into the file and delete the journal.

    :meth:`ResultWriter.close` does this; call this only on a result no writer has open
    (e.g. after a run was killed, to get a single self-contained file).

    Returns:
        The number of samples merged.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file: {path}")
    return len(_compact(path))


class ResultWriter:
    """Write a result file one sample at a time, crash-safely, at a constant cost per sample.

    Each :meth:`append` commits its sample as one journal entry (see the module docstring);
    :meth:`close` (or leaving a ``with`` block) merges the journal into the file. Readers
    (:func:`read_result`, :meth:`done_indices`) see every appended sample before and after
    the merge, so a run that dies before :meth:`close` loses nothing: resume it, or call
    :func:`compact_result`.

    Opening an existing file in :attr:`WriteMode.RESUME` (the default) keeps its finished
    samples, provided it was written with the same `n_samples`, `image_shape`, `solver`,
    `hyperparameters` and `seed`; a batch loop then skips :meth:`done_indices`.

    Example::

        with ResultWriter("results.h5", N, (H, W, C), "P2L", hyper, seed=0) as w:
            for n in w.pending_indices():
                w.append(n, solve(n), metrics={"psnr": 27.3})

    Args:
        path: Result file.
        n_samples: Number of samples `N`.
        image_shape: ``(H, W, C)`` of one reconstruction.
        solver: Solver name.
        hyperparameters: JSON-able solver settings (dicts, dataclasses, NamedTuples, enums
            and numpy scalars are converted).
        seed: Run seed (stored if not ``None``).
        problem: Problem file (or other identifier) the run solves.
        mode: :class:`WriteMode` or its string value.

    Raises:
        FileExistsError: In ``"new"`` mode if `path` exists.
        IncompatibleResultError: When resuming a file written with other settings.
        SchemaError, MissingMemberError, CorruptFileError: When resuming a file that is not
            a valid result file.
    """

    def __init__(
        self,
        path: PathLike,
        n_samples: int,
        image_shape: Tuple[int, int, int],
        solver: str,
        hyperparameters: Optional[Mapping[str, Any]] = None,
        *,
        seed: Optional[int] = None,
        problem: Optional[PathLike] = None,
        mode: Union[WriteMode, str] = WriteMode.RESUME,
    ):
        self.path = Path(path)
        self.journal = journal_path(self.path)
        self.n_samples = int(n_samples)
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1; got {n_samples}.")
        self.image_shape = tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be (H, W, C); got {image_shape!r}.")
        self.solver = str(solver)
        self.hyperparameters = json.loads(_json_dumps(hyperparameters or {}))
        self.seed = None if seed is None else int(seed)
        self.problem = None if problem is None else str(problem)
        self._closed = False
        mode = WriteMode(mode)
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)  # from a writer that crashed (single-writer files)
        if self.path.exists():
            if mode is WriteMode.NEW:
                raise FileExistsError(f"Result file exists: {self.path}")
            if mode is WriteMode.RESUME:
                header, done = self._check_compatible()
                self._header = header
                self._main_done = done
                self._clean_journal()
                return
        self._create()
        _remove_journal(self.journal)  # of the file replaced, or stale from a deleted one

    # ------------------------------------------------------------------ opening

    def _create(self) -> None:
        N, shape = self.n_samples, self.image_shape
        run_id = uuid.uuid4().hex

        def fill(f):
            f.attrs["schema"] = RESULT_SCHEMA
            f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
            f.attrs["library_version"] = _library_version()
            f.attrs["created"] = _now()
            f.attrs["solver"] = self.solver
            f.attrs["hyperparameters"] = _json_dumps(self.hyperparameters)
            f.attrs["n_samples"] = np.int64(N)
            f.attrs["image_shape"] = np.asarray(shape, np.int64)
            if self.seed is not None:
                f.attrs["seed"] = np.int64(self.seed)
            if self.problem is not None:
                f.attrs["problem"] = self.problem
            f.attrs["run_id"] = run_id
            f.create_dataset(
                "reconstruction",
                shape=(N,) + shape,
                dtype=np.float32,
                chunks=(1,) + shape,
                fillvalue=np.nan,
            )
            f.create_dataset("done", data=np.zeros(N, np.uint8))
            f.create_dataset("wall_time", data=np.full(N, np.nan))
            f.create_group("metrics")
            f.create_group("history")

        _atomic_write(self.path, fill)
        self._header = {
            "schema_version": SCHEMA_VERSION,
            "n_samples": N,
            "image_shape": shape,
            "run_id": run_id,
        }
        self._main_done = np.zeros(N, bool)

    def _check_compatible(self) -> Tuple[Dict[str, Any], np.ndarray]:
        with _open_read(self.path) as f:
            header = _read_result_header(f, self.path)
            _check_result_members(f, self.path, header)
            done = _dataset(f, "done", self.path).astype(bool)
        mine = {
            "n_samples": self.n_samples,
            "image_shape": self.image_shape,
            "solver": self.solver,
            "hyperparameters": self.hyperparameters,
            "seed": self.seed,
        }
        diffs = [d for k, v in mine.items() for d in setting_differences(header[k], v, k)]
        if diffs:
            more = f"; and {len(diffs) - 8} more" if len(diffs) > 8 else ""
            err = IncompatibleResultError(
                f"cannot resume: the file was written with other settings: {'; '.join(diffs[:8])}{more} "
                f"(use mode='overwrite' or another path).",
                self.path,
                diffs[0].split(" ", 1)[0],
            )
            err.differences = diffs
            raise err
        return header, done

    def _clean_journal(self) -> None:
        """Delete temporary files and invalid entries a crashed writer left in the journal."""
        if not self.journal.is_dir():
            return
        for leftover in self.journal.glob(".*.tmp"):
            _unlink(leftover)
        for index, part in _list_parts(self.journal):
            if _read_part(part, index, self._header, load=False) is None:
                _unlink(part)

    def _upgrade(self) -> None:
        """Make a version-1 file version 2 (adds ``run_id``) so that it can have a journal."""
        run_id = uuid.uuid4().hex

        def fill(f):
            f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
            f.attrs["run_id"] = run_id

        _atomic_write(self.path, fill, copy_from=self.path)
        _remove_journal(self.journal)  # a version-1 file has none; anything there is stale
        self._header = {**self._header, "schema_version": SCHEMA_VERSION, "run_id": run_id}

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def done_indices(self) -> np.ndarray:
        """Indices of the samples already written (main file and journal, read from disk)."""
        with _open_read(self.path) as f:
            done = _dataset(f, "done", self.path).astype(bool)
        self._main_done = done.copy()
        for index, part in _list_parts(self.journal):
            if _read_part(part, index, self._header, load=False) is not None:
                done[index] = True
        return np.flatnonzero(done)

    def pending_indices(self) -> np.ndarray:
        """Indices of the samples still to do."""
        done = np.zeros(self.n_samples, bool)
        done[self.done_indices()] = True
        return np.flatnonzero(~done)

    def _is_done(self, index: int) -> bool:
        if self._main_done[index]:
            return True
        part = _part_file(self.journal, index)
        return part.exists() and _read_part(part, index, self._header, load=False) is not None

    # ------------------------------------------------------------------ writing

    def append(
        self,
        index: int,
        reconstruction,
        metrics: Optional[Mapping[str, float]] = None,
        history: Optional[Mapping[str, Any]] = None,
        wall_time: Optional[float] = None,
        *,
        replace: bool = False,
    ) -> None:
        """Add sample `index`; it counts as done once this returns (crash-safe, O(sample)).

        The sample is committed as one journal entry (temporary file, ``fsync``, atomic
        rename); the main file is not touched until :meth:`close`.

        Args:
            index: Sample index in ``[0, N)``.
            reconstruction: ``(H, W, C)`` image.
            metrics: Metric name -> scalar (e.g. ``{"psnr": 28.1, "ssim": 0.83}``).
            history: Statistic name -> array over iterations.
            wall_time: Seconds spent on the sample.
            replace: Allow rewriting a sample that is already done (the new entry replaces
                the whole sample: metrics it does not report become NaN).

        Raises:
            IndexError: If `index` is out of range.
            ShapeMismatchError: If `reconstruction` is not ``image_shape``.
            ValueError: If the sample is done and not `replace`, a name is invalid, or the
                writer is closed.
            TypeError: For non-numeric data.
            FileNotFoundError: If the result file has disappeared.
        """
        if self._closed:
            raise ValueError(f"{self.path}: this ResultWriter is closed.")
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int; got {index!r}.")
        index = int(index)
        if not 0 <= index < self.n_samples:
            raise IndexError(f"index {index} out of range [0, {self.n_samples}).")
        rec = _as_float_array(reconstruction, "reconstruction")
        if rec.shape != self.image_shape:
            raise ShapeMismatchError(
                f"reconstruction has shape {rec.shape}, expected {self.image_shape}.",
                self.path,
                "reconstruction",
            )
        mets: Dict[str, float] = {}
        for k, v in (metrics or {}).items():
            if not k or "/" in k:
                raise ValueError(f"invalid metric name {k!r}.")
            mets[k] = float(np.asarray(v))
        hist: Dict[str, np.ndarray] = {}
        for k, v in (history or {}).items():
            if not k or "/" in k:
                raise ValueError(f"invalid history statistic name {k!r}.")
            a = np.asarray(v)
            if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
                raise TypeError(f"history {k!r}: expected a numeric array, got dtype {a.dtype}.")
            hist[k] = a
        wt = np.nan if wall_time is None else float(wall_time)
        if not self.path.exists():
            raise FileNotFoundError(f"Result file disappeared: {self.path}")
        if self._header["schema_version"] < 2:
            self._upgrade()
        if not replace and self._is_done(index):
            raise ValueError(
                f"{self.path}: sample {index} is already done (pass replace=True to rewrite)."
            )
        self._write_part(index, rec, mets, hist, wt)

    def _write_part(
        self,
        index: int,
        rec: np.ndarray,
        mets: Mapping[str, float],
        hist: Mapping[str, np.ndarray],
        wt: float,
    ) -> None:
        h5py = _h5py()
        if not self.journal.is_dir():
            self.journal.mkdir(exist_ok=True)
            _fsync_dir(self.path.parent)
        target = _part_file(self.journal, index)
        tmp = self.journal / f".{target.name}.{os.getpid()}.tmp"
        try:
            with h5py.File(tmp, "w") as p:
                p.attrs["schema"] = PART_SCHEMA
                p.attrs["schema_version"] = np.int64(PART_SCHEMA_VERSION)
                p.attrs["run_id"] = self._header["run_id"]
                p.attrs["index"] = np.int64(index)
                p.create_dataset("reconstruction", data=rec)
                p.create_dataset("wall_time", data=np.float64(wt))
                mg = p.create_group("metrics")
                for k, v in mets.items():
                    mg.create_dataset(k, data=np.float64(v))
                hg = p.create_group("history")
                for k, v in hist.items():
                    hg.create_dataset(k, data=v)
            # fsync, atomic rename, fsync folder: now the sample is done
            _commit(tmp, target, drop_cache=True)
        except BaseException:
            _unlink(tmp)
            raise

    def compact(self) -> int:
        """Merge the journal into the result file now (one copy of the file) and delete it;
        returns the number of samples merged. :meth:`close` does this at the end."""
        if not self.path.exists():
            raise FileNotFoundError(f"Result file disappeared: {self.path}")
        merged = _compact(self.path)
        self._main_done[merged] = True
        return len(merged)

    def close(self) -> None:
        """Compact (see :meth:`compact`) and close; further appends raise. Idempotent."""
        if self._closed:
            return
        self.compact()
        self._closed = True

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # keep the original error; the journal stays readable if compacting fails
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"ResultWriter({str(self.path)!r}, n_samples={self.n_samples}, {state})"


def _read_result_once(path: Path, samples: bool = True) -> Result:
    h5py = _h5py()
    with _open_read(path) as f:
        header = _read_result_header(f, path)
        _check_result_members(f, path, header)
        if samples:
            reconstruction = _dataset(f, "reconstruction", path)
        else:  # the shape without the data: a read-only zero-stride view
            reconstruction = np.broadcast_to(np.float32(np.nan), (header["n_samples"], *header["image_shape"]))
        done = _dataset(f, "done", path).astype(bool)
        wall_time = _dataset(f, "wall_time", path).astype(np.float64)
        metrics = {}
        if "metrics" in f:
            for k in f["metrics"]:
                metrics[k] = _dataset(f["metrics"], k, path).astype(np.float64)
        history: Dict[int, Dict[str, np.ndarray]] = {}
        if "history" in f:
            for name, g in f["history"].items():
                if not isinstance(g, h5py.Group) or not name.isdigit():
                    raise CorruptFileError(
                        f"unexpected history member {name!r}.", path, f"history/{name}"
                    )
                history[int(name)] = {k: _dataset(g, k, path) for k in g}
    n_journal = 0
    for index, part_file in _list_parts(journal_path(path)):
        part = _read_part(part_file, index, header, load=True)
        if part is None:
            continue  # invalid or vanished (a compaction removed it: the caller rereads)
        if samples:
            reconstruction[index] = part["reconstruction"]
        _merge_part(index, part, done, wall_time, metrics)
        if part["history"]:
            history[index] = part["history"]
        else:
            history.pop(index, None)
        n_journal += 1
    return Result(
        reconstruction=reconstruction,
        done=done,
        metrics=metrics,
        wall_time=wall_time,
        history=dict(sorted(history.items())),
        solver=header["solver"],
        hyperparameters=header["hyperparameters"],
        seed=header["seed"],
        problem=header["problem"],
        library_version=header["library_version"],
        schema_version=header["schema_version"],
        journal_samples=n_journal,
    )


def read_result(path: PathLike, samples: bool = True) -> Result:
    """Read and validate a result file, including samples still in its journal.

    Safe while a writer appends or compacts: a read that overlapped a compaction (the file
    was replaced meanwhile) is repeated.

    Args:
        path: The result file.
        samples: If false, the reconstructions are not read (memory independent of the
            image size): ``reconstruction`` is then a read-only NaN view of the right shape
            and :func:`read_samples` reads them one at a time.

    Raises:
        FileNotFoundError: If `path` does not exist.
        CorruptFileError: If it is not a readable HDF5 file.
        SchemaError: If it is not a result file or its schema version is newer.
        MissingMemberError: If a required member is missing.
        ShapeMismatchError: If members disagree in shape.
    """
    path = Path(path)
    for _ in range(20):
        before = _stat_key(path)
        result = _read_result_once(path, samples)
        if _stat_key(path) == before:
            break
    return result


def read_samples(path: PathLike, indices) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(index, reconstruction)`` for each of `indices`, one sample in memory at a
    time, from the journal where the sample is there, else from the file (NaN if not done).

    Meant for files no writer is appending to (a finished run or part). Besides the errors
    of :func:`read_result` it raises ``IndexError`` for an index outside the file's samples.
    """
    path = Path(path)
    with _open_read(path) as f:
        header = _read_result_header(f, path)
        _check_result_members(f, path, header)
        n = header["n_samples"]
        journal = dict(_list_parts(journal_path(path)))
        data = f["reconstruction"]
        for k in indices:
            k = int(k)
            if not 0 <= k < n:
                raise IndexError(f"sample {k} is outside {path}'s {n} samples")
            part = _read_part(journal[k], k, header, load=True) if k in journal else None
            if part is not None:
                yield k, part["reconstruction"]
                continue
            try:
                yield k, np.asarray(data[k], np.float32)
            except OSError as e:
                raise CorruptFileError(f"cannot read sample {k} ({e}).", path, "reconstruction") from e
