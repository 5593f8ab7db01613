"""The pixel-space solvers DPS, DDS and DiffPIR on a linear-Gaussian pixel prior.

The prior (:class:`_gaussian_prior.GaussianPixelPrior`) draws ``x0 ~ N(mu, s^2 I)`` directly in
the ``[-1, 1]`` diffusion space, with the pixel prior's maps ``E(x) = 2x - 1`` and
``D(z) = (z + 1)/2`` and an exact Tweedie denoiser, so every conditional posterior is Gaussian
and known in closed form. Notation of the derivations below (diffusion units): at timestep
``t`` with ``a = abar_t``, ``z0 | z_t ~ N(m_t, v_t I)`` with

    m_t = mu + sqrt(a) s^2 / (a s^2 + 1 - a) * (z_t - sqrt(a) mu)      (Tweedie's estimate)
    v_t = s^2 (1 - a) / (a s^2 + 1 - a),

and the measurement is ``y = A x0 + sigma n`` of the ``[0, 1]`` image ``x0 = (z0 + 1)/2``, whose
conditional variance given ``z_t`` is ``v_t / 4``. Conditioning on ``y`` (Gaussian algebra):

    E[x0 | z_t, y] = argmin_x ||y - A x||^2 + (4 sigma^2 / v_t) ||x - (m_t + 1)/2||^2,

i.e. the proximal problem every data step here solves, with the weight ``4 sigma^2 / v_t``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _gaussian_prior import GaussianLatentPrior, GaussianPixelPrior, pixel_problem, posterior_mean
from flax import struct

from diffprior.priors.metadata import PriorMetadata
from diffprior.solvers import (DDS, DPS, LDPS, P2L, SOLVERS, DDSConfig, DiffPIR, DiffPIRConfig, DPSConfig, LDPSConfig,
                               NoiseLevelProjection, P2LConfig, PriorMismatchError, PromptTuning, Status, Task,
                               sample_keys)
from diffprior.solvers.common import RESIDUAL_SCALE, make_forward
from diffprior.solvers.core import guidance

SIGMA = 0.05
KEY = jax.random.PRNGKey(5)
STEPS, CHUNK = 6, 2  # shared, so that tests reuse each other's compiled chunks

CONFIGS = {  # small, fast settings with every stochastic part on
    DPS: DPSConfig(step_size=0.3),
    DDS: DDSConfig(),
    DiffPIR: DiffPIRConfig(noise_sigma=SIGMA),
}


@pytest.fixture(scope="module")
def problem():
    return pixel_problem(seed=0, m=20, sigma=SIGMA, n=3)


def _solver(cls, problem, config=None, **kw):
    prior, A, _, y = problem
    kw = {"y": y, "key": KEY, "num_steps": STEPS, "chunk_size": CHUNK, **kw}
    return cls(A=A, prior=prior, config=CONFIGS[cls] if config is None else config, **kw)


def _noisy(prior, z_true, t, seed=2):
    a = prior.schedule.abar(t)
    return jnp.sqrt(a) * z_true + jnp.sqrt(1 - a) * jax.random.normal(jax.random.PRNGKey(seed), z_true.shape)


def _tweedie_gaussian(prior, z_t, t):
    """``(m_t, v_t)`` of the module docstring, in float64."""
    a = float(prior.schedule.abar(t))
    s2 = float(prior.std) ** 2
    mu = np.asarray(prior.mu, np.float64)
    m = mu + np.sqrt(a) * s2 / (a * s2 + 1 - a) * (np.asarray(z_t, np.float64) - np.sqrt(a) * mu)
    return m, s2 * (1 - a) / (a * s2 + 1 - a)


# ----------------------------------------------------------------------------- DPS
def test_dps_is_ldps_on_a_pixel_prior(problem):
    """DPS shares LDPS's machinery: with LDPS's settings it is the same plan and the same program."""
    ldps = _solver(LDPS, problem, LDPSConfig(step_size=0.3, eta=1.0))
    dps = _solver(DPS, problem)
    assert dps.plan == ldps.plan
    np.testing.assert_array_equal(np.asarray(dps.solve()), np.asarray(ldps.solve()))
    assert (DPSConfig().eta, DPSConfig().step_size, DPS.default_num_steps) == (1.0, 0.3, 1000)


def test_dps_gradient_is_the_reference_normalisation(problem):
    """The guidance gradient is d/dz_t of the residual norm on [-1, 1] images and measurement
    (the reference implementation's units): for a linear A, y_pm = A(2x - 1) + 2 sigma n
    = 2 y - A(1), and ||y_pm - A z0|| = 2 ||y - A D(z0)||."""
    prior, A, z_true, y = problem
    fwd, yb, _ = make_forward(A, y)
    t = 400
    z_t = _noisy(prior, z_true, t)
    emb = prior.embed([""] * 3)
    g, _ = guidance(prior, fwd, yb, z_t, t, emb, jnp.ones(3))
    y_pm = 2 * yb - jax.vmap(A)(jnp.ones_like(z_true))

    def reference(z):
        z0 = prior.eps_and_x0(z, t, emb)[1]
        return jnp.sum(jnp.linalg.norm(y_pm - jax.vmap(A)(z0), axis=1))

    np.testing.assert_allclose(g, jax.grad(reference)(z_t), rtol=1e-4, atol=1e-6)
    assert RESIDUAL_SCALE == 2.0


def test_dps_step_and_samples_move_towards_the_posterior(problem):
    """At t = 400 one DPS step on x_t brings Tweedie's estimate closer to E[x0 | x_t, y]; end to
    end, the mean of 16 DPS samples of one measurement is closer to E[x0 | y] than that of 16
    unguided (zeta = 0) ancestral samples, which are prior samples."""
    prior, A, z_true, y = problem
    fwd, yb, _ = make_forward(A, y)
    t = 400
    z_t = _noisy(prior, z_true, t)
    emb = prior.embed([""] * 3)
    g, (_, z0, _, _) = guidance(prior, fwd, yb, z_t, t, emb, jnp.ones(3))
    m_t, v_t = _tweedie_gaussian(prior, z_t, t)
    np.testing.assert_allclose(z0, m_t, atol=1e-5)
    target = posterior_mean(prior, A, y, SIGMA, m0=jnp.asarray(m_t, jnp.float32), v0=v_t)
    dist = lambda z: np.linalg.norm(np.asarray(z - target).reshape(3, -1), axis=1)
    assert np.all(dist(prior.eps_and_x0(z_t - 0.01 * g, t, emb)[1]) < dist(z0))

    y16 = jnp.broadcast_to(y[0], (16, y.shape[1]))
    post = posterior_mean(prior, A, y16[:1], SIGMA)[0]
    dists = {}
    for zeta in (0.0, 1.0):  # 20 steps take a larger step than the presets' 1000
        s = DPS(y=y16, A=A, prior=prior, key=KEY, num_steps=20, config=DPSConfig(step_size=zeta))
        s.solve()
        dists[zeta] = float(np.linalg.norm(np.mean(s.state.z, axis=0) - post))
    assert dists[1.0] < 0.4 * dists[0.0]


# ----------------------------------------------------------------------------- DDS
def test_dds_cg_step_with_matched_gamma_is_the_exact_conditional_posterior_mean(problem):
    """DDS's CG step solves (I + gamma A^T A) x = x0 + gamma A^T y from Tweedie's x0, i.e. the
    proximal problem with weight 1/gamma in [0, 1] units. With gamma = v_t / (4 sigma^2) the
    weight is the Bayes weight 4 sigma^2 / v_t of the module docstring, so the corrected
    estimate (State.z0) is exactly E[z0 | z_t, y] once CG has converged."""
    prior, A, z_true, y = problem
    i = 2
    probe = _solver(DDS, problem)
    t = int(probe.data.timesteps[i])
    z_t = _noisy(prior, z_true, t)
    m_t, v_t = _tweedie_gaussian(prior, z_t, t)
    s = _solver(DDS, problem, DDSConfig(gamma=v_t / (4 * SIGMA ** 2), cg_iters=40, eta=0.0))
    state, stats = s.step(s.init()._replace(z=z_t), i)
    target = posterior_mean(prior, A, y, SIGMA, m0=jnp.asarray(m_t, jnp.float32), v0=v_t)
    np.testing.assert_allclose(state.z0, target, atol=2e-4)
    assert bool(stats.projected) and not np.allclose(state.z0, m_t, atol=1e-3)  # the step did something


def _reference_run(prior, A, y, z_T, timesteps, data_weight, renoise):
    """The deterministic sampler in float64 from ``z_T``: Tweedie, the exact proximal step with
    weight ``data_weight(abar_t)`` on [0, 1] images, then DDIM (eta = 0) from the network's noise
    (DDS) or from the noise implied by the corrected estimate (DiffPIR, zeta = 0)."""
    abar = np.asarray(prior.schedule.alphas_cumprod, np.float64)
    final = float(prior.schedule.final_alpha_cumprod)
    mu, s2 = np.asarray(prior.mu, np.float64).ravel(), float(prior.std) ** 2
    M = np.asarray(A.M, np.float64)
    z = np.asarray(z_T, np.float64).reshape(z_T.shape[0], -1)
    ts = list(np.asarray(timesteps))
    for t, tp in zip(ts, ts[1:] + [-1]):
        a, ap = abar[t], (abar[tp] if tp >= 0 else final)
        eps = np.sqrt(1 - a) * (z - np.sqrt(a) * mu) / (a * s2 + 1 - a)
        x = ((z - np.sqrt(1 - a) * eps) / np.sqrt(a) + 1) / 2
        lam = data_weight(a)
        x = np.stack([np.linalg.solve(M.T @ M + lam * np.eye(M.shape[1]), M.T @ yn + lam * xn)
                      for yn, xn in zip(np.asarray(y, np.float64), x)])
        z0 = 2 * x - 1
        if renoise:
            eps = (z - np.sqrt(a) * z0) / np.sqrt(1 - a)
        z = np.sqrt(ap) * z0 + np.sqrt(1 - ap) * eps
    return z.reshape(z_T.shape)


def test_dds_deterministic_run_is_its_closed_form(problem):
    """With exact Tweedie every map of a DDS step is affine, so at eta = 0 the output is a
    closed-form affine function of z_T: the float64 composition of Tweedie, the exact
    proximal solve ((A^T A + I/gamma)^{-1}(A^T y + x0/gamma)) and DDIM (_reference_run). The
    solver (float32, CG) must agree for each sample."""
    prior, A, _, y = problem
    s = _solver(DDS, problem, DDSConfig(eta=0.0, gamma=2.0, cg_iters=40))
    z_T = s.state.z
    s.solve()
    ref = _reference_run(prior, A, y, z_T, s.data.timesteps, lambda a: 1 / 2.0, renoise=False)
    np.testing.assert_allclose(s.state.z, ref, atol=2e-4)
    assert np.all(s.history().projected)


# ----------------------------------------------------------------------------- DiffPIR
def test_diffpir_data_step_weight_and_units(problem):
    """rho_t = lambda sigma_n^2 abar_t / (1 - abar_t) with sigma_n in [0, 1] units (the reference
    implementation's convention); the data step is the closed-form proximal solve with it. With
    lambda = 4 (a s^2 + 1 - a) / (a s^2), rho_t is the Bayes weight 4 sigma^2 / v_t, so the step
    gives E[z0 | z_t, y] exactly; as s -> infinity (a flat prior, v_t -> (1 - a)/a) that lambda
    tends to 4: lambda / 4 is the weight in consistent [-1, 1] units (the factor 2)."""
    prior, A, z_true, y = problem
    fwd, yb, _ = make_forward(A, y)
    t = 300
    a = float(prior.schedule.abar(t))
    z_t = _noisy(prior, z_true, t)
    m_t, v_t = _tweedie_gaussian(prior, z_t, t)
    x = jnp.asarray((m_t + 1) / 2, jnp.float32)
    step = NoiseLevelProjection(weight=7.0, noise_sigma=SIGMA, cg_iters=40)
    rho = 7.0 * SIGMA ** 2 * a / (1 - a)
    np.testing.assert_allclose(step.penalty_weight(x, a), np.full(3, rho), rtol=1e-6)
    M = np.asarray(A.M, np.float64)
    ref = [np.linalg.solve(M.T @ M + rho * np.eye(48), M.T @ np.asarray(yn, np.float64) + rho * np.ravel(xn))
           for yn, xn in zip(y, np.asarray(x, np.float64))]
    np.testing.assert_allclose(np.asarray(step.image(fwd, yb, x, a)).reshape(3, -1), ref, atol=2e-5)

    s2 = float(prior.std) ** 2
    lam = 4 * (a * s2 + 1 - a) / (a * s2)
    exact = NoiseLevelProjection(weight=lam, noise_sigma=SIGMA, cg_iters=40)
    got = prior.encode(exact.image(fwd, yb, x, a))
    target = posterior_mean(prior, A, y, SIGMA, m0=jnp.asarray(m_t, jnp.float32), v0=v_t)
    np.testing.assert_allclose(got, target, atol=2e-4)
    # the same through the solver's step (State.z0 is the corrected estimate)
    i = 3
    s = _solver(DiffPIR, problem, DiffPIRConfig(lmbda=4.0, noise_sigma=SIGMA, cg_iters=40, zeta=0.0))
    ti = int(s.data.timesteps[i])
    ai = float(prior.schedule.abar(ti))
    m_i, v_i = _tweedie_gaussian(prior, z_t, ti)
    s = _solver(DiffPIR, problem, DiffPIRConfig(lmbda=4 * (ai * s2 + 1 - ai) / (ai * s2), noise_sigma=SIGMA,
                                                cg_iters=40, zeta=0.0))
    state, _ = s.step(s.init()._replace(z=z_t), i)
    np.testing.assert_allclose(state.z0, posterior_mean(prior, A, y, SIGMA, m0=jnp.asarray(m_i, jnp.float32),
                                                        v0=v_i), atol=2e-4)
    # a flat prior (s = 100): the reference-convention lambda = 4 is the Bayes weight
    flat = prior.replace(std=jnp.float32(100.0))
    m_f, v_f = _tweedie_gaussian(flat, z_t, t)
    assert abs(v_f / ((1 - a) / a) - 1) < 1e-3
    x_f = jnp.asarray((m_f + 1) / 2, jnp.float32)
    got = flat.encode(NoiseLevelProjection(weight=4.0, noise_sigma=SIGMA, cg_iters=40).image(fwd, yb, x_f, a))
    target = posterior_mean(flat, A, y, SIGMA, m0=jnp.asarray(m_f, jnp.float32), v0=v_f)
    np.testing.assert_allclose(got, target, atol=1e-3)
    wrong = flat.encode(NoiseLevelProjection(weight=1.0, noise_sigma=SIGMA, cg_iters=40).image(fwd, yb, x_f, a))
    assert not np.allclose(wrong, target, atol=1e-2)  # lambda = 1 (the factor 2 of the units forgotten) is not


def test_diffpir_deterministic_run_is_its_closed_form(problem):
    """At zeta = 0 DiffPIR is a closed-form affine map of z_T (as DDS, with the weight rho_t and
    the noise recomputed from the corrected estimate: eps = (z_t - sqrt(a) x0) / sqrt(1 - a)).

    noise_sigma = 1 keeps rho_t >= 0.006 here: with a dense random A, float32 rounding in the
    null space of A is divided by rho_t (the system's condition number is ||A||^2 / rho_t), so
    at the problem's sigma (rho_t ~ 2e-5 at the first step) float32 and float64 part by ~1e-2
    (see proximal_image); the affine-map identity does not depend on the weight."""
    prior, A, _, y = problem
    cfg = DiffPIRConfig(lmbda=7.0, zeta=0.0, noise_sigma=1.0, cg_iters=40)
    s = _solver(DiffPIR, problem, cfg)
    z_T = s.state.z
    s.solve()
    ref = _reference_run(prior, A, y, z_T, s.data.timesteps, lambda a: 7.0 * a / (1 - a), renoise=True)
    np.testing.assert_allclose(s.state.z, ref, atol=2e-4)
    assert np.all(s.history().projected)


def test_renoising_mixes_fresh_noise_by_zeta(problem):
    """ReNoiseStep: zeta = 0 is DDIM from the corrected estimate; zeta = 1 draws z_{t'} ~ q(z_{t'} | x0)."""
    from diffprior.solvers.samplers import ReNoiseStep

    prior, _, z_true, _ = problem
    sched = prior.schedule
    z_t, z0 = _noisy(prior, z_true, 500), z_true
    noise = jax.random.normal(jax.random.PRNGKey(9), z0.shape)
    a, ap = sched.abar(500), sched.abar(250)
    eps = (z_t - jnp.sqrt(a) * z0) / jnp.sqrt(1 - a)
    np.testing.assert_allclose(ReNoiseStep(0.0).step(sched, z_t, z0, None, 500, 250),
                               jnp.sqrt(ap) * z0 + jnp.sqrt(1 - ap) * eps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ReNoiseStep(1.0).step(sched, z_t, z0, None, 500, 250, noise),
                               jnp.sqrt(ap) * z0 + jnp.sqrt(1 - ap) * noise, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="noise"):
        ReNoiseStep(0.5).step(sched, z_t, z0, None, 500, 250)
    with pytest.raises(ValueError, match="zeta"):
        ReNoiseStep(1.5)


# ----------------------------------------------------------------------------- every pixel solver
@pytest.mark.parametrize("cls", [DPS, DDS, DiffPIR])
def test_batch_keys_and_determinism(problem, cls):
    """Per-sample keys: a sample's result does not depend on the other samples of its batch (nor
    on its place in it); the same keys give the same bits, other keys another result."""
    prior, A, _, y = problem
    s = _solver(cls, problem)
    both = np.asarray(s.solve())
    assert both.shape == (3, 4, 4, 3) and np.all(np.isfinite(both))
    assert np.all(s.history().status == Status.OK) and s.history().residual.shape == (STEPS, 3)
    # sample 1 (key fold_in(KEY, 1)) with other neighbours, in another place: same result
    y_other = jnp.stack([y[1], 3.0 * y[0], y[2][::-1]])
    other = np.asarray(_solver(cls, problem, key=sample_keys(KEY, [1, 7, 8]), y=y_other).solve())
    np.testing.assert_allclose(other[0], both[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(other[1], both[0])
    assert np.array_equal(both, np.asarray(_solver(cls, problem).solve()))
    assert not np.allclose(both, np.asarray(_solver(cls, problem, key=jax.random.PRNGKey(6)).solve()))


@pytest.mark.parametrize("cls", [DPS, DDS, DiffPIR])
def test_jit_eager_and_compile_agree(problem, cls):
    s = _solver(cls, problem)
    state = s.init()
    eager_state, eager_stats = s.step(state, 1)
    jit_state, jit_stats = jax.jit(s.step)(state, 1)
    for a, b in zip(jax.tree_util.tree_leaves((eager_state, eager_stats)),
                    jax.tree_util.tree_leaves((jit_state, jit_stats))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    compiled = _solver(cls, problem)
    assert compiled.compile() >= 0.0 and compiled.step_index == 0
    assert np.array_equal(np.asarray(compiled.solve()), np.asarray(_solver(cls, problem).solve()))


def _no_vjp(z):
    return z


_no_vjp = jax.custom_jvp(_no_vjp)


@_no_vjp.defjvp
def _no_vjp_jvp(primals, tangents):
    raise AssertionError("differentiated through the network")


@struct.dataclass
class _NoGradPixelPrior(GaussianPixelPrior):
    """The pixel prior whose network may not be differentiated (any JVP/VJP raises when traced)."""

    def eps_and_x0(self, z, t, emb):
        return GaussianPixelPrior.eps_and_x0(self, _no_vjp(z), t, emb)


def test_dds_and_diffpir_compute_no_vjp(problem):
    """Tracing a step of DDS or DiffPIR never differentiates the network (DPS's does: the check can fail)."""
    prior, A, _, y = problem
    nograd = _NoGradPixelPrior(prior.mu, prior.std, prior.schedule, prior.metadata)
    for cls in (DDS, DiffPIR, DPS):
        s = cls(y=y, A=A, prior=nograd, key=KEY, num_steps=STEPS, config=CONFIGS[cls])
        trace = lambda: jax.eval_shape(lambda st: s.step(st, 1), s.init())
        if cls is DPS:
            with pytest.raises(AssertionError, match="differentiated through the network"):
                trace()
        else:
            assert trace()[0].z.shape == (3, 4, 4, 3)


# ----------------------------------------------------------------------------- presets and defaults
def test_presets_and_default_steps(problem):
    assert [DPSConfig.for_task(t).step_size for t in Task] == [0.3, 0.3, 0.3, 0.5]
    assert all(DPSConfig.for_task(t).eta == 1.0 and DPSConfig.for_task(t).prompt is None for t in Task)
    assert all(DDSConfig.for_task(t) == DDSConfig(eta=0.85, gamma=1.0, cg_iters=5) for t in Task)
    assert [(DiffPIRConfig.for_task(t).lmbda, DiffPIRConfig.for_task(t).zeta) for t in Task] == [
        (7.0, 0.25), (7.0, 0.3), (7.0, 0.3), (1.0, 1.0)]
    assert DiffPIRConfig().noise_sigma == 0.005
    assert DiffPIRConfig.for_task(Task.SR, noise_sigma=0.01).noise_sigma == 0.01
    prior, A, _, y = problem
    for cls, steps in ((DPS, 1000), (DDS, 50), (DiffPIR, 100)):
        assert cls(y=y, A=A, prior=prior, key=KEY).num_steps == steps == cls.default_num_steps
        assert SOLVERS[cls.__name__.lower()] is cls and cls.pixel_space
    s = DiffPIR(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, config=Task.INPAINT)
    assert s.plan.sampler.zeta == 1.0 and s.plan.projection.weight == 1.0 and s.plan.update is None
    with pytest.raises(ValueError, match="zeta"):
        DiffPIRConfig(zeta=1.5)
    with pytest.raises(ValueError, match="noise_sigma"):
        DiffPIRConfig(noise_sigma=-0.1)
    with pytest.raises(ValueError, match="gamma"):
        DDSConfig(gamma=0.0)
    with pytest.raises(ValueError, match="eta"):
        DDSConfig(eta=2.0)


def _cli_settings(tmp_path, sigma: float, *argv):
    """``(args, (solver class, config, task, prior path, hyperparameters))`` of ``diffprior solve``
    on a one-sample 4x SR problem file with noise ``sigma``, without solving anything."""
    import argparse

    from diffprior.commands import solve
    from diffprior.io import read_problem, write_problem

    path = tmp_path / "p.h5"
    if not path.exists():
        write_problem(path, np.zeros((1, 8, 8, 3), np.float32),
                      {"class": "Downsample", "input_shape": [32, 32, 3], "factor": 4, "method": "average"}, sigma,
                      task="sr4-avg")
    parser = argparse.ArgumentParser()
    solve.add_parser(parser.add_subparsers())
    args = parser.parse_args(["solve", str(path), "--out", str(tmp_path / "r.h5"), *argv])
    return args, solve._settings(args, read_problem(path))


PIXEL_FIXTURE = Path(__file__).parent / "fixtures" / "ddpm_tiny" / "cifar"


def test_cli_uses_the_solvers_default_steps(tmp_path):
    for name, steps in (("dds", 50), ("diffpir", 100), ("dps", 1000), ("ldps", 1000)):
        prior = ["--prior", str(PIXEL_FIXTURE)] if name != "ldps" else []
        args, settings = _cli_settings(tmp_path, 0.005, "--solver", name, *prior)
        assert args.steps == steps and settings[-1]["num_steps"] == steps


def test_cli_default_prior_follows_the_solvers_kind(tmp_path, monkeypatch):
    """Without ``--prior`` a pixel solver takes the bundled pixel prior, a latent one the bundled
    latent prior; a bundled prior that is not installed is named in a one-line error."""
    import diffprior
    from diffprior.commands import CLIError

    folders = {"latent": diffprior.bundled_path("latent"), "pixel": PIXEL_FIXTURE}
    monkeypatch.setattr(diffprior, "bundled_path", lambda kind="latent": folders[kind])
    assert _cli_settings(tmp_path, 0.005, "--solver", "dds")[1][3] == PIXEL_FIXTURE
    assert _cli_settings(tmp_path, 0.005, "--solver", "ldps")[1][3] == folders["latent"]
    folders["pixel"] = tmp_path / "absent"
    with pytest.raises(CLIError, match=f"the bundled pixel prior is not installed \\(expected {tmp_path / 'absent'}\\)"):
        _cli_settings(tmp_path, 0.005, "--solver", "dps")


def test_cli_gives_diffpir_the_problem_files_noise_level(tmp_path):
    """DiffPIR's sigma_n comes from the problem file unless ``--set noise_sigma=`` says otherwise."""
    for extra, want in (([], 0.02), (["--set", "noise_sigma=0.01"], 0.01)):
        _, (_, config, *_, hyper) = _cli_settings(tmp_path, 0.02, "--solver", "diffpir", "--prior",
                                                  str(PIXEL_FIXTURE), *extra)
        assert config.noise_sigma == want
        assert hyper["config"]["noise_sigma"] == want  # recorded, so a resume with another level is refused


# ----------------------------------------------------------------------------- bad input
@struct.dataclass
class _LatentWithMetadata(GaussianLatentPrior):
    """The latent Gaussian stand-in with a latent, text-conditioned prior's metadata."""

    metadata: PriorMetadata = struct.field(pytree_node=False, default=PriorMetadata(name="gauss-latent"))


def test_a_pixel_solver_refuses_a_latent_prior(problem):
    _, A, _, y = problem
    latent = _LatentWithMetadata.create(jax.random.PRNGKey(0), latent_shape=(4, 4, 3))
    for cls in (DPS, DDS, DiffPIR):
        with pytest.raises(PriorMismatchError) as err:
            cls(y=y, A=A, prior=latent, key=KEY, num_steps=STEPS)
        msg = str(err.value)
        assert "\n" not in msg and isinstance(err.value, TypeError)
        assert msg.startswith(f"{cls.__name__}: this pixel-space solver needs a pixel-space prior "
                              "(metadata.latent False), got the text-conditioned latent prior 'gauss-latent' "
                              "(_LatentWithMetadata)"), msg
    # without metadata (a minimal stand-in) the prior is taken as it is
    bare = GaussianLatentPrior.create(jax.random.PRNGKey(0), latent_shape=(4, 4, 3))
    for cls in (DPS, DDS, DiffPIR):
        cls(y=y, A=A, prior=bare, key=KEY, num_steps=STEPS, config=CONFIGS[cls])


def test_latent_only_options_refuse_a_pixel_prior(problem):
    prior, A, _, y = problem
    ok = dict(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS)
    with pytest.raises(PriorMismatchError, match=r"^P2L: the projection onto the encoder's range needs a latent prior "
                                                 r"\(metadata.latent True\), got the unconditional pixel-space prior "
                                                 r"'gaussian-pixel' \(GaussianPixelPrior\); set projection=None"):
        P2L(**ok, config=P2LConfig(prompt=None))
    with pytest.raises(PriorMismatchError, match=r"^P2L: prompt tuning needs a text-conditioned prior "
                                                 r"\(metadata.conditioning True\), got the unconditional pixel-space"):
        P2L(**ok)
    with pytest.raises(PriorMismatchError, match=r"^LDPS: prompt tuning needs a text-conditioned prior"):
        LDPS(**ok, config=LDPSConfig(prompt=PromptTuning()))
    with pytest.raises(PriorMismatchError, match=r"^DPS: prompt tuning needs a text-conditioned prior"):
        DPS(**ok, config=DPSConfig(prompt=PromptTuning()))
    # what needs no encoder and no text runs on a pixel prior (P2L's gradient step alone is DPS-like)
    P2L(**ok, config=P2LConfig(prompt=None, projection=None))
    LDPS(**ok)


def test_dds_and_diffpir_need_a_linear_operator(problem):
    prior, A, _, _ = problem
    M = A.M

    def forward(x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ M.T)

    y = forward(prior.decode(jnp.broadcast_to(prior.mu, (2, 4, 4, 3))))
    for cls in (DDS, DiffPIR):
        with pytest.raises(TypeError, match=f"{cls.__name__}: .*needs the adjoint A.adj"):
            cls(y=y, A=forward, prior=prior, key=KEY, num_steps=STEPS, image_shape=(4, 4, 3))
    x = DPS(y=y, A=forward, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, image_shape=(4, 4, 3)).solve()
    assert x.shape == (2, 4, 4, 3)


def test_cli_refuses_a_pixel_solver_on_a_latent_prior(tmp_path, capsys):
    """``diffprior solve --solver dps`` with a latent prior: one line, exit 2, nothing written."""
    from pathlib import Path

    from diffprior.cli import main
    from diffprior.io import write_problem

    v1 = Path(__file__).parent / "fixtures" / "sd_tiny" / "v1"
    x = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
    write_problem(tmp_path / "p.h5", x.reshape(1, 4, 4, 4, 4, 3).mean(axis=(2, 4)),
                  {"class": "Downsample", "input_shape": [16, 16, 3], "factor": 4, "method": "average"}, 0.005,
                  task="sr4-avg")
    out = tmp_path / "r.h5"
    rc = main(["solve", str(tmp_path / "p.h5"), "--solver", "dps", "--prior", str(v1), "--steps", "2",
               "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "DPS: this pixel-space solver needs a pixel-space prior (metadata.latent False), got the " \
           "text-conditioned latent prior 'v1' (LatentDiffusionPrior)" in err[0]
    assert not out.exists()
