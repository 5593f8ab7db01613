"""``diffprior demo`` (the README's main job) on the bundled prior, shortened to 2 steps."""

from __future__ import annotations

import numpy as np
import pytest

from diffprior.cli import main
from diffprior.io import read_problem, read_result


@pytest.mark.slow
def test_demo_writes_problem_and_result_files_and_resumes(tmp_path, capsys):
    argv = ["demo", "--out", str(tmp_path), "--steps", "2", "--images", "2", "--tasks", "motion-deblur", "--no-lpips"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "motion-deblur     LDPS" in out and "motion-deblur     P2L" in out
    folder = tmp_path / "motion-deblur"
    problem = read_problem(folder / "problems.h5")
    assert problem.task == "motion-deblur" and problem.n_samples == 2
    assert problem.build_operator().per_sample == ("kernel",)  # one motion kernel per image
    for name, solver in (("ldps", "LDPS"), ("p2l", "P2L")):
        res = read_result(folder / f"{name}.h5")
        assert res.solver == solver and res.done.all() and res.journal_samples == 0  # closed: compacted
        assert res.hyperparameters["num_steps"] == 2 and np.all(np.isfinite(res.metrics["psnr"]))
    assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", str(folder / "p2l.h5")]) == 0  # the standard result format
    assert "P2L, 2/2 done" in capsys.readouterr().out
    first = read_result(folder / "p2l.h5")
    before = first.reconstruction
    assert main(argv) == 0  # a rerun keeps the finished restorations (not solved again: same wall times)
    np.testing.assert_array_equal(read_result(folder / "p2l.h5").reconstruction, before)
    np.testing.assert_array_equal(read_result(folder / "p2l.h5").wall_time, first.wall_time)
    assert main(argv + ["--sigma", "0.05"]) == 0  # other settings: the demo starts its files afresh
    assert read_problem(folder / "problems.h5").noise_sigma == 0.05
    assert not np.array_equal(read_result(folder / "p2l.h5").reconstruction, before)
