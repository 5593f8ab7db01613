"""Solvers on a linear-Gaussian stand-in prior, where every posterior is known exactly.

Also the shell's behaviour (errors, determinism, failure reporting, resume, itstat) on a
problem that compiles in seconds.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _gaussian_prior import Dense, gaussian_problem, posterior_mean

from diffprior.solvers import (GMLDPS, LDIR, LDPS, P2L, PSLD, AdamHistory, Dataset, GluingProjection, GMLDPSConfig,
                               GradientDescent,
                               LDIRConfig, LDPSConfig, Loss, P2LConfig, PromptTuning, ProximalProjection, PSLDConfig,
                               SolverFailure, Status, Task, sample_keys)
from diffprior.solvers.common import make_forward
from diffprior.solvers.core import guidance, tuned_guidance
from diffprior.solvers.prompt import conditional_posterior_mean

SIGMA = 0.05
KEY = jax.random.PRNGKey(7)
STEPS, CHUNK = 6, 2  # shared, so that tests reuse each other's compiled chunks


@pytest.fixture(scope="module")
def problem():
    return gaussian_problem(seed=0, m=20, sigma=SIGMA, n=2)


def _p2l_config(prior, **kw):
    """P2L whose projection weight is the Gaussian posterior's (lambda = sigma^2 / (s^2 q^2))."""
    lam = float(SIGMA ** 2 / (prior.std ** 2 * prior.scale ** 2))
    base = dict(step_size=0.5, eta=1.0, update=AdamHistory(), prompt=PromptTuning(iters=2, lr=1e-2),
                projection=ProximalProjection(weight=lam, every=2, cg_iters=40))
    return P2LConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- analytic checks
def test_projection_equals_closed_form_of_eq16(problem):
    prior, A, _, y = problem
    fwd, yb, _ = make_forward(A, y)
    z0 = prior.mu + 0.5 * jax.random.normal(jax.random.PRNGKey(1), (2, *prior.mu.shape))
    lam = 0.7
    x = prior.decode(z0)
    got = ProximalProjection(weight=lam, cg_iters=40).image(fwd, yb, x)
    M = np.asarray(A.M, np.float64)
    for n in range(2):
        ref = np.linalg.solve(M.T @ M + lam * np.eye(M.shape[1]), M.T @ np.asarray(y[n]) + lam * np.ravel(x[n]))
        np.testing.assert_allclose(np.ravel(got[n]), ref, atol=2e-5)


def test_projection_with_matched_weight_is_the_gaussian_posterior_mean(problem):
    """Eq. 16 with lambda = sigma^2 / (s^2 q^2) from the prior mean is exactly E[z0 | y]."""
    prior, A, _, y = problem
    fwd, yb, _ = make_forward(A, y)
    lam = float(SIGMA ** 2 / (prior.std ** 2 * prior.scale ** 2))
    mu = jnp.broadcast_to(prior.mu, (2, *prior.mu.shape))
    z_proj = prior.encode(ProximalProjection(weight=lam, cg_iters=40).image(fwd, yb, prior.decode(mu)))
    np.testing.assert_allclose(z_proj, posterior_mean(prior, A, y, SIGMA), atol=1e-4)


def test_cg_inner_products_are_per_sample(problem):
    prior, A, _, y = problem
    proj = ProximalProjection(weight=0.3, cg_iters=3)  # few iterations: not converged, so coupling would show
    x = prior.decode(jnp.broadcast_to(prior.mu, (2, *prior.mu.shape)))
    fwd, yb, _ = make_forward(A, y)
    a = proj.image(fwd, yb, x)
    b = proj.image(fwd, yb.at[1].multiply(1e3), x)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    assert not np.allclose(a[1], b[1])


