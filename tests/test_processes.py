"""Several processes share a problem file: disjoint parts, each resumable, merged into one result."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffprior.cli import main
from diffprior.io import read_result
from diffprior.parts import exclusive, part_path, share
from conftest import write_problem_folder

V1 = Path(__file__).parent / "fixtures" / "sd_tiny" / "v1"  # native 16 x 16 images


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = write_problem_folder(tmp_path_factory.mktemp("processes"), 5, seed=3)
    assert main(_args(root, "single.h5")) == 0
    return root


def _args(root, out, *extra):
    return ["solve", str(root / "p.h5"), "--solver", "ldps", "--prior", str(V1), "--steps", "2", "--batch", "2",
            "--no-progress", "--out", str(root / out), *extra]


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "diffprior.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _same_as_single(root, merged):
    a, b = read_result(root / "single.h5"), read_result(root / merged)
    assert b.done.all()
    assert np.abs(a.reconstruction - b.reconstruction).max() < 1e-4  # batches of other samples: float tolerance
    assert a.hyperparameters == b.hyperparameters and a.solver == b.solver and a.seed == b.seed
    assert set(a.metrics) == set(b.metrics)
    np.testing.assert_allclose(a.metrics["psnr"], b.metrics["psnr"], atol=1e-2)
    assert sorted(a.history) == sorted(b.history)


def test_shares_are_disjoint_and_cover_every_sample():
    for n, p in ((5, 2), (7, 3), (2, 2), (1000, 7)):
        parts = [share(n, i, p) for i in range(p)]
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.slow
def test_two_processes_through_jax_distributed_merge_to_the_single_run(root):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [_cli(*_args(root, "r.h5", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                         "--process-id", str(i))) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    for i in range(2):
        r = read_result(part_path(root / "r.h5", i, 2))
        np.testing.assert_array_equal(np.flatnonzero(r.done), share(5, i, 2))
    assert main(["merge", str(root / "r.h5")]) == 0
    _same_as_single(root, "r.h5")


@pytest.mark.slow
def test_parts_resume_alone_and_bad_merges_write_nothing(root, capsys):
    for i in range(2):
        assert main(_args(root, "e.h5", "--num-processes", "2", "--process-id", str(i))) == 0
    # a restarted process finds its part finished; the other part is untouched
    assert main(_args(root, "e.h5", "--num-processes", "2", "--process-id", "1")) == 0
    assert "nothing to do" in capsys.readouterr().out
    # a missing part
    p1 = part_path(root / "e.h5", 1, 2)
    shutil.move(p1, root / "aside.h5")
    assert main(["merge", str(root / "e.h5")]) == 2
    assert "part(s) [1] of 2 missing" in capsys.readouterr().err
    assert not (root / "e.h5").exists()
    # a foreign part (another seed)
    assert main(_args(root, "f.h5", "--num-processes", "2", "--process-id", "1", "--seed", "7")) == 0
    shutil.copy(part_path(root / "f.h5", 1, 2), p1)
    assert main(["merge", str(root / "e.h5")]) == 2
    assert "is foreign: its seed differs from e.part-0-of-2.h5's" in capsys.readouterr().err
    assert not (root / "e.h5").exists()
    shutil.move(root / "aside.h5", p1)
    assert main(["merge", str(root / "e.h5")]) == 0
    _same_as_single(root, "e.h5")
    assert main(["merge", str(root / "e.h5")]) == 2  # exists: --overwrite to replace
    assert "exists" in capsys.readouterr().err


def test_bad_process_settings_and_a_second_writer_are_refused(root, capsys):
    assert main(_args(root, "g.h5", "--num-processes", "2", "--process-id", "2")) == 2
    assert "--process-id 2 is out of range for 2 processes" in capsys.readouterr().err
    assert main(_args(root, "g.h5", "--num-processes", "2")) == 2
    assert "go together" in capsys.readouterr().err
    with exclusive(part_path(root / "g.h5", 0, 2)):
        assert main(_args(root, "g.h5", "--num-processes", "2", "--process-id", "0")) == 2
    assert "is being written by another process" in capsys.readouterr().err
    assert not part_path(root / "g.h5", 0, 2).exists()
