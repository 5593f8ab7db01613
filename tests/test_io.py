"""HDF5 problem and result files: round trips, failure modes, interrupted appends."""

from __future__ import annotations

import dataclasses
import enum
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import diffprior
from diffprior import io as dio

RNG = np.random.default_rng(0)
N, H, W, C = 3, 8, 6, 3


def _description():
    # A Blur description as operators.describe() makes it (no JAX needed to write files).
    k = RNG.random((3, 3)).astype(np.float32)
    return {"class": "Blur", "input_shape": [H, W, C], "kernel": k / k.sum(), "boundary": "same"}


def _problem(tmp_path, **overrides):
    args = dict(
        measurement=RNG.random((N, H, W, C)).astype(np.float32),
        operator_description=_description(),
        sigma=0.005,
        ground_truth=RNG.random((N, H, W, C)).astype(np.float32),
        seeds=np.array([11, 12, 13]),
        names=["a.png", "b.png", "ü.png"],
    )
    args.update(overrides)
    path = tmp_path / "problem.h5"
    dio.write_problem(path, **args)
    return path, args


# ------------------------------------------------------------------ problems


def test_problem_roundtrip_exact(tmp_path):
    path, args = _problem(tmp_path)
    p = dio.read_problem(path)
    np.testing.assert_array_equal(p.measurement, args["measurement"])
    assert p.measurement.dtype == np.float32
    np.testing.assert_array_equal(p.ground_truth, args["ground_truth"])
    np.testing.assert_array_equal(p.seeds, [11, 12, 13])
    assert p.names == ["a.png", "b.png", "ü.png"]
    assert p.noise_sigma == 0.005
    assert p.n_samples == N
    assert p.schema_version == 1 and p.library_version == diffprior.__version__
    d = p.operator
    assert d["class"] == "Blur" and d["boundary"] == "same" and d["input_shape"] == [H, W, C]
    np.testing.assert_array_equal(d["kernel"], args["operator_description"]["kernel"])
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_problem_operator_rebuilds(tmp_path):
    import jax.numpy as jnp

    import operators as op

    A = op.Downsample((H, W, C), 2, "bicubic")
    x = RNG.random((H, W, C)).astype(np.float32)
    y = np.asarray(A(jnp.asarray(x)))[None]
    path = tmp_path / "p.h5"
    dio.write_problem(path, y, op.describe(A), 0.0, ground_truth=x[None])
    B = dio.read_problem(path).build_operator()
    np.testing.assert_array_equal(np.asarray(B(jnp.asarray(x)))[None], y)


def test_problem_optional_members_absent(tmp_path):
    path, _ = _problem(tmp_path, ground_truth=None, seeds=None, names=None)
    p = dio.read_problem(path)
    assert p.ground_truth is None and p.seeds is None and p.names is None
    with h5py.File(path) as f:
        assert set(f) == {"measurement", "noise_sigma", "operator"}


