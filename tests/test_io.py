"""HDF5 problem and result files: round trips, failure modes, interrupted appends."""

from __future__ import annotations

import dataclasses
import enum
import os
import shutil
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
    assert p.schema_version == 2 and p.library_version == diffprior.__version__
    assert p.task is None and p.per_sample_keys == ()
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
        f.attrs["schema_version"] = np.int64(3)
    with pytest.raises(dio.SchemaError, match=r"schema_version 3 is newer than this library reads \(2\)"):
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
HYPER_JSON = {"hyper": {"type": "Hyper", "steps": 50, "eta": 0.5, "mode": "fast"}, "lr": 0.25, "sizes": [1, 2]}  # dataclasses tagged


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
    assert r.library_version == diffprior.__version__ and r.schema_version == 2


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
    assert not list(tmp_path.glob(".*.tmp")) and not list(w.journal.glob(".*.tmp"))
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
    journal = dio.journal_path(path)
    assert list(journal.glob(".*.tmp"))  # the half-finished journal entry is left behind
    r = dio.read_result(path)
    np.testing.assert_array_equal(r.done_indices, [0, 1])
    np.testing.assert_array_equal(r.reconstruction[1], np.full((4, 4, 1), 0.5, np.float32))
    np.testing.assert_array_equal(r.metrics["psnr"][:2], [10.0, 11.0])
    # Resume: leftovers are cleaned up and the batch continues where it stopped.
    w = dio.ResultWriter(path, 3, (4, 4, 1), "dps", {"steps": 5}, seed=1)
    assert not list(journal.glob(".*.tmp"))
    np.testing.assert_array_equal(w.pending_indices(), [2])
    w.append(2, np.full((4, 4, 1), 0.75, np.float32), {"psnr": 12.0})
    assert dio.read_result(path).done.all()


def test_io_does_not_import_jax():
    code = "import sys, diffprior.io; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env={**os.environ})


# ------------------------------------------------------------------ problem data validated on read


@pytest.mark.parametrize(
    "member, where, value, what",
    [
        ("ground_truth", (1, 2, 3, 0), np.nan, "non-finite"),
        ("ground_truth", (0, 0, 0, 2), 1e38, r"must be in \[0, 1\]"),
        ("ground_truth", (2, 7, 5, 1), -1.0, r"must be in \[0, 1\]"),
        ("measurement", (0, 4, 1, 1), np.nan, "non-finite"),
        ("measurement", (2, 0, 0, 0), np.inf, "non-finite"),
        ("noise_sigma", (), np.nan, "finite and >= 0"),
        ("noise_sigma", (), -0.5, "finite and >= 0"),
        ("operator/kernel", (1, 1), np.nan, "non-finite"),
    ],
)
def test_read_problem_rejects_corrupted_values(tmp_path, member, where, value, what):
    """Bytes corrupted in place (valid HDF5, invalid data) are refused, naming file and member."""
    path, _ = _problem(tmp_path)
    dio.read_problem(path)  # valid before
    with h5py.File(path, "r+") as f:
        f[member][where] = value
    with pytest.raises(dio.InvalidDataError, match=what) as e:
        dio.read_problem(path)
    assert isinstance(e.value, dio.DiffpriorIOError) and isinstance(e.value, ValueError)
    assert e.value.path == str(path) and e.value.member == member
    assert str(path) in str(e.value) and f"[{member}]" in str(e.value)


