"""One configuration per sample (:mod:`diffprior.solvers.mixing`): a batch mixing two P2L
configurations, which differ in every setting that may be per sample, gives each sample what
solving its group alone with its own configuration gives; settings compiled into the program
are refused by name."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import operators

from diffprior.solvers import (P2L, AdamHistory, GradientDescent, MixedConfigError, P2LConfig, PromptTuning,
                               ProximalProjection)

STEPS = 6  # periods 2 and 3 project at different steps; both at the last
N = 4

CFG_A = P2LConfig(step_size=0.3, update=GradientDescent(), prompt=PromptTuning(iters=3, lr=1e-2, shift_step=0.3),
                  projection=ProximalProjection(weight=1e-3, every=2))
CFG_B = P2LConfig(step_size=0.1, update=AdamHistory(), prompt=PromptTuning(iters=1, lr=1e-2),
                  projection=ProximalProjection(weight=0.1, every=3))


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    masks = np.stack([operators.random_mask(jax.random.PRNGKey(k), (16, 16), 0.5) for k in range(N)])
    A = operators.Inpaint((N, 16, 16, 3), masks)
    x = rng.random((N, 16, 16, 3), dtype=np.float32)
    y = np.asarray(A(x)) + 0.005 * rng.standard_normal((N, 16, 16, 3)).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(7), N)
    return A, y, keys


def _solve(tiny_prior, A, y, keys, config):
    s = P2L(y=y, A=A, prior=tiny_prior, key=keys, num_steps=STEPS, chunk_size=STEPS, config=config)
    return s, np.asarray(s.solve())


def test_mixed_batch_equals_separate_runs(tiny_prior, problem):
    A, y, keys = problem
    group = np.array([0, 1, 1, 0])
    configs = [(CFG_A, CFG_B)[g] for g in group]
    mixed, x = _solve(tiny_prior, A, y, keys, configs)
    assert isinstance(mixed.config, tuple) and len(mixed.config) == N
    assert mixed.plan.prompt.iters == 3
    hist = mixed.history()
    for g, cfg in enumerate((CFG_A, CFG_B)):
        idx = np.flatnonzero(group == g)
        alone, x_alone = _solve(tiny_prior, A.take(idx), y[idx], keys[idx], cfg)
        np.testing.assert_allclose(x[idx], x_alone, atol=2e-5, rtol=0)
        h = alone.history()
        np.testing.assert_allclose(hist.residual[:, idx], h.residual, rtol=1e-4)
        # each sample projects on its own period's steps and tunes its own K iterations
        assert np.array_equal(hist.projected[:, idx], np.repeat(h.projected[:, None], idx.size, 1))
        k = cfg.prompt.iters
        np.testing.assert_allclose(hist.prompt_residual[:, idx, :k], h.prompt_residual, rtol=1e-4)
        assert np.all(np.isnan(hist.prompt_residual[:, idx, k:]))
    # the two configurations do differ in outcome: not a vacuous comparison
    _, x_swapped = _solve(tiny_prior, A, y, keys, [(CFG_B, CFG_A)[g] for g in group])
    assert np.abs(x_swapped - x).max() > 1e-2


def test_identical_configs_are_one_config(tiny_prior, problem):
    A, y, keys = problem
    s = P2L(y=y, A=A, prior=tiny_prior, key=keys, num_steps=STEPS, config=[CFG_A] * N)
    assert s.config == CFG_A and s.data.mix is None


@pytest.mark.parametrize("change, what", [
    (dict(eta=0.5), "eta"),
    (dict(prompt=PromptTuning(iters=3, lr=1e-3)), "prompt.lr"),
    (dict(prompt=None), "whether the prompt is tuned"),
    (dict(projection=ProximalProjection(weight=1e-3, every=2, cg_iters=2)), "projection.cg_iters"),
    (dict(projection=None), "whether there is a projection"),
])
def test_compiled_settings_must_agree(tiny_prior, problem, change, what):
    A, y, keys = problem
    other = dataclasses.replace(CFG_A, **change)
    with pytest.raises(MixedConfigError, match=what):
        P2L(y=y, A=A, prior=tiny_prior, key=keys, num_steps=STEPS, config=[CFG_A, other, CFG_A, CFG_A])


def test_one_config_per_sample_count_is_checked(tiny_prior, problem):
    A, y, keys = problem
    with pytest.raises(ValueError, match="3 configurations for 4 samples"):
        P2L(y=y, A=A, prior=tiny_prior, key=keys, num_steps=STEPS, config=[CFG_A, CFG_B, CFG_A])


# ------------------------------------------------------------------ several problems in one program
def test_solve_together_equals_each_problem_alone(tmp_path):
    """The runner's :func:`solve_together` (``diffprior demo``'s path): three problems with
    different operators and output shapes (per-sample blur, 2x downsampling, per-sample
    masks) and different P2L configurations, in one batch of one program, append to each
    problem's result file what solving that problem alone appends."""
    from _gaussian_prior import GaussianLatentPrior

    from diffprior.io import Problem, ResultWriter, WriteMode, read_result
    from diffprior.runner import solve_problem, solve_together
    from diffprior.solvers.core import run_chunk

    prior = GaussianLatentPrior.create(jax.random.PRNGKey(0))
    n, shape = 3, (4, 4, 3)
    rng = np.random.default_rng(1)
    kernels = np.stack([operators.motion_kernel(jax.random.PRNGKey(k), 5, 0.5) for k in range(n)])
    masks = (rng.random((n, 4, 4)) > 0.3).astype(np.float32)
    ops = [operators.Blur((n, *shape), kernels), operators.Downsample((n, *shape), 2, "average"),
           operators.Inpaint((n, *shape), masks)]
    configs = [CFG_A, CFG_B, dataclasses.replace(CFG_A, step_size=0.2, projection=ProximalProjection(weight=0.5, every=1))]
    problems = []
    for A in ops:
        x = rng.random((n, *shape), dtype=np.float32)
        y = np.asarray(A(x)) + 0.01 * rng.standard_normal(A.output_shape).astype(np.float32)
        problems.append(Problem(measurement=y, operator=operators.describe(A), noise_sigma=0.01, ground_truth=x))

    def writer(name):
        return ResultWriter(tmp_path / name, n, shape, "P2L", {})

    writers = [writer(f"together{j}.h5") for j in range(3)]
    from diffprior.metrics import psnr

    def score(x, gt):  # the 4 x 4 images are too small for SSIM
        return {"psnr": np.asarray(psnr(x, gt))}

    solve_together(list(zip(problems, configs, writers)), P2L, prior=prior, num_steps=STEPS, seed=3, metrics=score)
    for w in writers:
        w.close()
    for j, (p, cfg) in enumerate(zip(problems, configs)):
        with writer(f"alone{j}.h5") as w:
            solve_problem(p, P2L, cfg, w, prior=prior, num_steps=STEPS, seed=3, batch=n, metrics=score)
        together, alone = read_result(tmp_path / f"together{j}.h5"), read_result(tmp_path / f"alone{j}.h5")
        assert together.done.all()
        np.testing.assert_allclose(together.reconstruction, alone.reconstruction, atol=1e-5)
        for k in ("psnr", "residual"):
            np.testing.assert_allclose(together.metrics[k], alone.metrics[k], rtol=1e-4)
    # a rerun finds nothing pending: it compiles and appends nothing
    compiled = run_chunk._cache_size()
    resumed = [ResultWriter(tmp_path / f"together{j}.h5", n, shape, "P2L", {}, mode=WriteMode.RESUME) for j in range(3)]
    assert solve_together(list(zip(problems, configs, resumed)), P2L, prior=prior, num_steps=STEPS)["appended"] == 0
    for w in resumed:
        w.close()
    assert run_chunk._cache_size() == compiled
