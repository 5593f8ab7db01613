"""The fair-comparison rules: LDPS + prompt tuning, Adam's moments, one eta, the data-fit metric."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from _gaussian_prior import gaussian_problem

from diffprior.solvers import (GMLDPS, LDPS, P2L, PSLD, SOLVERS, Dataset, GMLDPSConfig, GradientDescent, LDPSConfig,
                               P2LConfig, PromptTuning, PSLDConfig, Task)
from diffprior.solvers.tuned import LATENT, tuned_values

KEY = jax.random.PRNGKey(11)
STEPS = 5
PT = PromptTuning(iters=2, lr=1e-2)


@pytest.fixture(scope="module")
def problem():
    return gaussian_problem(seed=1, m=20, sigma=0.05, n=2)


def test_ldps_with_prompt_tuning_is_p2l_without_projection(problem):
    """LDPS + prompt tuning is exactly P2L's gradient step + prompt tuning with no projection,
    from the same prompt: the prompt-only rows differ from LDPS by the tuning alone."""
    prior, A, _, y = problem
    ldps = LDPS(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS,
                config=LDPSConfig(step_size=0.3, eta=0.5, prompt=PT))
    p2l = P2L(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, prompt="",
              config=P2LConfig(step_size=0.3, eta=0.5, update=GradientDescent(), prompt=PT, projection=None))
    np.testing.assert_array_equal(np.asarray(ldps.solve()), np.asarray(p2l.solve()))
    plain = LDPS(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, config=LDPSConfig(step_size=0.3, eta=0.5))
    assert not np.allclose(np.asarray(plain.solve()), np.asarray(ldps.x))  # the tuning does something
    assert ldps.history().prompt_residual.shape == (STEPS, 2, PT.iters)


def test_a_regulariser_of_weight_zero_is_ldps(problem):
    """GML-DPS and PSLD at gamma = 0 (where the searches put GML-DPS on every task and PSLD on SR)
    are LDPS, bit for bit; PSLD at gamma > 0 is not. (GML-DPS's term vanishes on this prior at
    any gamma: its encoder inverts its decoder exactly, so every latent is a fixed point.)"""
    prior, A, _, y = problem
    run = lambda cls, cfg: np.asarray(cls(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, config=cfg).solve())
    ldps = run(LDPS, LDPSConfig(step_size=0.3))
    np.testing.assert_array_equal(run(GMLDPS, GMLDPSConfig(step_size=0.3, fixed_point_weight=0.0)), ldps)
    np.testing.assert_array_equal(run(PSLD, PSLDConfig(step_size=0.3, gluing_weight=0.0)), ldps)
    assert not np.allclose(run(PSLD, PSLDConfig(step_size=0.3, gluing_weight=1.0)), ldps)


def test_carrying_adams_moments_changes_only_later_steps(problem):
    prior, A, _, y = problem
    runs = {}
    for reset in (True, False):
        cfg = LDPSConfig(step_size=0.3, prompt=dataclasses.replace(PT, reset=reset))
        s = LDPS(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, config=cfg)
        s.solve()
        runs[reset] = (np.asarray(s.history().prompt_residual), np.asarray(s.state.emb))
        assert (s.state.prompt_opt == ()) == reset
    (r_reset, e_reset), (r_carry, e_carry) = runs[True], runs[False]
    np.testing.assert_array_equal(r_reset[0], r_carry[0])  # the first step starts Adam afresh either way
    assert not np.allclose(e_reset, e_carry)


def test_every_latent_solver_gets_the_same_eta_per_task():
    """One eta per task for all latent solvers of the bundled prior's presets (the pixel-space
    solvers, which the bundled latent prior cannot run, keep their papers' samplers)."""
    from diffprior.solvers.tuned import _ETA

    for task in Task:
        etas = {name: cls.config_class.for_task(task, Dataset.CIFAR10).eta
                for name, cls in SOLVERS.items() if cls.uses_prior and not cls.pixel_space}
        assert set(etas.values()) == {_ETA[task]}, (task, etas)
        assert LDPSConfig.with_prompt_tuning(task).eta == _ETA[task]
        assert all(tuned_values(name, task)["eta"] == _ETA[task] for name in LATENT)


def test_prompt_only_preset_keeps_ldps_setting():
    for task in Task:
        ldps = LDPSConfig.for_task(task, Dataset.CIFAR10)
        pt = LDPSConfig.with_prompt_tuning(task)
        assert (pt.step_size, pt.eta, pt.loss) == (ldps.step_size, ldps.eta, ldps.loss)
        assert pt.prompt is not None and pt.prompt.shift_step is None  # zeta = LDPS's step
        assert ldps.prompt is None
    with pytest.raises(TypeError, match="PromptTuning"):
        LDPSConfig(prompt="yes")