def test_write_problem_rejects_bad_input(tmp_path):
    with pytest.raises(
        dio.ShapeMismatchError, match="ground_truth has 2 samples, measurement has 3"
    ):
        _problem(tmp_path, ground_truth=np.zeros((2, H, W, C), np.float32))
    with pytest.raises(dio.ShapeMismatchError, match=r"ground_truth images have shape \(8, 5, 3\)"):
        _problem(tmp_path, ground_truth=np.zeros((N, H, 5, C), np.float32))
    with pytest.raises(dio.ShapeMismatchError, match="seeds"):
        _problem(tmp_path, seeds=np.arange(4))
    with pytest.raises(dio.ShapeMismatchError, match="names"):
        _problem(tmp_path, names=["x"])
    with pytest.raises(ValueError, match="sigma must be finite and >= 0; got -0.1"):
        _problem(tmp_path, sigma=-0.1)
    with pytest.raises(ValueError, match=r"ground_truth must be in \[0, 1\]"):
        _problem(tmp_path, ground_truth=np.full((N, H, W, C), 1.5, np.float32))
    with pytest.raises(ValueError, match="lacks 'class'"):
        _problem(tmp_path, operator_description={"input_shape": [H, W, C]})
    with pytest.raises(TypeError, match="seeds must be integers"):
        _problem(tmp_path, seeds=np.array([0.5, 1.0, 2.0]))
    assert not (tmp_path / "problem.h5").exists()


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path, args = _problem(tmp_path)

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(dio.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        dio.write_problem(
            path, np.zeros((1, 2, 2, 1), np.float32), {"class": "X", "input_shape": [2, 2, 1]}, 0.1
        )
    monkeypatch.undo()
    np.testing.assert_array_equal(dio.read_problem(path).measurement, args["measurement"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_read_problem_missing_member(tmp_path):
    path, _ = _problem(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["measurement"]
    with pytest.raises(dio.MissingMemberError, match="'measurement'") as e:
        dio.read_problem(path)
    assert e.value.path == str(path) and e.value.member == "measurement"
    assert str(path) in str(e.value)

    path, _ = _problem(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["operator"]
    with pytest.raises(dio.MissingMemberError, match="operator"):
        dio.read_problem(path)


def test_read_problem_schema_errors(tmp_path):
    path, _ = _problem(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = np.int64(2)
    with pytest.raises(dio.SchemaError, match="schema_version 2 is newer than this library reads"):
        dio.read_problem(path)
    with h5py.File(path, "r+") as f:
        f.attrs["schema"] = "something-else"
    with pytest.raises(dio.SchemaError, match="expected schema 'diffprior-problem'"):
        dio.read_problem(path)
    with h5py.File(path, "r+") as f:
        del f.attrs["schema"]
    with pytest.raises(dio.MissingMemberError, match="schema"):
        dio.read_problem(path)
    # A result file is not a problem file.
    res = tmp_path / "r.h5"
    dio.ResultWriter(res, 1, (2, 2, 1), "dps")
    with pytest.raises(dio.SchemaError, match="got 'diffprior-result'"):
        dio.read_problem(res)


def test_read_problem_shape_mismatch(tmp_path):
    path, _ = _problem(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["ground_truth"]
        f.create_dataset("ground_truth", data=np.zeros((N + 1, H, W, C), np.float32))
    with pytest.raises(
        dio.ShapeMismatchError, match="ground_truth has 4 samples, measurement has 3"
    ) as e:
        dio.read_problem(path)
    assert e.value.member == "ground_truth"


def test_read_corrupt_and_missing_files(tmp_path):
    path, _ = _problem(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(dio.CorruptFileError, match="truncated.h5"):
        dio.read_problem(truncated)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(dio.CorruptFileError, match="not a readable HDF5 file"):
        dio.read_problem(garbage)
    with pytest.raises(dio.CorruptFileError):
        dio.read_result(truncated)
    with pytest.raises(FileNotFoundError):
        dio.read_problem(tmp_path / "nope.h5")
    # Every file error is a DiffpriorIOError and a ValueError.
    for cls in (
        dio.MissingMemberError,
        dio.SchemaError,
        dio.ShapeMismatchError,
        dio.CorruptFileError,
        dio.IncompatibleResultError,
    ):
        assert issubclass(cls, dio.DiffpriorIOError) and issubclass(cls, ValueError)


# ------------------------------------------------------------------ results


class Mode(enum.Enum):
    FAST = "fast"


@dataclasses.dataclass
class Hyper:
    steps: int = 50
    eta: float = 0.5
    mode: Mode = Mode.FAST


HYPER = {"hyper": Hyper(), "lr": np.float32(0.25), "sizes": (1, 2)}
HYPER_JSON = {"hyper": {"steps": 50, "eta": 0.5, "mode": "fast"}, "lr": 0.25, "sizes": [1, 2]}


def _writer(path, **kw):
    args = dict(n_samples=N, image_shape=(H, W, C), solver="p2l", hyperparameters=HYPER, seed=7)
    args.update(kw)
    return dio.ResultWriter(path, **args)


def test_result_roundtrip_exact(tmp_path):
    path = tmp_path / "res.h5"
    w = _writer(path, problem="problem.h5")
    recs = RNG.random((N, H, W, C)).astype(np.float32)
    w.append(
        2,
        recs[2],
        {"psnr": 30.5, "ssim": 0.9},
        {"loss": np.array([3.0, 2.0, 1.0]), "step": np.arange(3)},
        1.5,
    )
    w.append(0, recs[0], {"psnr": 28.0, "lpips": 0.2}, None, 2.5)
    np.testing.assert_array_equal(w.done_indices(), [0, 2])
    np.testing.assert_array_equal(w.pending_indices(), [1])

    r = dio.read_result(path)
    np.testing.assert_array_equal(r.done, [True, False, True])
    np.testing.assert_array_equal(r.done_indices, [0, 2])
    np.testing.assert_array_equal(r.reconstruction[[0, 2]], recs[[0, 2]])
    assert r.reconstruction.dtype == np.float32 and np.isnan(r.reconstruction[1]).all()
    np.testing.assert_array_equal(r.metrics["psnr"], [28.0, np.nan, 30.5])
    np.testing.assert_array_equal(r.metrics["ssim"], [np.nan, np.nan, 0.9])
    np.testing.assert_array_equal(r.metrics["lpips"], [0.2, np.nan, np.nan])
    np.testing.assert_array_equal(r.wall_time, [2.5, np.nan, 1.5])
    assert set(r.history) == {2}
    np.testing.assert_array_equal(r.history[2]["loss"], [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(r.history[2]["step"], [0, 1, 2])
    assert r.solver == "p2l" and r.seed == 7 and r.problem == "problem.h5"
    assert r.hyperparameters == HYPER_JSON
    assert r.library_version == diffprior.__version__ and r.schema_version == 1


def test_result_append_errors(tmp_path):
    w = _writer(tmp_path / "res.h5")
    img = np.zeros((H, W, C), np.float32)
    w.append(0, img)
    with pytest.raises(ValueError, match="sample 0 is already done"):
        w.append(0, img + 1)
    w.append(0, img + 0.5, replace=True)
    np.testing.assert_array_equal(dio.read_result(w.path).reconstruction[0], img + 0.5)
    with pytest.raises(dio.ShapeMismatchError, match=r"shape \(8, 5, 3\), expected \(8, 6, 3\)"):
        w.append(1, np.zeros((H, W - 1, C)))
    with pytest.raises(IndexError, match="out of range"):
        w.append(N, img)
    with pytest.raises(ValueError, match="invalid metric name"):
        w.append(1, img, {"a/b": 1.0})
    np.testing.assert_array_equal(w.done_indices(), [0])  # failed appends changed nothing
    assert not list(tmp_path.glob(".*.tmp"))


def test_result_resume_and_modes(tmp_path):
    path = tmp_path / "res.h5"
    _writer(path).append(1, np.ones((H, W, C), np.float32))
    # Resuming with the same settings keeps the finished sample.
    w = _writer(path)
    np.testing.assert_array_equal(w.done_indices(), [1])
    with pytest.raises(dio.IncompatibleResultError, match="hyperparameters"):
        _writer(path, hyperparameters={"steps": 10})
    with pytest.raises(dio.IncompatibleResultError, match="n_samples"):
        _writer(path, n_samples=4)
    with pytest.raises(dio.IncompatibleResultError, match="seed"):
        _writer(path, seed=8)
    with pytest.raises(FileExistsError):
        _writer(path, mode="new")
    assert _writer(path, mode=dio.WriteMode.OVERWRITE).done_indices().size == 0


def test_read_result_errors(tmp_path):
    path = tmp_path / "res.h5"
    _writer(path).append(0, np.zeros((H, W, C), np.float32), {"psnr": 1.0})
    with h5py.File(path, "r+") as f:
        del f["done"]
    with pytest.raises(dio.MissingMemberError, match="'done'"):
        dio.read_result(path)
    with pytest.raises(dio.MissingMemberError):  # resuming validates the file too
        _writer(path)

    path2 = tmp_path / "res2.h5"
    _writer(path2)
    with h5py.File(path2, "r+") as f:
        del f["metrics"]
        f.create_dataset("metrics/psnr", data=np.zeros(N + 1))
    with pytest.raises(dio.ShapeMismatchError, match="metrics/psnr"):
        dio.read_result(path2)
    with h5py.File(path2, "r+") as f:
        f.attrs["schema_version"] = np.int64(99)
    with pytest.raises(dio.SchemaError, match="schema_version 99"):
        dio.read_result(path2)


def test_interrupted_append_in_process(tmp_path, monkeypatch):
    """A crash (here an interrupt) before the rename leaves the previous file intact."""
    path = tmp_path / "res.h5"
    w = _writer(path)
    recs = RNG.random((N, H, W, C)).astype(np.float32)
    w.append(0, recs[0], {"psnr": 1.0})
    w.append(1, recs[1], {"psnr": 2.0})

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(dio.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        w.append(2, recs[2], {"psnr": 3.0})
    monkeypatch.undo()
    r = dio.read_result(path)
    np.testing.assert_array_equal(r.done_indices, [0, 1])
    np.testing.assert_array_equal(r.reconstruction[:2], recs[:2])
    np.testing.assert_array_equal(r.metrics["psnr"][:2], [1.0, 2.0])
    assert not list(tmp_path.glob(".*.tmp"))
    w.append(2, recs[2], {"psnr": 3.0})
    np.testing.assert_array_equal(dio.read_result(path).done_indices, [0, 1, 2])


def test_hard_crash_mid_append_keeps_finished_samples(tmp_path):
    """Kill the writer process (os._exit, no cleanup) in the middle of the third append."""
    path = tmp_path / "res.h5"
    script = textwrap.dedent(f"""
        import os
        import numpy as np
        from diffprior import io as dio
        w = dio.ResultWriter({str(path)!r}, 3, (4, 4, 1), "dps", {{"steps": 5}}, seed=1)
        for i in range(2):
            w.append(i, np.full((4, 4, 1), 0.25 * (i + 1), np.float32), {{"psnr": 10.0 + i}})
        os.replace = lambda *a, **k: os._exit(17)  # die after writing the new copy, before commit
        w.append(2, np.full((4, 4, 1), 0.75, np.float32), {{"psnr": 12.0}})
        """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 17, proc.stderr
    assert list(tmp_path.glob(f".{path.name}.*.tmp"))  # the half-finished copy is left behind
    r = dio.read_result(path)
    np.testing.assert_array_equal(r.done_indices, [0, 1])
    np.testing.assert_array_equal(r.reconstruction[1], np.full((4, 4, 1), 0.5, np.float32))
    np.testing.assert_array_equal(r.metrics["psnr"][:2], [10.0, 11.0])
    # Resume: leftovers are cleaned up and the batch continues where it stopped.
    w = dio.ResultWriter(path, 3, (4, 4, 1), "dps", {"steps": 5}, seed=1)
    assert not list(tmp_path.glob(f".{path.name}.*.tmp"))
    np.testing.assert_array_equal(w.pending_indices(), [2])
    w.append(2, np.full((4, 4, 1), 0.75, np.float32), {"psnr": 12.0})
    assert dio.read_result(path).done.all()


def test_io_does_not_import_jax():
    code = "import sys, diffprior.io; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**os.environ})