@pytest.mark.parametrize("loss", [Loss.NORM, Loss.SQUARED])
def test_data_consistency_steps_move_towards_the_posterior_mean(problem, loss):
    """At a noise level t, the LDPS gradient step on z_t and the Eq. 18-19 shift of z0 both
    bring the clean estimate closer to the exact E[z0 | z_t, y]."""
    prior, A, z_true, y = problem
    fwd, yb, _ = make_forward(A, y)
    t = 400
    a = prior.schedule.abar(t)
    z_t = jnp.sqrt(a) * z_true + jnp.sqrt(1 - a) * jax.random.normal(jax.random.PRNGKey(2), z_true.shape)
    emb = prior.embed(["", ""])
    g, (eps, z0, x, r) = guidance(prior, fwd, yb, z_t, t, emb, jnp.ones(2), loss)
    s2 = prior.std ** 2
    m_t = prior.mu + jnp.sqrt(a) * s2 / (a * s2 + 1 - a) * (z_t - jnp.sqrt(a) * prior.mu)  # exact E[z0 | z_t]
    np.testing.assert_allclose(z0, m_t, atol=1e-5)
    np.testing.assert_allclose(r, jnp.linalg.norm(yb - jax.vmap(A)(x), axis=1), rtol=1e-5)
    target = posterior_mean(prior, A, y, SIGMA, m0=m_t, v0=s2 * (1 - a) / (a * s2 + 1 - a))

    def dist(z):
        return np.linalg.norm(np.asarray(z - target).reshape(2, -1), axis=1)

    before = dist(z0)
    rho = 1e-2 if loss is Loss.NORM else 1e-3
    after_ldps = dist(prior.x0(z_t - rho * g, t, emb))
    after_shift = dist(conditional_posterior_mean(prior, fwd, yb, z0, jnp.full(2, rho), loss))
    assert np.all(after_ldps < before) and np.all(after_shift < before)


@pytest.mark.parametrize("reset,tune_now,regularized", [(True, True, False), (False, True, True), (True, False, True)])
def test_tuned_guidance_is_k_adam_steps_on_eq17_then_the_guidance(problem, reset, tune_now, regularized):
    """The core's single loop (K tuning turns and a guidance turn through one VJP) gives what the
    algorithm says, written out here: K Adam steps on c of
    ||y - A D(z0 + shift)|| with the Eq. 18-19 shift held constant, then the guidance gradient
    (with its regularisers) at the tuned c; a step that does not tune keeps c and reports NaN."""
    import optax

    from diffprior.solvers import FixedPointRegularizer

    prior, A, z_true, y = problem
    fwd, yb, _ = make_forward(A, y)
    t, rho = 300, jnp.array([0.5, 0.2])
    a = prior.schedule.abar(t)
    z_t = jnp.sqrt(a) * z_true + jnp.sqrt(1 - a) * jax.random.normal(jax.random.PRNGKey(4), z_true.shape)
    emb0 = prior.embed(["", ""]) + 0.1
    pt = PromptTuning(iters=3, lr=0.05, reset=reset)
    regs = (FixedPointRegularizer(weight=0.3),) if regularized else ()
    carried = pt.init(emb0) if not reset else ()
    if not reset:  # a carried state that has already run: its step count and moments matter
        carried = optax.adam(pt.lr).update(jnp.ones_like(emb0), carried, emb0)[1]

    def eq17(c):  # the loss of Alg. 3 at the shifted estimate, the shift a constant
        z0 = prior.x0(z_t, t, c)
        z0c = jax.lax.stop_gradient(z0)
        shift = conditional_posterior_mean(prior, fwd, yb, z0c, rho) - z0c
        r = jnp.linalg.norm((yb - jax.vmap(A)(prior.decode(z0 + shift))).reshape(2, -1), axis=1)
        return (2.0 * r).sum(), r

    c, st, want_res = emb0, (optax.adam(pt.lr).init(emb0) if reset else carried), []
    for _ in range(pt.iters if tune_now else 0):
        (_, r), gc = jax.value_and_grad(eq17, has_aux=True)(c)
        upd, st = optax.adam(pt.lr).update(gc, st, c)
        c, want_res = optax.apply_updates(c, upd), want_res + [r]
    want_g, want_est = guidance(prior, fwd, yb, z_t, t, c, rho, Loss.NORM, regs)

    got_c, got_res, got_st, got_g, got_est = jax.jit(
        lambda z, e: tuned_guidance(pt, True if tune_now else jnp.asarray(False), prior, fwd, yb, z, t, e, rho, Loss.NORM, regs,
                                    carried))(z_t, emb0)
    np.testing.assert_allclose(got_c, c, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got_c, emb0) if tune_now else np.array_equal(got_c, emb0)
    if tune_now:
        np.testing.assert_allclose(got_res, np.stack(want_res, axis=1), rtol=1e-5)
    else:
        assert got_res.shape == (2, 3) and np.all(np.isnan(got_res))
    np.testing.assert_allclose(got_g, want_g, rtol=1e-4, atol=1e-6)
    for got, want in zip(got_est, want_est):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if reset:
        assert got_st == ()
    else:
        jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7), got_st, st)


