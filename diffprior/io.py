"""HDF5 files of inverse problems and of their reconstructions (schema version 1).

Functions take and return numpy arrays; the caller decides device placement. This module
imports neither JAX nor the operators, so it is cheap to import in data-handling scripts.

Problem files
-------------
Root attributes ``schema = "diffprior-problem"``, ``schema_version = 1``,
``library_version`` (``diffprior.__version__`` of the writer), ``created`` (ISO 8601 UTC).

=================  ========================  =============================================
member             shape / type              content
=================  ========================  =============================================
``measurement``    ``(N, ...)`` float32      noisy measurements :math:`y_n = A x_n + \\sigma
                                             \\varepsilon_n`, one per sample
``ground_truth``   ``(N, H, W, C)`` float32  optional; images in ``[0, 1]``
``noise_sigma``    scalar float64            :math:`\\sigma` in ``[0, 1]`` image units
``seeds``          ``(N,)`` int64            optional; per-sample seeds
``names``          ``(N,)`` UTF-8 strings    optional; per-sample names (e.g. file names)
``operator/``      group                     :func:`operators.describe` of the forward
                                             operator: attribute ``description`` holds the
                                             JSON object of its scalar entries (``class``,
                                             ``input_shape``, ...), one dataset per array
                                             entry (``kernel``, ``mask``), named by its key
=================  ========================  =============================================

The operator acts on one sample (``input_shape = (H, W, C)``, applied to each) or on the
whole batch (``input_shape = (N, H, W, C)``).

Result files
------------
Root attributes ``schema = "diffprior-result"``, ``schema_version = 1``,
``library_version``, ``created``, ``solver`` (name), ``hyperparameters`` (JSON object),
``seed`` (int; absent if none), ``n_samples``, ``image_shape``, ``problem`` (optional: the
problem file it solves).

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

Atomicity
---------
Every write is atomic at the file level: the new content goes to a temporary file
``.<name>.<pid>.tmp`` in the same folder, which is flushed, ``fsync``-ed and moved over
the target with :func:`os.replace`. :meth:`ResultWriter.append` is *copy-on-write*: it
copies the current file, adds the sample (data, metrics, history, then its ``done`` flag)
and replaces the file. A crash at any moment therefore leaves either the file before or the
file after the append, never a half-written one (HDF5 files modified in place can become
unreadable when the writer dies), and every finished sample survives. The price is one
file copy per sample, which is negligible next to a diffusion solve. A crash may leave the
temporary file behind; it is removed when a :class:`ResultWriter` next opens the result.
A result file has a single writer at a time.

Errors
------
All reading and validation errors derive from :class:`DiffpriorIOError` (a
:class:`ValueError`) and name the file and member: :class:`MissingMemberError`,
:class:`SchemaError` (wrong kind of file, or a newer ``schema_version``),
:class:`ShapeMismatchError`, :class:`CorruptFileError` (not HDF5, truncated, unreadable),
:class:`IncompatibleResultError` (resuming with other settings).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "PROBLEM_SCHEMA",
    "RESULT_SCHEMA",
    "DiffpriorIOError",
    "MissingMemberError",
    "SchemaError",
    "ShapeMismatchError",
    "CorruptFileError",
    "IncompatibleResultError",
    "Problem",
    "Result",
    "WriteMode",
    "write_problem",
    "read_problem",
    "ResultWriter",
    "read_result",
]

SCHEMA_VERSION = 1
"""Schema version written by this library (and the newest it reads)."""
PROBLEM_SCHEMA = "diffprior-problem"
RESULT_SCHEMA = "diffprior-result"

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- errors


class DiffpriorIOError(ValueError):
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


def _to_jsonable(obj: Any) -> Any:
    """Convert hyperparameters (dataclasses, NamedTuples, enums, numpy) to JSON types."""
    if isinstance(obj, enum.Enum):
        return _to_jsonable(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        return {k: _to_jsonable(v) for k, v in obj._asdict().items()}
    if isinstance(obj, Mapping):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "__array__"):  # jax arrays
        return np.asarray(obj).tolist()
    raise TypeError(f"Cannot store value of type {type(obj).__name__} as JSON: {obj!r}.")


def _json_dumps(obj: Any) -> str:
    return json.dumps(_to_jsonable(obj), sort_keys=True, allow_nan=True)


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
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


def _commit(tmp: Path, path: Path) -> None:
    _fsync_file(tmp)
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


# --------------------------------------------------------------------------- problems


@dataclasses.dataclass(frozen=True)
class Problem:
    """An inverse problem read from a file (numpy arrays throughout).

    Attributes:
        measurement: ``(N, ...)`` float32 measurements.
        operator: Operator description (see :func:`operators.describe`).
        noise_sigma: Noise standard deviation in ``[0, 1]`` image units.
        ground_truth: ``(N, H, W, C)`` float32 or ``None``.
        seeds: ``(N,)`` int64 or ``None``.
        names: List of `N` strings or ``None``.
        schema_version: Version of the file's schema.
        library_version: diffprior version that wrote the file.
    """

    measurement: np.ndarray
    operator: Dict[str, Any]
    noise_sigma: float
    ground_truth: Optional[np.ndarray] = None
    seeds: Optional[np.ndarray] = None
    names: Optional[List[str]] = None
    schema_version: int = SCHEMA_VERSION
    library_version: str = ""

    @property
    def n_samples(self) -> int:
        """Number of samples `N`."""
        return int(self.measurement.shape[0])

    def build_operator(self):
        """Rebuild the forward operator (imports :mod:`operators`, hence JAX)."""
        from operators import from_description

        return from_description(self.operator)


def _check_problem_arrays(
    measurement: np.ndarray,
    description: Mapping[str, Any],
    ground_truth: Optional[np.ndarray],
    seeds: Optional[np.ndarray],
    names: Optional[Sequence[str]],
    path: Path,
) -> None:
    N = measurement.shape[0]
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
    shape = description.get("input_shape")
    if shape is not None:
        shape = tuple(int(s) for s in np.asarray(shape).ravel())
        if len(shape) == 4 and shape[0] != N:
            raise ShapeMismatchError(
                f"batched operator input_shape {shape} does not match N={N} samples.",
                path,
                "operator",
            )
        if ground_truth is not None and tuple(ground_truth.shape[1:]) != shape[-3:]:
            raise ShapeMismatchError(
                f"ground_truth images have shape {ground_truth.shape[1:]}, operator input_shape is {shape}.",
                path,
                "ground_truth",
            )
    if seeds is not None and seeds.shape != (N,):
        raise ShapeMismatchError(f"seeds must have shape ({N},); got {seeds.shape}.", path, "seeds")
    if names is not None and len(names) != N:
        raise ShapeMismatchError(f"names must have {N} entries; got {len(names)}.", path, "names")


def write_problem(
    path: PathLike,
    measurement,
    operator_description: Mapping[str, Any],
    sigma: float,
    ground_truth=None,
    seeds=None,
    names: Optional[Sequence[str]] = None,
) -> None:
    """Write a problem file atomically (see the module docstring for the schema).

    Args:
        path: Target file (replaced if it exists).
        measurement: ``(N, ...)`` measurements.
        operator_description: :func:`operators.describe` of the forward operator.
        sigma: Noise standard deviation in ``[0, 1]`` image units, >= 0.
        ground_truth: Optional ``(N, H, W, C)`` images in ``[0, 1]``.
        seeds: Optional ``(N,)`` integer seeds.
        names: Optional `N` sample names.

    Raises:
        ShapeMismatchError: If the arrays disagree in `N` or with the operator's
            input shape.
        ValueError: For a negative sigma, non-finite data, ground truth outside
            ``[0, 1]`` or a description without ``class``/``input_shape``.
        TypeError: For non-numeric arrays or values that are not JSON-able.
    """
    path = Path(path)
    measurement = _as_float_array(measurement, "measurement", min_ndim=2)
    if not np.all(np.isfinite(measurement)):
        raise ValueError("measurement has non-finite entries.")
    sigma = _check_sigma(sigma)
    if ground_truth is not None:
        ground_truth = _as_float_array(ground_truth, "ground_truth")
        if not np.all(np.isfinite(ground_truth)):
            raise ValueError("ground_truth has non-finite entries.")
        lo, hi = float(ground_truth.min()), float(ground_truth.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"ground_truth must be in [0, 1]; got values in [{lo}, {hi}].")
    if seeds is not None:
        seeds = np.asarray(seeds)
        if not np.issubdtype(seeds.dtype, np.integer):
            raise TypeError(f"seeds must be integers; got dtype {seeds.dtype}.")
        seeds = seeds.astype(np.int64)
    if names is not None:
        names = [str(n) for n in names]
    description = dict(operator_description)
    for key in ("class", "input_shape"):
        if key not in description:
            raise ValueError(f"operator_description lacks {key!r}; got keys {sorted(description)}.")
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
    _check_problem_arrays(measurement, scalars, ground_truth, seeds, names, path)
    scalars_json = _json_dumps(scalars)
    h5py = _h5py()

    def fill(f):
        f.attrs["schema"] = PROBLEM_SCHEMA
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        f.attrs["library_version"] = _library_version()
        f.attrs["created"] = _now()
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
        for k, v in arrays.items():
            g.create_dataset(k, data=v)

    _atomic_write(path, fill)


def read_problem(path: PathLike) -> Problem:
    """Read and validate a problem file.

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
    """
    path = Path(path)
    h5py = _h5py()
    with _open_read(path) as f:
        version = _check_schema(f, path, PROBLEM_SCHEMA)
        measurement = _dataset(f, "measurement", path)
        if measurement.ndim < 2:
            raise ShapeMismatchError(
                f"measurement must be (N, ...); got shape {measurement.shape}.", path, "measurement"
            )
        sigma = _dataset(f, "noise_sigma", path)
        if np.shape(sigma) != ():
            raise ShapeMismatchError(
                f"noise_sigma must be a scalar; got shape {np.shape(sigma)}.", path, "noise_sigma"
            )
        ground_truth = _dataset(f, "ground_truth", path) if "ground_truth" in f else None
        seeds = _dataset(f, "seeds", path) if "seeds" in f else None
        names = None
        if "names" in f:
            try:
                names = [str(s) for s in f["names"].asstr()[()]]
            except (OSError, TypeError) as e:
                raise CorruptFileError(f"cannot read names ({e}).", path, "names") from e
        if "operator" not in f or not isinstance(f["operator"], h5py.Group):
            raise MissingMemberError("required group 'operator' missing.", path, "operator")
        g = f["operator"]
        desc_json = _attr_str(g.attrs, "description", path, "operator/@description")
        try:
            description = json.loads(desc_json)
        except json.JSONDecodeError as e:
            raise CorruptFileError(
                f"operator description is not valid JSON ({e}).", path, "operator/@description"
            ) from e
        if not isinstance(description, dict):
            raise CorruptFileError(
                "operator description is not a JSON object.", path, "operator/@description"
            )
        for k in g:
            description[k] = _dataset(g, k, path)
        for key in ("class", "input_shape"):
            if key not in description:
                raise MissingMemberError(
                    f"operator description lacks {key!r}.", path, "operator/@description"
                )
        library_version = str(f.attrs.get("library_version", ""))
    _check_problem_arrays(measurement, description, ground_truth, seeds, names, path)
    return Problem(
        measurement=np.asarray(measurement),
        operator=description,
        noise_sigma=float(sigma),
        ground_truth=None if ground_truth is None else np.asarray(ground_truth),
        seeds=None if seeds is None else np.asarray(seeds),
        names=names,
        schema_version=version,
        library_version=library_version,
    )


# --------------------------------------------------------------------------- results


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
    """A result file's content (numpy arrays throughout).

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


