"""``diffprior solve --solver NAME --set ...`` end to end for every registered solver (tiny prior)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffprior.cli import main
from diffprior.io import read_result, write_problem
from diffprior.priors import preset_table
from diffprior.solvers import SOLVERS

V1 = Path(__file__).parent / "fixtures" / "sd_tiny" / "v1"
PIXEL = Path(__file__).parent / "fixtures" / "ddpm_tiny" / "cifar"

#: One override per solver, on a field its preset sets, plus a nested one where there is one.
OVERRIDES = {
    "p2l": ["step_size=0.2", "prompt.iters=1", "projection.every=1"],
    "ldps": ["step_size=0.2", "eta=0.5"],
    "gmldps": ["fixed_point_weight=0.05"],
    "psld": ["gluing_weight=0.05"],
    "ldir": ["step_size=0.02", "history.b1=0.8"],
    "dps": ["step_size=0.2", "eta=0.5"],
    "dds": ["gamma=2.0", "cg_iters=2"],
    "diffpir": ["lmbda=3.0", "zeta=0.5", "noise_sigma=0.01"],
    "tv-admm": ["lmbda=0.01", "maxiter=3"],
    "pnp-admm": ["rho=0.01", "maxiter=2"],
}


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    path = tmp_path_factory.mktemp("solvers") / "p.h5"
    x = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
    y = x.reshape(1, 4, 4, 4, 4, 3).mean(axis=(2, 4))
    write_problem(path, y, {"class": "Downsample", "input_shape": [16, 16, 3], "factor": 4, "method": "average"},
                  0.005, ground_truth=x, task="sr4-avg")
    return path


def test_every_registered_solver_has_overrides_here():
    assert set(OVERRIDES) == set(SOLVERS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_solve_with_overrides(name, problem, tmp_path, capsys):
    out = tmp_path / "r.h5"
    sets = [a for s in OVERRIDES[name] for a in ("--set", s)]
    cls = SOLVERS[name]
    prior = PIXEL if cls.uses_prior and cls.pixel_space else V1  # (a latent prior is refused: test_pixel_solvers)
    argv = ["solve", str(problem), "--solver", name, "--prior", str(prior), "--steps", "2", "--out", str(out), *sets]
    assert main(argv) == 0, capsys.readouterr().err
    res = read_result(out)
    assert res.done.all() and np.all(np.isfinite(res.reconstruction))
    config = cls.config_class.from_json(res.hyperparameters["config"])
    table = preset_table(prior)  # the fixtures have no metadata: the paper's presets
    expected = cls.config_class.for_task("sr", table).override(dict(s.split("=") for s in OVERRIDES[name]))
    assert config == expected