def test_ldps_samples_concentrate_towards_the_posterior(problem):
    """End to end: the mean of guided samples is closer to E[z0 | y] than that of unguided ones."""
    prior, A, _, y = problem
    y16 = jnp.broadcast_to(y[0], (16, y.shape[1]))
    target = posterior_mean(prior, A, y16[:1], SIGMA)[0]
    dists = {}
    for rho in (0.0, 1.0):
        s = LDPS(y=y16, A=A, prior=prior, key=KEY, num_steps=20, config=LDPSConfig(step_size=rho))
        s.solve()
        dists[rho] = float(np.linalg.norm(np.mean(s.state.z0, axis=0) - target))
    assert dists[1.0] < 0.6 * dists[0.0]


def test_p2l_residual_below_ldps_on_the_same_key(problem):
    prior, A, _, y = problem
    common = dict(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, prompt="")
    ldps = LDPS(**common, config=LDPSConfig(step_size=0.5))
    ldps.solve()
    p2l = P2L(**common, config=_p2l_config(prior, update=GradientDescent()))
    p2l.solve()
    assert np.all(np.asarray(p2l.measurement_residual()) < np.asarray(ldps.measurement_residual()))
    assert np.all(p2l.history().projected[-1])  # the last step projects


def test_less_frequent_prompt_tuning(problem):
    """``PromptTuning(every=m)`` tunes at steps 0, m, 2m, ... and keeps the embedding in between."""
    prior, A, _, y = problem
    embs = []
    cfg = _p2l_config(prior, prompt=PromptTuning(iters=2, lr=1e-2, every=3))
    s = P2L(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=1, config=cfg)
    for _ in range(STEPS):
        s.advance(1)
        embs.append(np.asarray(s.state.emb))
    tuned = np.arange(STEPS) % 3 == 0
    res = s.history().prompt_residual  # (steps, N, K)
    assert np.all(np.isfinite(res[tuned])) and np.all(np.isnan(res[~tuned]))
    for i in range(1, STEPS):
        assert np.array_equal(embs[i], embs[i - 1]) != tuned[i]
    assert cfg.prompt.tuned_steps(STEPS) == tuned.sum()
    with pytest.raises(ValueError, match="every"):
        PromptTuning(every=0)


# ----------------------------------------------------------------------------- every solver, batch, jit
@pytest.mark.parametrize("cls,config", [
    (P2L, None), (LDPS, LDPSConfig(step_size=0.3)), (GMLDPS, GMLDPSConfig(step_size=0.3)),
    (PSLD, PSLDConfig(step_size=0.3)), (LDIR, LDIRConfig()),
])
def test_every_solver_runs_a_batch(problem, cls, config):
    prior, A, _, y = problem
    config = _p2l_config(prior) if cls is P2L else config
    s = cls(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, config=config)
    x = s.solve()
    assert x.shape == (2, 4, 4, 3) and x.dtype == jnp.float32
    assert bool(jnp.all((x >= 0) & (x <= 1)))
    h = s.history()
    assert h.residual.shape == (STEPS, 2) and h.t.tolist() == s.data.timesteps.tolist()
    assert np.all(h.status == Status.OK)


def test_jit_and_unjitted_steps_agree(problem):
    prior, A, _, y = problem
    s = P2L(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, config=_p2l_config(prior))
    state = s.init()
    i = 1  # a step with everything: prompt tuning, Adam history, noise, projection ((6 - 1 - 1) % 2 == 0)
    eager_state, eager_stats = s.step(state, i)
    jit_state, jit_stats = jax.jit(s.step)(state, i)
    assert bool(eager_stats.projected) and bool(jit_stats.projected)
    for a, b in zip(jax.tree_util.tree_leaves((eager_state, eager_stats)), jax.tree_util.tree_leaves((jit_state, jit_stats))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)  # float32 reassociation under XLA fusion


def test_same_key_is_bit_identical_and_another_key_differs(problem):
    prior, A, _, y = problem
    cfg = _p2l_config(prior)
    run = lambda key, chunk: P2L(y=y, A=A, prior=prior, key=key, num_steps=STEPS, chunk_size=chunk, config=cfg).solve()
    a = run(KEY, CHUNK)
    assert np.array_equal(a, run(KEY, CHUNK))
    assert np.array_equal(a, run(KEY, 4))  # chunking (with a padded last chunk) does not change the result
    assert not np.array_equal(a, run(jax.random.PRNGKey(8), CHUNK))
    P2L(y=y, A=A, prior=prior, key=jax.random.key(7), num_steps=STEPS, config=cfg)  # typed keys are accepted


