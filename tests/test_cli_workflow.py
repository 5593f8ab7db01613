"""The whole loop on a tiny prior: ``simulate`` -> ``solve`` -> ``report``, and a hard kill
(SIGKILL from outside, as a scheduler or the OOM killer would) in the middle of ``solve``
followed by a rerun that loses and redoes nothing.

``solve`` runs in subprocesses (``python -m diffprior.cli``) that share a JAX persistent
compilation cache, so the tiny prior's solver compiles once for the module (2 steps, 16x16).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import diffprior
from diffprior.cli import main
from diffprior.io import read_problem, read_result

V1 = Path(__file__).parent / "fixtures" / "sd_tiny" / "v1"
N = 3


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflow")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(images / f"im{i}.png")
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(root / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    assert main(["simulate", str(images), "--task", "sr4", "--out", str(root / "problems.h5")]) == 0
    return root, env


def _cmd(root, out, *extra, batch="2"):
    return [sys.executable, "-m", "diffprior.cli", "solve", str(root / "problems.h5"), "--solver", "ldps",
            "--prior", str(V1), "--steps", "2", "--batch", batch, "--out", str(root / out), *extra]


def solve(root, env, out, *extra, batch="2"):
    return subprocess.run(_cmd(root, out, *extra, batch=batch), env=env, capture_output=True, text=True, timeout=600)


def _done(path) -> int:
    try:
        return int(read_result(path).done.sum())
    except (OSError, ValueError):
        return 0  # not created yet


@pytest.fixture(scope="module")
def full(work):
    root, env = work
    proc = solve(root, env, "full.h5")
    assert proc.returncode == 0, proc.stderr
    return proc


def test_solve_writes_every_sample_with_provenance(work, full):
    root, _ = work
    assert f"solving {N} of {N} samples with LDPS (preset sr), 2 steps, batch 2, seed 0" in full.stderr
    assert f"({N}/{N} done); mean PSNR" in full.stdout
    res, prob = read_result(root / "full.h5"), read_problem(root / "problems.h5")
    assert res.done.all() and res.reconstruction.shape == (N, 16, 16, 3)
    assert np.all((res.reconstruction >= 0) & (res.reconstruction <= 1))
    assert res.solver == "LDPS" and res.seed == 0 and res.library_version == diffprior.__version__
    assert res.problem == str((root / "problems.h5").resolve())
    hp = res.hyperparameters
    assert hp["num_steps"] == 2 and hp["preset"] == "sr" and hp["config"]["type"] == "LDPSConfig"
    assert hp["prior"]["name"] == "v1" and len(hp["prior"]["fingerprint"]) == 16
    assert np.all(np.isfinite(res.wall_time)) and np.all(res.wall_time > 0)
    for n in range(N):
        h = res.history[n]
        assert h["t"].shape == h["residual"].shape == h["status"].shape == (2,)
        assert h["t"][0] > h["t"][1] and np.all(h["status"] == 0)
    from diffprior.metrics import psnr

    np.testing.assert_allclose(res.metrics["psnr"], np.asarray(psnr(res.reconstruction, prob.ground_truth)),
                               rtol=1e-5)
    # the data fit ||y - A x|| of every sample, as the runner recorded it
    from diffprior.metrics import measurement_residual
    from diffprior.runner import problem_operator

    want = measurement_residual(problem_operator(prob), prob.measurement, res.reconstruction)
    np.testing.assert_allclose(res.metrics["residual"], want, rtol=1e-5)
    assert np.all(want > 0)


def test_rerun_is_a_no_op_and_other_settings_are_refused(work, full, capsys):
    root, _ = work
    before = (root / "full.h5").read_bytes()
    args = ["solve", str(root / "problems.h5"), "--solver", "ldps", "--prior", str(V1), "--steps", "2",
            "--out", str(root / "full.h5")]
    assert main(args + ["--batch", "3"]) == 0  # the batch size is not a setting of the results
    assert f"nothing to do: all {N} samples" in capsys.readouterr().out
    assert main(args[:-4] + ["--steps", "3", "--out", str(root / "full.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "num_steps 2 (this run: 3)" in err
    assert (root / "full.h5").read_bytes() == before


@pytest.mark.slow
def test_kill_and_resume_lose_and_redo_nothing(work, full):
    root, env = work
    out = root / "resumed.h5"
    proc = subprocess.Popen(_cmd(root, "resumed.h5", batch="1"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while _done(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    first = read_result(out)
    k = int(first.done.sum())
    assert 1 <= k < N, f"the kill landed after {k} of {N} samples"

    resumed = solve(root, env, "resumed.h5", batch="1")
    assert resumed.returncode == 0, resumed.stderr
    assert f"solving {N - k} of {N} samples" in resumed.stderr and f"({k} already done)" in resumed.stderr
    res = read_result(out)
    assert res.done.all()
    # nothing redone: the samples finished before the kill are byte-for-byte those written then
    for n in first.done_indices:
        assert res.wall_time[n] == first.wall_time[n]
        np.testing.assert_array_equal(res.reconstruction[n], first.reconstruction[n])
        np.testing.assert_array_equal(res.history[n]["residual"], first.history[n]["residual"])
    # and the resumed run equals the uninterrupted one: sample n's key does not depend on its batch
    np.testing.assert_allclose(res.reconstruction, read_result(root / "full.h5").reconstruction, atol=1e-5)


def test_report_prints_the_table_and_draws_the_figure(work, full, capsys):
    root, _ = work
    fig, csv = root / "comparison.png", root / "metrics.csv"
    assert main(["report", str(root / "full.h5"), "--figure", str(fig), "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "full.h5: LDPS, 3/3 done, seed 0" in out
    lines = out.splitlines()
    header = next(line for line in lines if "PSNR [dB]" in line)
    assert "SSIM" in header and "time [s]" in header and "|y-Ax|" in header
    floor = 0.005 * np.sqrt(4 * 4 * 3)  # simulate's default sigma; sr4 measures 4 x 4 x 3 values
    assert f"noise floor sigma*sqrt(m) = {floor:.4f}" in out
    assert sum(line.rstrip().endswith("done") for line in lines) == N
    assert any(line.strip().startswith("mean (3)") for line in lines)
    assert ("LPIPS" in header) or ("LPIPS not computed" in out)
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = np.asarray(Image.open(fig))
    assert image.ndim == 3 and min(image.shape[:2]) > 300  # 3 rows of 3 panels
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("index,sample,done") and len(rows) == N + 1
