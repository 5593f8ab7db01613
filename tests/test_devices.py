"""A solver's batch split over several devices gives the one-device results.

JAX fixes its device count when it starts, so the two-device runs happen in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (two CPU devices in one process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffprior.cli import main
from diffprior.io import read_result
from conftest import write_problem_folder

V1 = Path(__file__).parent / "fixtures" / "sd_tiny" / "v1"  # native 16 x 16 images, 8 x 8 latents
TWO = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")

SCRIPT = r"""
import json, sys
import jax, numpy as np
from diffprior.prior import LatentDiffusionPrior
from diffprior.solvers import LDPS, P2L
from diffprior.tasks import TASKS

prior = LatentDiffusionPrior.from_pretrained(sys.argv[1])
x = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype(np.float32)
A = TASKS["motion-deblur"].build_batch((16, 16, 3), jax.random.PRNGKey(1), 3)  # one kernel per image
y = np.stack([np.asarray(A.sample(i)(x[i])) for i in range(3)])
out = {"devices": len(jax.devices())}
for cls in (LDPS, P2L):
    got = {}
    for d in (None, 2, "all"):
        s = cls(y=y, A=A, prior=prior, key=jax.random.PRNGKey(0), num_steps=3, progress=False, devices=d)
        got[d] = np.asarray(s.solve())
        if d == 2:
            out[cls.__name__ + "_devices_used"] = len(s.state.z.sharding.device_set)
            out[cls.__name__ + "_history"] = list(s.history().residual.shape)
            out[cls.__name__ + "_residual"] = list(np.asarray(s.measurement_residual()).shape)
    out[cls.__name__ + "_shape"] = list(got[2].shape)
    out[cls.__name__ + "_diff"] = float(np.abs(got[None] - got[2]).max())
    out[cls.__name__ + "_all_equal_2"] = bool(np.array_equal(got[2], got["all"]))
from diffprior.solvers.sharding import replicate
rp = replicate(prior, 2)
s = LDPS(y=y, A=A, prior=rp, key=jax.random.PRNGKey(0), num_steps=3, progress=False, devices=2)
out["replicated_prior_reused"] = all(a is b for a, b in zip(jax.tree_util.tree_leaves(s.data.prior),
                                                            jax.tree_util.tree_leaves(rp)))
print("RESULT " + json.dumps(out))
"""


def _two_devices(*args):
    proc = subprocess.run([sys.executable, *args], env=TWO, capture_output=True, text=True, timeout=900)
    return proc


@pytest.mark.slow
def test_two_devices_reproduce_one_device_with_a_padded_batch():
    proc = _two_devices("-c", SCRIPT, str(V1))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert out["devices"] == 2
    for name in ("LDPS", "P2L"):
        assert out[f"{name}_devices_used"] == 2  # the batch really is split
        assert out[f"{name}_shape"] == [3, 16, 16, 3]  # the padding sample is dropped
        assert out[f"{name}_history"] == [3, 3] and out[f"{name}_residual"] == [3]
        assert out[f"{name}_diff"] < 1e-4, out  # float tolerance: per-device batches sum in another order
        assert out[f"{name}_all_equal_2"]
    assert out["replicated_prior_reused"]  # the runner replicates the weights once; solvers do not copy them


def test_more_devices_than_present_are_refused():
    import jax

    from diffprior.solvers.sharding import padded_indices, resolve_devices

    n = len(jax.devices())
    with pytest.raises(ValueError, match=f"devices={n + 1}, but this process has {n} cpu device"):
        resolve_devices(n + 1)
    with pytest.raises(ValueError, match="devices=0"):
        resolve_devices(0)
    with pytest.raises(ValueError, match="'some'"):
        resolve_devices("some")
    with pytest.raises(TypeError):
        resolve_devices(1.5)
    assert resolve_devices(None) is None and len(resolve_devices("all")) == n
    np.testing.assert_array_equal(padded_indices(5, 2), [0, 1, 2, 3, 4, 4])
    np.testing.assert_array_equal(padded_indices(4, 2), [0, 1, 2, 3])


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    return write_problem_folder(tmp_path_factory.mktemp("devices"), 3, seed=2)


def _solve_args(root, out, *extra):
    return ["solve", str(root / "p.h5"), "--solver", "ldps", "--prior", str(V1), "--steps", "2", "--batch", "3",
            "--no-progress", "--out", str(root / out), *extra]


@pytest.mark.slow
def test_cli_devices_two_matches_one_and_three_is_refused(problem):
    assert main(_solve_args(problem, "one.h5")) == 0
    cli = ["-m", "diffprior.cli"]
    proc = _two_devices(*cli, *_solve_args(problem, "two.h5", "--devices", "2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = read_result(problem / "one.h5"), read_result(problem / "two.h5")
    assert np.abs(a.reconstruction - b.reconstruction).max() < 1e-4
    proc = _two_devices(*cli, *_solve_args(problem, "three.h5", "--devices", "3"))
    assert proc.returncode == 2
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "--devices: devices=3, but this process has 2 cpu device(s)" in err[0], proc.stderr
    assert not (problem / "three.h5").exists()