def test_compile_ahead_of_time_changes_nothing(problem):
    prior, A, _, y = problem
    cfg = _p2l_config(prior)
    s = P2L(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, config=cfg)
    assert s.compile() >= 0.0 and s.step_index == 0
    x = s.solve()
    assert np.array_equal(x, P2L(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, config=cfg).solve())


def test_samples_are_independent_of_the_batch(problem):
    prior, A, _, y = problem
    cfg = LDIRConfig()
    both = LDIR(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, config=cfg).solve()
    alone = LDIR(y=y[:1], A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, config=cfg).solve()
    np.testing.assert_allclose(both[:1], alone, rtol=1e-5, atol=1e-6)
    # with per-sample keys, sample 1 solved alone matches sample 1 of the batch
    second = LDIR(y=y[1:], A=A, prior=prior, key=sample_keys(KEY, [1]), num_steps=STEPS, chunk_size=CHUNK,
                  config=cfg).solve()
    np.testing.assert_allclose(both[1:], second, rtol=1e-5, atol=1e-6)
    assert not np.allclose(alone, LDIR(y=y[:1], A=A, prior=prior, key=sample_keys(KEY, [1]), num_steps=STEPS,
                                       chunk_size=CHUNK, config=cfg).solve())
    with pytest.raises(ValueError, match="2 samples"):
        LDIR(y=y, A=A, prior=prior, key=sample_keys(KEY, [0, 1, 2]), num_steps=STEPS, config=cfg)


def test_nonlinear_operator_with_gradient_steps(problem):
    prior, A, _, _ = problem
    M = A.M

    def forward(x):  # batch -> batch, differentiable, not linear
        return jnp.tanh(x.reshape(x.shape[0], -1) @ M.T)

    y = forward(prior.decode(jnp.broadcast_to(prior.mu, (2, *prior.mu.shape))))
    for cls, cfg in ((LDPS, None), (P2L, _p2l_config(prior, projection=None))):
        x = cls(y=y, A=forward, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, image_shape=(4, 4, 3),
                config=cfg).solve()
        assert x.shape == (2, 4, 4, 3)
    with pytest.raises(TypeError, match="LinearOperator"):
        P2L(y=y, A=forward, prior=prior, key=KEY, num_steps=4, image_shape=(4, 4, 3), config=_p2l_config(prior))
    with pytest.raises(TypeError, match="LinearOperator"):
        PSLD(y=y, A=forward, prior=prior, key=KEY, num_steps=4, image_shape=(4, 4, 3))


def test_batched_operator_psld_gluing_and_one_compile_per_plan(problem):
    """An operator on the whole batch (operators.Inpaint with input_shape (N, H, W, C)), PSLD's
    exact-adjoint gluing, and one compilation for all chunks and later solvers of the same plan."""
    import operators

    from diffprior.solvers.core import run_chunk

    prior = problem[0]
    A = operators.Inpaint((2, 4, 4, 3), np.array([[1, 0, 1, 1]] * 4, np.float32))
    x = prior.decode(jnp.broadcast_to(prior.mu, (2, 4, 4, 3)))
    y = A(x)
    before = run_chunk._cache_size()
    outs = [PSLD(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK).solve() for _ in range(2)]
    assert run_chunk._cache_size() == before + 1
    assert np.array_equal(outs[0], outs[1]) and outs[0].shape == (2, 4, 4, 3)


# ----------------------------------------------------------------------------- faults
def test_a_blown_up_sample_is_reported_and_the_others_finish(problem):
    prior, A, _, y = problem
    y3 = jnp.concatenate([y, y[:1]])
    s = LDPS(y=y3, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK,
             config=LDPSConfig(step_size=(0.3, 1e30, 0.3)))
    with pytest.raises(SolverFailure, match="sample 1") as err:
        s.solve()
    e = err.value
    assert e.failed == (1,) and e.status[1] in (Status.DIVERGED, Status.NONFINITE) and e.failed_at == (0,)
    assert np.all(np.isfinite(e.x[np.array([0, 2])])) and np.all(np.isnan(e.x[1]))
    assert s.x is e.x
    ok = LDPS(y=y3, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, config=LDPSConfig(step_size=0.3)).solve()
    np.testing.assert_allclose(e.x[np.array([0, 2])], ok[np.array([0, 2])], rtol=1e-5, atol=1e-6)


