"""Operators are data: per-sample kernels and masks, traced through the compiled solver.

A batch of images with one motion kernel (or mask) each is one operator and one compiled
program; a second batch whose operator differs only in its arrays reuses that program; and
each sample's result is the one it gets when solved alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _gaussian_prior import GaussianLatentPrior

import operators as op
from diffprior.solvers import LDPS, P2L, LDPSConfig, P2LConfig, PromptTuning, ProximalProjection, sample_keys
from diffprior.solvers.core import run_chunk

KEY = jax.random.PRNGKey(11)
N, H, W, C = 4, 4, 4, 3  # the Gaussian stand-in's 4 x 4 x 3 "images"
STEPS, CHUNK = 6, 3


@pytest.fixture(scope="module")
def prior():
    return GaussianLatentPrior.create(jax.random.PRNGKey(0))


def _kernels(seed: int, n: int = N) -> np.ndarray:
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    return np.stack([op.motion_kernel(k, 5, 0.5) for k in keys])


def _measure(A, seed: int):
    x = jnp.asarray(np.random.default_rng(seed).random(A.input_shape, dtype=np.float32))
    return A(x) + 0.01 * jax.random.normal(jax.random.PRNGKey(seed), A.output_shape)


def _ldps(prior, A, y, keys):
    return LDPS(y=y, A=A, prior=prior, key=keys, num_steps=STEPS, chunk_size=CHUNK,
                config=LDPSConfig(step_size=0.5, eta=1.0))


@pytest.mark.parametrize("kind", ["blur", "inpaint"])
def test_new_arrays_do_not_recompile_and_samples_match_solving_alone(prior, kind):
    def make(seed, n=N):
        if kind == "blur":
            return op.Blur((n, H, W, C), _kernels(seed, n))
        masks = np.stack([np.asarray(op.random_mask(k, (H, W), 0.5)) for k in jax.random.split(
            jax.random.PRNGKey(seed), n)])
        return op.Inpaint((n, H, W, C), masks)

    keys = sample_keys(KEY, np.arange(N))
    A1 = make(1)
    x1 = _ldps(prior, A1, _measure(A1, 1), keys).solve()
    compiled = run_chunk._cache_size()
    A2 = make(2)  # a new operator instance with other arrays of the same shapes
    x2 = _ldps(prior, A2, _measure(A2, 2), keys).solve()
    assert run_chunk._cache_size() == compiled, "a new kernel/mask of the same shape recompiled the solver"
    assert not np.allclose(x1, x2)

    y2 = _measure(A2, 2)
    for i in range(N):  # sample i alone: its own operator on a batch of one, its own key
        Ai = A2.take([i])
        alone = _ldps(prior, Ai, y2[i:i + 1], keys[i:i + 1]).solve()
        np.testing.assert_allclose(alone[0], x2[i], rtol=1e-5, atol=1e-6)


def test_ahead_of_time_compilation_with_per_sample_operators(prior):
    """``Solver.compile()`` lowers with abstract leaves: operators must not compute with them."""
    keys = sample_keys(KEY, np.arange(N))
    masks = (np.random.default_rng(0).random((N, H, W)) > 0.5).astype(np.float32)
    for A in (op.Inpaint((N, H, W, C), masks), op.Blur((N, H, W, C), _kernels(4))):
        assert _ldps(prior, A, _measure(A, 4), keys).compile() > 0


def test_per_sample_operator_through_p2l_projection(prior):
    """The projection's CG and the prompt tuning see each sample's own kernel."""
    A = op.Blur((N, H, W, C), _kernels(5), "circular")
    y = _measure(A, 5)
    cfg = P2LConfig(step_size=0.3, prompt=PromptTuning(iters=2, lr=1e-2),
                    projection=ProximalProjection(weight=0.1, every=2, cg_iters=10))
    keys = sample_keys(KEY, np.arange(N))
    xb = P2L(y=y, A=A, prior=prior, key=keys, num_steps=STEPS, chunk_size=CHUNK, config=cfg).solve()
    for i in (0, N - 1):
        xi = P2L(y=y[i:i + 1], A=A.take([i]), prior=prior, key=keys[i:i + 1], num_steps=STEPS,
                 chunk_size=CHUNK, config=cfg).solve()
        # float32 rounding differs between a batch of N and of one (FFT blur, CG, prompt tuning): 2e-6 seen
        np.testing.assert_allclose(xi[0], xb[i], rtol=1e-5, atol=5e-6)


def test_per_sample_operators_equal_the_stack_of_single_ones():
    ks = _kernels(3, 3)
    masks = (np.random.default_rng(0).random((3, 6, 5)) > 0.4).astype(np.float32)
    x = jnp.asarray(np.random.default_rng(1).random((3, 6, 5, 2), dtype=np.float32))
    for boundary in ("same", "circular"):
        A = op.Blur((3, 6, 5, 2), ks, boundary)
        for i in range(3):
            np.testing.assert_allclose(A(x)[i], op.Blur((6, 5, 2), ks[i], boundary)(x[i]), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(A.adj(x)[i], op.Blur((6, 5, 2), ks[i], boundary).adj(x[i]),
                                       rtol=1e-5, atol=1e-6)
    B = op.Inpaint((3, 6, 5, 2), masks)
    np.testing.assert_array_equal(np.asarray(B(x)), np.asarray(x) * masks[..., None])
    # take / sample select per-sample parameters and keep shared ones
    assert B.take([2, 0]).mask.tolist() == masks[[2, 0]].tolist()
    np.testing.assert_array_equal(np.asarray(B.sample(1).mask), masks[1])
    assert B.sample(1).input_shape == (6, 5, 2)
    S = op.Blur((3, 6, 5, 2), ks[0])
    assert S.per_sample == () and S.take([0, 1]).input_shape == (2, 6, 5, 2)
    # a description round-trips with its sample axis
    R = op.from_description(op.describe(A))
    np.testing.assert_array_equal(np.asarray(R(x)), np.asarray(A(x)))


def test_per_sample_parameters_must_match_the_batch():
    with pytest.raises(ValueError, match=r"input_shape must be \(N, H, W, C\) with N = 3"):
        op.Blur((6, 5, 2), _kernels(0, 3))
    with pytest.raises(ValueError, match=r"3 per-sample values.*N = 2"):
        op.Blur((2, 6, 5, 2), _kernels(0, 3))
    with pytest.raises(ValueError, match=r"2 per-sample values.*N = 4"):
        op.Inpaint((4, 6, 5, 2), np.ones((2, 6, 5)))
    with pytest.raises(IndexError, match="out of range"):
        op.Blur((3, 6, 5, 2), _kernels(0, 3)).take([3])


def test_a_second_problem_with_other_kernels_reuses_the_program(prior, tmp_path):
    """Through the runner (as ``diffprior solve`` runs a problem file): a second problem whose
    per-sample kernels differ compiles nothing, and its samples do not depend on the batch size."""
    from diffprior.io import Problem, ResultWriter, read_result
    from diffprior.runner import solve_problem

    cfg = LDPSConfig(step_size=0.5, eta=1.0)

    def problem(seed):
        A = op.Blur((N, H, W, C), _kernels(seed))
        return Problem(measurement=np.asarray(_measure(A, seed)), operator=op.describe(A), noise_sigma=0.01)

    def run(p, name, batch):
        with ResultWriter(tmp_path / name, N, (H, W, C), "LDPS", {}) as w:
            solve_problem(p, LDPS, cfg, w, prior=prior, num_steps=STEPS, batch=batch, metrics=None)
        return read_result(tmp_path / name).reconstruction

    run(problem(1), "a.h5", 2)
    compiled = run_chunk._cache_size()
    x2 = run(problem(2), "b.h5", 2)
    assert run_chunk._cache_size() == compiled
    np.testing.assert_allclose(run(problem(2), "c.h5", 4), x2, rtol=1e-5, atol=1e-6)