def test_read_problem_rejects_float_seeds(tmp_path):
    path, _ = _problem(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["seeds"]
        f.create_dataset("seeds", data=np.array([0.5, 1.0, 2.0]))
    with pytest.raises(dio.InvalidDataError, match="seeds must be integers") as e:
        dio.read_problem(path)
    assert e.value.member == "seeds"


# ------------------------------------------------------------------ result journal (O(sample) appends)


def _sample(n):
    r = np.random.default_rng(100 + n)
    return r.random((H, W, C)).astype(np.float32)


def test_append_writes_only_its_sample_and_close_compacts(tmp_path):
    path = tmp_path / "res.h5"
    w = _writer(path)
    main_before = path.read_bytes()
    w.append(1, _sample(1), {"psnr": 21.0}, {"loss": np.arange(4.0)}, 0.5)
    w.append(0, _sample(0), {"ssim": 0.5}, None, 0.25)
    # The main file is not touched by appends: each sample is one journal entry.
    assert path.read_bytes() == main_before
    assert sorted(q.name for q in w.journal.iterdir()) == ["000000.h5", "000001.h5"]
    r = dio.read_result(path)
    assert r.journal_samples == 2
    np.testing.assert_array_equal(r.done, [True, True, False])
    np.testing.assert_array_equal(r.reconstruction[1], _sample(1))
    np.testing.assert_array_equal(r.metrics["psnr"], [np.nan, 21.0, np.nan])
    np.testing.assert_array_equal(r.metrics["ssim"], [0.5, np.nan, np.nan])
    np.testing.assert_array_equal(r.wall_time, [0.25, 0.5, np.nan])
    np.testing.assert_array_equal(r.history[1]["loss"], np.arange(4.0))
    np.testing.assert_array_equal(w.pending_indices(), [2])

    w.close()
    assert w.closed and not w.journal.exists()
    c = dio.read_result(path)
    assert c.journal_samples == 0 and c.schema_version == 2
    for field in ("reconstruction", "done", "wall_time"):
        np.testing.assert_array_equal(getattr(c, field), getattr(r, field))
    assert set(c.metrics) == {"psnr", "ssim"}
    for k in c.metrics:
        np.testing.assert_array_equal(c.metrics[k], r.metrics[k])
    np.testing.assert_array_equal(c.history[1]["loss"], np.arange(4.0))
    assert set(c.history) == {1}
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.append(2, _sample(2))
    # Resuming the compacted file keeps everything; nothing to compact, the file is untouched.
    before = path.read_bytes()
    with _writer(path) as w2:
        np.testing.assert_array_equal(w2.done_indices(), [0, 1])
    assert path.read_bytes() == before


def test_lazy_read_and_read_samples_agree_with_the_full_read(tmp_path):
    path = tmp_path / "res.h5"
    w = _writer(path)
    w.append(0, _sample(0), {"psnr": 3.0}, None, 0.5)
    w.compact()  # sample 0 in the file, sample 2 in the journal, sample 1 not done
    w.append(2, _sample(2), {"psnr": 4.0}, None, 0.5)
    full = dio.read_result(path)
    lazy = dio.read_result(path, samples=False)
    assert lazy.reconstruction.shape == full.reconstruction.shape and lazy.reconstruction.strides == (0,) * 4
    assert np.isnan(lazy.reconstruction).all() and not lazy.reconstruction.flags.writeable
    np.testing.assert_array_equal(lazy.done, full.done)
    np.testing.assert_array_equal(lazy.metrics["psnr"], full.metrics["psnr"])
    got = dict(dio.read_samples(path, [2, 0, 1]))
    assert list(got) == [2, 0, 1]
    np.testing.assert_array_equal(got[0], _sample(0))
    np.testing.assert_array_equal(got[2], _sample(2))
    assert np.isnan(got[1]).all()
    with pytest.raises(IndexError, match="sample 3 is outside"):
        list(dio.read_samples(path, [3]))
    w.close()


def test_context_manager_and_replace_across_compaction(tmp_path):
    path = tmp_path / "res.h5"
    with _writer(path) as w:
        w.append(0, _sample(0), {"psnr": 1.0, "ssim": 0.1}, {"loss": [1.0, 2.0]}, 3.0)
    assert not w.journal.exists() and w.closed
    with _writer(path) as w:
        with pytest.raises(ValueError, match="sample 0 is already done"):
            w.append(0, _sample(1))
        # The new entry replaces the whole sample: metrics and history it lacks are dropped.
        w.append(0, _sample(2), {"psnr": 2.0}, None, 4.0, replace=True)
        r = dio.read_result(path)
        assert r.metrics["psnr"][0] == 2.0 and np.isnan(r.metrics["ssim"][0]) and 0 not in r.history
        w.append(0, _sample(3), {"lpips": 0.3}, None, 5.0, replace=True)  # replaces the entry
    r = dio.read_result(path)
    np.testing.assert_array_equal(r.reconstruction[0], _sample(3))
    assert r.wall_time[0] == 5.0 and r.metrics["lpips"][0] == 0.3
    assert np.isnan(r.metrics["psnr"][0]) and np.isnan(r.metrics["ssim"][0]) and r.history == {}


def test_exception_in_with_block_still_compacts(tmp_path):
    path = tmp_path / "res.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with _writer(path) as w:
            w.append(2, _sample(2))
            raise RuntimeError("boom")
    assert not w.journal.exists()
    np.testing.assert_array_equal(dio.read_result(path).done_indices, [2])


def test_invalid_journal_entries_are_ignored_and_removed(tmp_path):
    path = tmp_path / "res.h5"
    w = _writer(path)
    for n in range(N):
        w.append(n, _sample(n), {"psnr": float(n)})
    j = w.journal
    good = (j / "000001.h5").read_bytes()
    (j / "000001.h5").write_bytes(good[: len(good) // 2])  # truncated
    (j / "000002.h5").write_bytes(b"garbage" * 100)  # not HDF5
    (j / ".000002.h5.123.tmp").write_bytes(b"half written")  # a crashed writer's temp file
    (j / "notes.txt").write_text("not an entry")
    r = dio.read_result(path)  # readable; only the intact entry counts
    np.testing.assert_array_equal(r.done_indices, [0])
    assert r.journal_samples == 1
    # An entry of another run (e.g. a result deleted by hand, then written again) is ignored.
    with h5py.File(j / "000000.h5", "r+") as f:
        f.attrs["run_id"] = "someone-else"
    assert dio.read_result(path).done_indices.size == 0
    with h5py.File(path, "r") as main, h5py.File(j / "000000.h5", "r+") as f:
        f.attrs["run_id"] = main.attrs["run_id"]
    # Resuming deletes the invalid entries and temp files and redoes those samples.
    w = _writer(path)
    assert sorted(q.name for q in j.iterdir()) == ["000000.h5", "notes.txt"]
    np.testing.assert_array_equal(w.pending_indices(), [1, 2])
    w.append(1, _sample(1))
    w.append(2, _sample(2))
    w.close()
    r = dio.read_result(path)
    assert r.done.all()
    np.testing.assert_array_equal(r.reconstruction, np.stack([_sample(n) for n in range(N)]))


def test_crash_during_compaction_loses_nothing(tmp_path, monkeypatch):
    path = tmp_path / "res.h5"
    w = _writer(path)
    for n in range(2):
        w.append(n, _sample(n), {"psnr": float(n)})

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(dio.os, "replace", crash)  # dies before the compacted copy commits
    with pytest.raises(KeyboardInterrupt):
        w.close()
    monkeypatch.undo()
    r = dio.read_result(path)
    np.testing.assert_array_equal(r.done_indices, [0, 1])
    assert r.journal_samples == 2 and not list(tmp_path.glob(".*.tmp"))

    # Dying after the commit but before the entries are deleted leaves duplicates: harmless.
    saved = tmp_path / "saved"
    shutil.copytree(w.journal, saved)
    w.close()
    assert not w.journal.exists()
    shutil.copytree(saved, w.journal)
    r2 = dio.read_result(path)
    np.testing.assert_array_equal(r2.reconstruction, r.reconstruction)
    np.testing.assert_array_equal(r2.metrics["psnr"], r.metrics["psnr"])
    assert dio.compact_result(path) == 2 and not w.journal.exists()
    np.testing.assert_array_equal(dio.read_result(path).reconstruction, r.reconstruction)


def test_overwrite_and_new_file_drop_an_old_journal(tmp_path):
    path = tmp_path / "res.h5"
    w = _writer(path)
    w.append(0, _sample(0))
    w2 = _writer(path, mode="overwrite")
    assert not w2.journal.exists() and w2.done_indices().size == 0
    w2.append(1, _sample(1))
    path.unlink()  # deleted by hand, journal left behind
    w3 = _writer(path)
    assert w3.done_indices().size == 0 and not w3.journal.exists()


def _write_v1_result(path, done_index=0):
    """A version-1 result file as the previous library wrote it (no run_id, no journal)."""
    with h5py.File(path, "w") as f:
        f.attrs.update(
            schema="diffprior-result", schema_version=np.int64(1), library_version="0.0.9",
            created="2024-01-01T00:00:00Z", solver="p2l", hyperparameters=dio._json_dumps(HYPER),
            n_samples=np.int64(N), image_shape=np.array([H, W, C], np.int64), seed=np.int64(7),
        )
        rec = np.full((N, H, W, C), np.nan, np.float32)
        rec[done_index] = _sample(done_index)
        f.create_dataset("reconstruction", data=rec, chunks=(1, H, W, C))
        done = np.zeros(N, np.uint8)
        done[done_index] = 1
        f.create_dataset("done", data=done)
        f.create_dataset("wall_time", data=np.full(N, np.nan))
        f.create_dataset("metrics/psnr", data=np.where(done, 20.0, np.nan))
        f.create_dataset(f"history/{done_index:06d}/loss", data=np.arange(3.0))


def test_version_1_result_reads_and_resumes(tmp_path):
    path = tmp_path / "v1.h5"
    _write_v1_result(path)
    r = dio.read_result(path)
    assert r.schema_version == 1 and r.done_indices.tolist() == [0]
    assert r.metrics["psnr"][0] == 20.0 and r.history[0]["loss"].tolist() == [0, 1, 2]
    before = path.read_bytes()
    w = _writer(path)
    np.testing.assert_array_equal(w.pending_indices(), [1, 2])
    assert path.read_bytes() == before  # opening does not modify the file
    w.append(2, _sample(2), {"psnr": 30.0})  # upgrades to version 2 first (one copy)
    r = dio.read_result(path)
    assert r.schema_version == 2 and r.done_indices.tolist() == [0, 2] and r.journal_samples == 1
    w.close()
    r = dio.read_result(path)
    np.testing.assert_array_equal(r.metrics["psnr"], [20.0, np.nan, 30.0])
    np.testing.assert_array_equal(r.reconstruction[[0, 2]], [_sample(0), _sample(2)])
    assert r.history[0]["loss"].tolist() == [0, 1, 2]


def test_result_version_2_requires_run_id(tmp_path):
    path = tmp_path / "res.h5"
    _writer(path)
    with h5py.File(path, "r+") as f:
        del f.attrs["run_id"]
    with pytest.raises(dio.MissingMemberError, match="run_id"):
        dio.read_result(path)


# ------------------------------------------------------------------ problem schema 2


def _v2_blur(n=N, kernel_n=None, input_n=None):
    k = RNG.random((kernel_n or n, 3, 3)).astype(np.float32)
    return {"class": "Blur", "input_shape": [input_n or n, H, W, C], "kernel": k / k.sum((1, 2), keepdims=True),
            "boundary": "same"}


def test_problem_v2_per_sample_roundtrip(tmp_path):
    desc = _v2_blur()
    path, args = _problem(tmp_path, operator_description=desc, task="motion-deblur")
    p = dio.read_problem(path)
    assert p.schema_version == 2 and p.task == "motion-deblur"
    assert p.per_sample_keys == ("kernel",)  # inferred: a Blur kernel of rank 3
    assert p.operator["input_shape"] == [N, H, W, C] and "per_sample" not in p.operator
    np.testing.assert_array_equal(p.operator["kernel"], desc["kernel"])
    with h5py.File(path) as f:
        assert f.attrs["task"] == "motion-deblur"
        assert f["operator"].attrs["per_sample"] == '["kernel"]'

    # Inpaint with per-sample masks, named explicitly; a shared scalar array stays shared.
    masks = (RNG.random((N, H, W)) > 0.5).astype(np.float32)
    desc = {"class": "Inpaint", "input_shape": [N, H, W, C], "mask": masks}
    path, _ = _problem(tmp_path, operator_description=desc, per_sample=["mask"])
    p = dio.read_problem(path)
    assert p.per_sample_keys == ("mask",) and p.task is None
    np.testing.assert_array_equal(p.operator["mask"], masks)

    # A batched operator with a shared kernel has no per-sample arrays (even when k == N).
    k = np.full((N, N), 1.0 / N**2, np.float32)
    desc = {"class": "Blur", "input_shape": [N, H, W, C], "kernel": k, "boundary": "same"}
    path, _ = _problem(tmp_path, operator_description=desc)
    assert dio.read_problem(path).per_sample_keys == ()
    # A "per_sample" entry of the description is used (and not stored as a parameter).
    desc = {**_v2_blur(), "per_sample": ["kernel"]}
    path, _ = _problem(tmp_path, operator_description=desc)
    p = dio.read_problem(path)
    assert p.per_sample_keys == ("kernel",) and "per_sample" not in p.operator


def test_problem_v2_bad_sample_axis_refused(tmp_path):
    with pytest.raises(
        dio.ShapeMismatchError, match=r"'kernel' has shape \(4, 3, 3\); expected a leading axis of length N=3"
    ):
        _problem(tmp_path, operator_description=_v2_blur(kernel_n=N + 1), per_sample=["kernel"])
    with pytest.raises(dio.ShapeMismatchError, match=r"input_shape \(4, 8, 6, 3\) does not match N=3"):
        _problem(tmp_path, operator_description=_v2_blur(kernel_n=N + 1, input_n=N + 1))
    d = {"class": "Blur", "input_shape": [H, W, C], "kernel": np.ones((N, 3, 3), np.float32) / 9}
    with pytest.raises(dio.ShapeMismatchError, match="need a batched input_shape"):
        _problem(tmp_path, operator_description=d)
    with pytest.raises(dio.InvalidDataError, match="per_sample names 'mask'"):
        _problem(tmp_path, operator_description=_v2_blur(), per_sample=["mask"])
    bad = _v2_blur()
    bad["kernel"][1, 0, 0] = np.nan
    with pytest.raises(dio.InvalidDataError, match="operator/kernel"):
        _problem(tmp_path, operator_description=bad)
    with pytest.raises(TypeError, match="task must be a str"):
        _problem(tmp_path, task=3)
    assert not (tmp_path / "problem.h5").exists()

    # The same checks on read: a file whose kernel lost its sample axis length is refused.
    path, _ = _problem(tmp_path, operator_description=_v2_blur())
    with h5py.File(path, "r+") as f:
        del f["operator/kernel"]
        f["operator"].create_dataset("kernel", data=np.ones((N + 1, 3, 3), np.float32) / 9)
    with pytest.raises(dio.ShapeMismatchError, match="leading axis of length N=3") as e:
        dio.read_problem(path)
    assert e.value.member == "operator/kernel" and str(path) in str(e.value)
    with h5py.File(path, "r+") as f:
        f["operator"].attrs["per_sample"] = '["nope"]'
    with pytest.raises(dio.InvalidDataError, match="per_sample names 'nope'"):
        dio.read_problem(path)
    with h5py.File(path, "r+") as f:
        del f["operator"].attrs["per_sample"]
    with pytest.raises(dio.MissingMemberError, match="per_sample"):
        dio.read_problem(path)


def _write_v1_problem(path):
    """A version-1 problem file as the previous library wrote it (no task, no per_sample)."""
    k = np.full((3, 3), 1 / 9, np.float32)
    with h5py.File(path, "w") as f:
        f.attrs.update(schema="diffprior-problem", schema_version=np.int64(1),
                       library_version="0.0.9", created="2024-01-01T00:00:00Z")
        f.create_dataset("measurement", data=np.full((N, H, W, C), 0.5, np.float32))
        f.create_dataset("noise_sigma", data=np.float64(0.01))
        f.create_dataset("ground_truth", data=np.full((N, H, W, C), 0.25, np.float32))
        g = f.create_group("operator")
        g.attrs["description"] = '{"boundary": "same", "class": "Blur", "input_shape": [8, 6, 3]}'
        g.create_dataset("kernel", data=k)
    return k


def test_problem_version_1_still_reads(tmp_path):
    path = tmp_path / "v1.h5"
    k = _write_v1_problem(path)
    p = dio.read_problem(path)
    assert p.schema_version == 1 and p.task is None and p.per_sample_keys == ()
    assert p.operator["class"] == "Blur" and p.operator["input_shape"] == [H, W, C]
    np.testing.assert_array_equal(p.operator["kernel"], k)
    assert p.noise_sigma == 0.01 and p.ground_truth.shape == (N, H, W, C)