def test_status_classification():
    from diffprior.solvers.core import Plan

    plan = Plan(latent_shape=(1, 1, 1), divergence_threshold=10.0)
    z = jnp.array([0.0, jnp.nan, 100.0, 0.0, 0.0]).reshape(5, 1, 1, 1)
    emb = jnp.zeros((5, 1, 1)).at[3].set(jnp.inf)
    old = jnp.array([0, 0, 0, 0, Status.DIVERGED])
    assert plan._classify(old, z, emb).tolist() == [Status.OK, Status.NONFINITE, Status.DIVERGED,
                                                    Status.NONFINITE, Status.DIVERGED]


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors(problem):
    prior, A, _, y = problem
    ok = dict(y=y, A=A, prior=prior, key=KEY, num_steps=4)
    with pytest.raises(ValueError, match=r"y has shape \(2, 19\).*output_shape is \(20,\)"):
        LDPS(**{**ok, "y": y[:, :19]})
    with pytest.raises(ValueError, match=r"NaN or infinity in sample\(s\) \[1\]"):
        LDPS(**{**ok, "y": y.at[1, 3].set(jnp.nan)})
    for bad in ("sd-v1-4", np.zeros((2, 2)), object()):
        with pytest.raises(TypeError, match="prior"):
            LDPS(**{**ok, "prior": bad})
    with pytest.raises(TypeError, match=r"P2L got unexpected keyword argument\(s\) 'rho'.*P2LConfig"):
        P2L(**ok, rho=1.0)
    with pytest.raises(TypeError, match="key"):
        LDPS(**{**ok, "key": 0})
    with pytest.raises(TypeError, match="P2LConfig"):
        P2L(**ok, config=LDPSConfig())
    with pytest.raises(ValueError, match="one value per sample"):
        LDPS(**ok, config=LDPSConfig(step_size=(1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="do not fit the prior|decodes latents"):
        LDPS(**{**ok, "A": Dense(np.ones((20, 4 * 4 * 2)), (4, 4, 2))})
    with pytest.raises(TypeError, match="itstat_options"):
        LDPS(**ok, itstat_options={"display": True, "verbose": 2})
    with pytest.raises(ValueError, match="num_steps"):
        LDPS(**{**ok, "num_steps": 0})
    with pytest.raises(ValueError, match="iters"):
        PromptTuning(iters=0)
    with pytest.raises(ValueError, match="2 prompts for 1 samples"):
        LDPS(**{**ok, "y": y[:1]}, prompt=["a", "b"])


def test_an_empty_batch_is_refused_clearly(problem):
    """The defect: zero samples raised ZeroDivisionError from deep inside."""
    import operators
    from diffprior.solvers import TVADMM

    prior, A, _, y = problem
    for cls in (LDPS, P2L):
        with pytest.raises(ValueError, match=r"y holds no samples \(shape \(0, 20\)\)"):
            cls(y=y[:0], A=A, prior=prior, key=KEY, num_steps=4)
    with pytest.raises(ValueError, match="holds no samples"):
        LDPS(y=y[:0], A=A, prior=prior, key=sample_keys(KEY, np.arange(0)), num_steps=4)
    B = operators.Downsample((8, 8, 3), 2)
    with pytest.raises(ValueError, match="holds no samples"):
        TVADMM(y=np.zeros((0, 4, 4, 3), np.float32), A=B)


# ----------------------------------------------------------------------------- shell
def test_save_state_and_resume_give_the_uninterrupted_result(problem, tmp_path):
    prior, A, _, y = problem
    cfg = _p2l_config(prior)
    make = lambda: P2L(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, config=cfg)
    full = make()
    x_full = full.solve()
    first = make()
    first.advance(3)
    first.save_state(tmp_path / "ckpt.npz")
    second = make().load_state(tmp_path / "ckpt.npz")
    assert second.step_index == 3
    assert np.array_equal(second.solve(), x_full)
    for f in full.history()._fields:
        np.testing.assert_array_equal(getattr(second.history(), f), getattr(full.history(), f))
    other = LDPS(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS)
    with pytest.raises(ValueError, match="does not match this solver"):
        other.load_state(tmp_path / "ckpt.npz")


def test_itstat_table_and_callback(problem, capsys):
    prior, A, _, y = problem
    seen = []
    s = P2L(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, config=_p2l_config(prior),
            itstat_options={"display": True, "period": 2})
    s.solve(callback=lambda solver: seen.append((solver.step_index, solver.current_image().shape)))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["Iter", "Time", "t", "Residual", "Prompt", "Rsdl", "Failed"]
    assert [int(line.split()[0]) for line in lines[2:]] == [0, 2, 4, 5]
    assert seen == [(2, (2, 4, 4, 3)), (4, (2, 4, 4, 3)), (6, (2, 4, 4, 3))]
    P2L(y=y, A=A, prior=prior, key=KEY, num_steps=STEPS, chunk_size=CHUNK, config=_p2l_config(prior),
        progress=True).solve()
    assert "P2L: 100%" in capsys.readouterr().err


def _flat_get(cfg, name):
    for field in ("prompt", "projection"):
        if name.startswith(field + "_"):
            return getattr(getattr(cfg, field), name.removeprefix(field + "_"))
    return getattr(cfg, name)


def test_with_values_sets_nested_components_by_flat_name():
    cfg = P2LConfig().with_values({"prompt_lr": 0.05, "prompt_shift_step": 0.2, "projection_weight": 0.3,
                                   "projection_cg_iters": 9, "eta": 0.5, "step_size": 2.0})
    assert (cfg.prompt.lr, cfg.prompt.shift_step, cfg.prompt.iters) == (0.05, 0.2, P2LConfig().prompt.iters)
    assert (cfg.projection.weight, cfg.projection.cg_iters, cfg.projection.every) == (0.3, 9, 4)
    assert (cfg.eta, cfg.step_size) == (0.5, 2.0)
    assert GMLDPSConfig().with_values({"fixed_point_weight": 0.5}).fixed_point_weight == 0.5
    with pytest.raises(TypeError):
        LDPSConfig().with_values({"prompt_lr": 0.1})  # LDPS's prompt tuning is off (None)
    with pytest.raises(TypeError):
        dataclasses.replace(P2LConfig(), prompt=None).with_values({"prompt_lr": 0.1})


def test_presets():
    for dataset in Dataset:
        for task in Task:
            cfg = P2L.preset(task, dataset)
            assert cfg.prompt.iters in (1, 3, 5) and cfg.projection.every in (3, 4, 5)
            if dataset is not Dataset.CIFAR10:
                assert cfg.projection.weight == (0.1 if task is Task.INPAINT else 1.0)
    assert isinstance(P2LConfig.for_task(Task.DEBLUR_MOTION).update, AdamHistory)
    assert P2LConfig.for_task(Task.DEBLUR_MOTION).step_size == 0.1
    assert P2LConfig.for_task(Task.SR, Dataset.FFHQ, eta=0.3).eta == 0.3
    assert LDIRConfig.for_task(Task.DEBLUR_MOTION).step_size == 0.1
    assert LDIRConfig.for_task(Task.SR).step_size == 0.05
    # the bundled prior's column: the ImageNet preset with the searched values on top
    from diffprior.solvers.tuned import TUNED
    from diffprior.solvers import DDSConfig, DiffPIRConfig, DPSConfig, PnPADMMConfig, TVADMMConfig

    for (solver, task), values in TUNED.items():
        if solver == "LDPS+PT":  # LDPS with prompt tuning: its own preset
            cfg = LDPSConfig.with_prompt_tuning(task)
        else:
            cfg = {"LDPS": LDPSConfig, "P2L": P2LConfig, "LDIR": LDIRConfig, "GMLDPS": GMLDPSConfig, "PSLD": PSLDConfig,
                   "TVADMM": TVADMMConfig, "PnPADMM": PnPADMMConfig, "DPS": DPSConfig, "DDS": DDSConfig,
                   "DiffPIR": DiffPIRConfig}[solver].for_task(task, Dataset.CIFAR10)
        for k, v in values.items():
            assert _flat_get(cfg, k) == v
    assert LDPSConfig.for_task(Task.INPAINT, Dataset.CIFAR10, eta=0.2).eta == 0.2
    assert type(P2LConfig.for_task(Task.DEBLUR_MOTION, Dataset.CIFAR10).update) is type(
        P2LConfig.for_task(Task.DEBLUR_MOTION).update)
    cfg = dataclasses.replace(P2LConfig(), projection=GluingProjection(every=2), prompt=None)  # Table 5 ablation
    assert cfg.prompt is None