class ResultWriter:
    """Write a result file one sample at a time, atomically (copy-on-write per append).

    Opening an existing file in :attr:`WriteMode.RESUME` (the default) keeps its finished
    samples, provided it was written with the same `n_samples`, `image_shape`, `solver`,
    `hyperparameters` and `seed`; a batch loop then skips :meth:`done_indices`.

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
        mode = WriteMode(mode)
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)  # from a writer that crashed (single-writer files)
        if self.path.exists():
            if mode is WriteMode.NEW:
                raise FileExistsError(f"Result file exists: {self.path}")
            if mode is WriteMode.RESUME:
                self._check_compatible()
                return
        self._create()

    def _create(self) -> None:
        N, shape = self.n_samples, self.image_shape

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

    def _check_compatible(self) -> None:
        with _open_read(self.path) as f:
            header = _read_result_header(f, self.path)
            _check_result_members(f, self.path, header)
        mine = {
            "n_samples": self.n_samples,
            "image_shape": self.image_shape,
            "solver": self.solver,
            "hyperparameters": self.hyperparameters,
            "seed": self.seed,
        }
        for k, v in mine.items():
            if header[k] != v:
                raise IncompatibleResultError(
                    f"cannot resume: file has {k}={header[k]!r}, this run has {v!r} "
                    f"(use mode='overwrite' or another path).",
                    self.path,
                    k,
                )

    def done_indices(self) -> np.ndarray:
        """Indices of the samples already written (read from the file)."""
        with _open_read(self.path) as f:
            return np.flatnonzero(_dataset(f, "done", self.path))

    def pending_indices(self) -> np.ndarray:
        """Indices of the samples still to do."""
        done = np.zeros(self.n_samples, bool)
        done[self.done_indices()] = True
        return np.flatnonzero(~done)

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
        """Add sample `index` atomically; ``done[index]`` is set in the same commit.

        Args:
            index: Sample index in ``[0, N)``.
            reconstruction: ``(H, W, C)`` image.
            metrics: Metric name -> scalar (e.g. ``{"psnr": 28.1, "ssim": 0.83}``).
            history: Statistic name -> array over iterations.
            wall_time: Seconds spent on the sample.
            replace: Allow rewriting a sample that is already done.

        Raises:
            IndexError: If `index` is out of range.
            ShapeMismatchError: If `reconstruction` is not ``image_shape``.
            ValueError: If the sample is done and not `replace`, or a name is invalid.
            TypeError: For non-numeric data.
        """
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
        N = self.n_samples
        path = self.path

        def fill(f):
            header = _read_result_header(f, path)
            _check_result_members(f, path, header)
            if f["done"][index] and not replace:
                raise ValueError(
                    f"{path}: sample {index} is already done (pass replace=True to rewrite)."
                )
            f["reconstruction"][index] = rec
            f["wall_time"][index] = wt
            mg = f.require_group("metrics")
            for k, v in mets.items():
                if k not in mg:
                    mg.create_dataset(k, data=np.full(N, np.nan))
                mg[k][index] = v
            hg = f.require_group("history")
            name = f"{index:06d}"
            if name in hg:
                del hg[name]
            if hist:
                sg = hg.create_group(name)
                for k, v in hist.items():
                    sg.create_dataset(k, data=v)
            f["done"][index] = 1  # last: the sample counts only once everything is in

        if not path.exists():
            raise FileNotFoundError(f"Result file disappeared: {path}")
        _atomic_write(path, fill, copy_from=path)


def read_result(path: PathLike) -> Result:
    """Read and validate a result file.

    Raises:
        FileNotFoundError: If `path` does not exist.
        CorruptFileError: If it is not a readable HDF5 file.
        SchemaError: If it is not a result file or its schema version is newer.
        MissingMemberError: If a required member is missing.
        ShapeMismatchError: If members disagree in shape.
    """
    path = Path(path)
    h5py = _h5py()
    with _open_read(path) as f:
        header = _read_result_header(f, path)
        _check_result_members(f, path, header)
        reconstruction = _dataset(f, "reconstruction", path)
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
    return Result(
        reconstruction=reconstruction,
        done=done,
        metrics=metrics,
        wall_time=wall_time,
        history=history,
        solver=header["solver"],
        hyperparameters=header["hyperparameters"],
        seed=header["seed"],
        problem=header["problem"],
        library_version=header["library_version"],
        schema_version=header["schema_version"],
    )
