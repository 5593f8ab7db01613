"""P2L on the tiny random-weight Stable-Diffusion-architecture prior (UNet, VAE, CLIP text).

Every test here shares one compiled chunk (same plan and shapes): the tiny UNet's VJP takes
~30 s to compile on two cores. LDPS, GML-DPS, PSLD and LDIR run through the same core and
are exercised on the Gaussian stand-in (test_solvers_gaussian.py).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import operators

from diffprior.solvers import P2L, P2LConfig, PromptTuning, ProximalProjection, SolverFailure, Status

KEY = jax.random.PRNGKey(3)
STEPS, CHUNK = 4, 2


@pytest.fixture(scope="module")
def sr_problem():
    A = operators.Downsample((16, 16, 3), factor=4)  # per image: the solver maps it over the batch
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 3))
    y = jax.vmap(A)(x) + 0.005 * jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 3))
    return A, y


P2L_CONFIG = P2LConfig(step_size=1.0, prompt=PromptTuning(iters=3, lr=1e-2),
                       projection=ProximalProjection(weight=1.0, every=2))


def _p2l(tiny_prior, sr_problem, config=P2L_CONFIG, **kw):
    A, y = sr_problem
    return P2L(y=y, A=A, prior=tiny_prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, config=config, **kw)


def test_p2l_runs_and_prompt_tuning_decreases_its_loss(tiny_prior, sr_problem):
    s = _p2l(tiny_prior, sr_problem)
    x = s.solve()
    assert x.shape == (2, 16, 16, 3) and bool(jnp.all((x >= 0) & (x <= 1)))
    h = s.history()
    assert h.prompt_residual.shape == (STEPS, 2, 3)
    # within every reverse step, K Adam iterations lower ||y - A D(z0_y(z_t, c))||
    assert np.all(h.prompt_residual[:, :, -1] < h.prompt_residual[:, :, 0])
    assert h.projected.tolist() == [False, True, False, True]
    # the tuned embedding moved away from "A high quality photo"
    assert not np.allclose(s.state.emb, tiny_prior.embed(["A high quality photo"]))


def test_p2l_same_key_is_bit_identical_and_resumes_exactly(tiny_prior, sr_problem, tmp_path):
    full = _p2l(tiny_prior, sr_problem)
    x = full.solve()
    assert np.array_equal(x, _p2l(tiny_prior, sr_problem).solve())
    half = _p2l(tiny_prior, sr_problem)
    half.advance(CHUNK)
    half.save_state(tmp_path / "p2l.npz")
    resumed = _p2l(tiny_prior, sr_problem).load_state(tmp_path / "p2l.npz")
    assert np.array_equal(resumed.solve(), x)


def test_p2l_per_sample_prompts_and_a_failing_sample(tiny_prior, sr_problem):
    """Per-sample prompts and step sizes; a sample blown up by a huge step is reported, and
    the other is bit-identical to a run without it (same compiled chunk: no recompilation)."""
    prompts = ["a photo", "a photo of a cat"]
    good = _p2l(tiny_prior, sr_problem, prompt=prompts).solve()
    cfg = dataclasses.replace(P2L_CONFIG, step_size=(1.0, 1e30))
    s = _p2l(tiny_prior, sr_problem, prompt=prompts, config=cfg)
    with pytest.raises(SolverFailure, match="sample 1") as err:
        s.solve()
    assert err.value.failed == (1,) and err.value.status[1] != Status.OK
    np.testing.assert_array_equal(err.value.x[0], good[0])
    assert np.all(np.isnan(s.x[1]))
