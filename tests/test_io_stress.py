"""Stress test of crash-safe result appends: SIGKILL a writer process at random moments.

A child process appends samples to a result file (and compacts now and then, so that kills
also land in compactions); it prints each index once :meth:`ResultWriter.append` has
returned. The parent kills it with SIGKILL after a random delay, checks that the file reads
and that every reported sample is done with exactly its data, and restarts it in RESUME
mode, several times, then lets it finish. Set ``DIFFPRIOR_STRESS_SEED`` to replay a run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from diffprior import io as dio

pytestmark = pytest.mark.slow

N_SAMPLES = 800
SHAPE = (64, 64, 3)
KILLS = 12
COMPACT_EVERY = 8

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from diffprior import io as dio

    path, n_samples, compact_every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    shape = (64, 64, 3)

    def sample(n):
        return np.random.default_rng(n).random(shape, dtype=np.float32)

    w = dio.ResultWriter(path, n_samples, shape, "stress", {"k": 1}, seed=0)
    print("READY", flush=True)
    count = 0
    for n in w.pending_indices():
        n = int(n)
        w.append(n, sample(n), {"psnr": float(n)}, {"loss": np.arange(n % 5 + 1.0)}, n / 10)
        print(n, flush=True)
        count += 1
        if count % compact_every == 0:
            w.compact()
            print("COMPACTED", flush=True)
    w.close()
    print("CLOSED", flush=True)
    """
)


def _expected(n):
    return np.random.default_rng(n).random(SHAPE, dtype=np.float32)


class _Child:
    """The writer process and a thread collecting its stdout lines."""

    def __init__(self, script, path):
        self.lines = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(path), str(N_SAMPLES), str(COMPACT_EVERY)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.endswith("\n"):  # a complete report
                self.lines.append(line.strip())
                if line.strip() == "READY":
                    self.ready.set()
        self.ready.set()

    def finish(self, timeout=120):
        self.proc.wait(timeout=timeout)
        self.thread.join(timeout=timeout)
        return self.proc.stderr.read()

    @property
    def appended(self):
        return {int(s) for s in self.lines if s.isdigit()}


def _check(path, reported, where):
    r = dio.read_result(path)  # must open, whatever the moment of the kill
    done = set(r.done_indices.tolist())
    lost = sorted(reported - done)
    assert not lost, f"{where}: reported samples not done: {lost[:10]}"
    for n in done:  # every done sample, reported or not, holds exactly its data
        np.testing.assert_array_equal(r.reconstruction[n], _expected(n), err_msg=f"{where}: sample {n}")
        assert r.metrics["psnr"][n] == n and r.wall_time[n] == n / 10, f"{where}: sample {n}"
        np.testing.assert_array_equal(r.history[n]["loss"], np.arange(n % 5 + 1.0))
    not_done = np.setdiff1d(np.arange(N_SAMPLES), sorted(done))
    assert np.isnan(r.reconstruction[not_done]).all()
    return done


def test_sigkill_at_random_moments_never_loses_an_appended_sample(tmp_path):
    seed = int(os.environ.get("DIFFPRIOR_STRESS_SEED", time.time_ns() % 2**31))
    rng = random.Random(seed)
    where = f"seed {seed}"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    path = tmp_path / "results.h5"
    reported = set()
    compactions = kills = 0
    t0 = time.monotonic()
    for round_ in range(KILLS):
        child = _Child(script, path)
        assert child.ready.wait(60), f"{where}: child did not start"
        time.sleep(rng.uniform(0.0, 0.5))
        child.proc.send_signal(signal.SIGKILL)
        err = child.finish()
        if child.proc.returncode == 0:  # finished before the kill
            break
        assert child.proc.returncode == -signal.SIGKILL, f"{where}: {err}"
        kills += 1
        compactions += child.lines.count("COMPACTED")
        reported |= child.appended
        done = _check(path, reported, f"{where}, after kill {round_ + 1}")
        assert len(done) >= len(reported)
    # Let the last run finish: every sample done, the journal merged into the file.
    child = _Child(script, path)
    err = child.finish()
    assert child.proc.returncode == 0, f"{where}: {err}"
    assert child.lines[-1] == "CLOSED"
    reported |= child.appended
    done = _check(path, reported, f"{where}, final")
    assert done == set(range(N_SAMPLES))
    assert not dio.journal_path(path).exists()
    assert dio.read_result(path).journal_samples == 0
    assert kills >= KILLS // 2, f"{where}: only {kills} kills landed"
    print(f"seed {seed}: {kills} kills, {compactions} compactions seen, {time.monotonic() - t0:.1f} s")
