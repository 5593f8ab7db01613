"""The pure core shared by the diffusion solvers: ``init`` and ``step`` on NamedTuples.

Every diffusion solver of this package -- the latent ones (P2L, LDPS, GML-DPS, PSLD, LDIR)
and the pixel-space ones (DPS, DDS, DiffPIR), whose "latent" is the image mapped to
``[-1, 1]`` -- is one reverse pass in which each step

1. optionally tunes the text embedding (:class:`~diffprior.solvers.prompt.PromptTuning`),
   in a loop whose last turn is step 2's VJP (:func:`tuned_guidance`: one compiled VJP of the
   network for both);
2. evaluates :math:`\\hat\\epsilon, \\hat z_0 = \\hat z_0(z_t, c)` (Tweedie, Eq. 10) and, for
   the solvers with a guidance step, the gradient :math:`g = \\nabla_{z_t}\\big[\\rho'\\|y -
   \\mathcal{A}(\\mathcal{D}(\\hat z_0))\\| + \\text{regularisers}\\big]` in one UNet + decoder
   VJP (without one, ``update=None``: DDS, DiffPIR, a forward pass only, no VJP);
3. optionally replaces :math:`\\hat z_0` by a projection (every :math:`\\gamma` steps,
   under ``lax.cond`` so skipped steps cost nothing);
4. takes the reverse step (:mod:`~diffprior.solvers.samplers`: DDIM, Eq. 11, or DiffPIR's
   re-noising) from :math:`\\hat z_0` and subtracts :math:`\\rho` times the latent update's
   direction (GD or Adam-like history), if any.

A :class:`Plan` (hashable: strategies and static settings) holds the recipe; :class:`Data`
(a pytree: prior, forward model, measurement, timesteps, per-sample step sizes and keys) the
traced inputs. The forward model is data: its arrays (kernels, masks) are traced, so
operators that differ only in their arrays share one compiled program. Per-sample status is a value: a sample whose latent or embedding turns
non-finite, or whose latent leaves ``|z| <= divergence_threshold``, is frozen at its last
good state and flagged, while the others go on.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from .common import RESIDUAL_SCALE, Forward, Loss, Status, bcast, penalty, residual
from .consistency import (AdamHistory, GluingProjection, GradientDescent, NoiseLevelProjection, ProximalProjection,
                          SelectUpdate)
from .prompt import PromptTuning
from .samplers import DDIMStep, ReNoiseStep


class State(NamedTuple):
    """Solver state between reverse steps (all arrays; leading axis N = samples).

    Attributes:
        z: current latent :math:`z_t`, ``(N, h, w, c)``.
        z0: the last clean-latent estimate used by DDIM (after projection), ``(N, h, w, c)``.
        emb: text embedding, ``(N, L, D)`` (tuned by P2L, fixed otherwise).
        history: state of the latent update (``()`` for GD or no update, optax Adam state for history).
        status: per-sample :class:`~diffprior.solvers.common.Status` codes, ``(N,)`` int32.
        prompt_opt: Adam's state of the prompt tuning when its moments carry over between
            steps (``PromptTuning(reset=False)``), else ``()``.
    """

    z: jax.Array
    z0: jax.Array
    emb: jax.Array
    history: Any
    status: jax.Array
    prompt_opt: Any = ()


class StepStats(NamedTuple):
    """What one reverse step reports (stacked over steps by ``Solver.history()``).

    Attributes:
        t: diffusion timestep of the step (-1 for padding steps that did nothing).
        residual: :math:`\\|y - \\mathcal{A}(\\mathcal{D}(\\hat z_0(z_t, c)))\\|` before the
            update, per sample, ``[0, 1]`` units.
        prompt_residual: the residual at :math:`\\hat z_{0|y}` at each prompt-tuning
            iteration, ``(N, K)`` (``K = 0`` without prompt tuning).
        projected: whether this step projected (per sample, ``(N,)``, when the samples' projection
            periods differ: :mod:`~diffprior.solvers.mixing`).
        status: per-sample status after the step.
    """

    t: jax.Array
    residual: jax.Array
    prompt_residual: jax.Array
    projected: jax.Array
    status: jax.Array


class Data(NamedTuple):
    """Traced inputs of the core (a pytree).

    Attributes:
        prior: the latent prior (a pytree).
        fwd: the forward model (:class:`~diffprior.solvers.common.Forward`, a pytree).
        y: measurement ``(N, ...)``.
        timesteps, prev_timesteps: ``(S,)`` int32 DDIM timesteps and their successors (-1 last).
        step_size: per-sample :math:`\\rho`, ``(N,)``.
        keys: per-sample PRNG keys (``fold_in(key, n)``), so sample ``n`` is independent of N.
        emb0: initial text embedding ``(N, L, D)``.
        mix: per-sample settings of a batch that mixes configurations
            (:class:`~diffprior.solvers.mixing.Mix`), or ``None``.
    """

    prior: Any
    fwd: Forward
    y: jax.Array
    timesteps: jax.Array
    prev_timesteps: jax.Array
    step_size: jax.Array
    keys: jax.Array
    emb0: jax.Array
    mix: Any = None


def estimate(prior, fwd: Forward, y, z, t, emb):
    """Tweedie's estimate and what the step reports, from one network evaluation (no VJP).

    Returns:
        ``(eps, z0, x, r)``: noise estimate, Tweedie estimate :math:`\\hat z_0` (Eq. 10),
        decoded image :math:`\\mathcal{D}(\\hat z_0)` and per-sample residual
        :math:`\\|y - \\mathcal{A}(\\mathcal{D}(\\hat z_0))\\|` (``[0, 1]`` units).
    """
    eps, z0 = prior.eps_and_x0(z, t, emb)
    x = prior.decode(z0)
    return eps, z0, x, residual(fwd, y, x)


def guidance_loss(prior, fwd: Forward, y, z, t, emb, step_size, loss: Loss = Loss.NORM, regularizers=(),
                  prompt: PromptTuning | None = None, tuning=None, zeta=None):
    """The guidance loss summed over the batch, and the estimates it passes through.

    .. math::
        \\ell(z_t, c) = \\sum_n \\ell\\big(s\\,\\|y - \\mathcal{A}(\\mathcal{D}(\\hat z_0(z_t, c)))\\|\\big)
        + \\rho^{-1} \\textstyle\\sum_k R_k(\\hat z_0)

    (see :func:`guidance`). With ``prompt`` and a traced boolean ``tuning``: where ``tuning``
    is true, the loss of prompt tuning instead (Eq. 17), the residual at P2L's shifted estimate
    :math:`\\hat z_{0|y}` (Eqs. 18-19, :meth:`PromptTuning.shifted`) and no regularisers; the
    two share one graph (:func:`tuned_guidance`). ``tuning`` may also be per sample, ``(N,)``
    (a batch mixing prompt-tuning lengths), and ``zeta`` the per-sample shift step ``(N,)``
    replacing the prompt tuning's.

    Returns:
        ``(loss, (eps, z0, x, r))``: noise estimate, Tweedie estimate :math:`\\hat z_0`, the
        decoded image of the (shifted, where tuning) estimate and per-sample residual.
    """
    eps, z0 = prior.eps_and_x0(z, t, emb)
    z_in = z0
    per_sample = tuning is not None and jnp.ndim(tuning) == 1
    if tuning is not None:
        zeta = prompt.zeta(step_size) if zeta is None else zeta

        def shift():
            z_y = prompt.shifted(prior, fwd, y, z0, zeta, loss)
            return jnp.where(bcast(tuning, z0), z_y, z0) if per_sample else z_y

        z_in = lax.cond(jnp.any(tuning), shift, lambda: z0)
    x = prior.decode(z_in)
    r = residual(fwd, y, x)
    obj = penalty(RESIDUAL_SCALE * r, loss)
    if regularizers:
        inv = jnp.where(step_size > 0, 1.0 / jnp.where(step_size > 0, step_size, 1.0), 0.0)

        def regularized(obj):
            for reg in regularizers:
                obj = obj + inv * reg(prior, fwd, y, z0, x, loss)
            return obj

        if tuning is None:
            obj = regularized(obj)
        elif per_sample:
            obj = jnp.where(tuning, obj, regularized(obj))
        else:
            obj = lax.cond(tuning, lambda: obj, lambda: regularized(obj))
    return obj.sum(), (eps, z0, x, r)


def guidance(prior, fwd: Forward, y, z, t, emb, step_size, loss: Loss = Loss.NORM, regularizers=()):
    """The guidance gradient and the estimates it passes through, from one UNet + decoder VJP.

    .. math::
        g = \\nabla_{z_t}\\Big[\\ell\\big(s\\,\\|y - \\mathcal{A}(\\mathcal{D}(\\hat z_0(z_t, c)))\\|\\big)
        + \\rho^{-1} \\textstyle\\sum_k R_k(\\hat z_0)\\Big]

    with :math:`s` = :data:`~diffprior.solvers.common.RESIDUAL_SCALE`, :math:`\\ell` the
    :class:`~diffprior.solvers.common.Loss` and :math:`R_k` the regularisers, weighted
    :math:`1/\\rho` so that after the step :math:`-\\rho g` each weighs its own :math:`\\gamma`.

    Returns:
        ``g`` and ``(eps, z0, x, r)``: noise estimate, Tweedie estimate, decoded image
        :math:`\\mathcal{D}(\\hat z_0)` and per-sample residual (``[0, 1]`` units).
    """
    return jax.grad(lambda z: guidance_loss(prior, fwd, y, z, t, emb, step_size, loss, regularizers),
                    has_aux=True)(z)


def tuned_guidance(prompt: PromptTuning, tune_now, prior, fwd: Forward, y, z, t, emb, step_size,
                   loss: Loss = Loss.NORM, regularizers=(), opt_state=(), iters=None, zeta=None):
    """Prompt tuning (P2L Alg. 3) and then the guidance gradient, as K + 1 turns of one VJP.

    Turn :math:`k < K` is one prompt-tuning iteration: the gradient of Eq. 17's loss
    :math:`\\|y - \\mathcal{A}(\\mathcal{D}(\\hat z_{0|y}(z_t, c_k)))\\|` (Eqs. 18-19)
    and an Adam step :math:`c_{k+1} = c_k - \\mathrm{Adam}(\\nabla_c)`. Turn :math:`K` is
    :func:`guidance` at the tuned :math:`c^*_t = c_K`. Every turn differentiates the same
    function (:func:`guidance_loss`, with the shift and the regularisers switched by
    ``lax.cond`` on the turn) with respect to both :math:`z_t` and :math:`c`, keeping the
    gradient it needs: the numbers are those of K tuning iterations followed by
    :func:`guidance`, but the program holds one VJP of the network and the decoder instead of
    two, which is what XLA spends its compilation time on. The unused half of each gradient
    costs little (the backward pass reaches the embedding through the cross-attention layers
    and the latent through the input layers; the rest is shared). ``tune_now`` False (a step
    that :meth:`PromptTuning.tunes_at` skips; a traced boolean, or the constant ``True`` when
    every step tunes) runs turn :math:`K` only.

    Per sample (a batch mixing configurations, :mod:`~diffprior.solvers.mixing`): ``iters``
    ``(N,)`` gives each sample its own :math:`K_n \\le K` (turn :math:`k` moves sample
    :math:`n`'s embedding and Adam state only while :math:`k < K_n`; Adam's shared step count
    is then the same as alone, since a sample's turns are the first :math:`K_n`), and ``zeta``
    its shift step.

    Returns:
        ``(c*, prompt_residuals, opt_state, g, (eps, z0, x, r))``: the tuned embedding, the
        residual :math:`\\|y - \\mathcal{A}(\\mathcal{D}(\\hat z_{0|y}))\\|` at each tuning
        iteration before its update, ``(N, K)`` (NaN where the step does not tune), Adam's state
        to carry (``()`` when its moments reset every step), and :func:`guidance`'s outputs.
    """
    k_iters, n = prompt.iters, z.shape[0]
    opt = prompt.optimizer()
    grad = jax.grad(lambda z, c, tuning: guidance_loss(prior, fwd, y, z, t, c, step_size, loss, regularizers,
                                                       prompt, tuning, zeta), argnums=(0, 1), has_aux=True)
    x_shape = jax.eval_shape(prior.decode, z)
    start = (emb, opt.init(emb) if prompt.reset else opt_state, jnp.zeros_like(z),
             (jnp.zeros_like(z), jnp.zeros_like(z), jnp.zeros(x_shape.shape, x_shape.dtype),
              jnp.zeros((n,), y.dtype)))

    def turn(carry, k):
        c, st, _, _ = carry
        tuning = k < k_iters if iters is None else k < iters
        (gz, gc), est = grad(z, c, tuning)
        est = jax.tree_util.tree_map(lambda a, b: a.astype(b.dtype), est, carry[3])
        upd, st_new = opt.update(gc, st, c)

        def sel(a, b):
            if iters is not None and a.ndim >= 1 and a.shape[0] == n:
                return jnp.where(bcast(tuning, a), a, b)
            return jnp.where(jnp.any(tuning), a, b)

        def keep(new, old):  # the embedding and Adam's state move on (a sample's) tuning turns only
            return jax.tree_util.tree_map(sel, new, old)

        r = est[3] if iters is None else jnp.where(tuning | (k == k_iters), est[3], jnp.nan)
        return (keep(optax.apply_updates(c, upd), c), keep(st_new, st), gz, est), r

    def idle(carry, k):  # a tuning turn of a step that does not tune
        return carry, jnp.full((n,), jnp.nan, y.dtype)

    def body(carry, k):
        if tune_now is True:  # every step tunes: no branch
            return turn(carry, k)
        return lax.cond(tune_now | (k == k_iters), turn, idle, carry, k)

    (c, st, g, est), rs = lax.scan(body, start, jnp.arange(k_iters + 1))
    return c, rs[:k_iters].T, (() if prompt.reset else st), g, est


@dataclasses.dataclass(frozen=True)
class Plan:
    """A diffusion solver as a recipe of strategies (hashable; a static ``jit`` argument).

    Attributes:
        latent_shape: ``(h, w, c)`` of one latent (of one image, for a pixel prior).
        update: :class:`GradientDescent`, :class:`AdamHistory`, or ``None``: no guidance step
            and no VJP through the network (DDS, DiffPIR; then ``loss`` and ``regularizers``
            are unused).
        loss: how the residual enters the guidance loss.
        sampler: the reverse step, :class:`~diffprior.solvers.samplers.DDIMStep` (its
            :math:`\\eta`) or :class:`~diffprior.solvers.samplers.ReNoiseStep` (DiffPIR).
        prompt: :class:`PromptTuning` or ``None``.
        regularizers: extra guidance terms (GML-DPS, PSLD).
        projection: :class:`ProximalProjection`, :class:`NoiseLevelProjection`,
            :class:`GluingProjection` or ``None``.
        divergence_threshold: a sample whose latent exceeds this magnitude is DIVERGED.
    """

    latent_shape: tuple
    update: GradientDescent | AdamHistory | None = GradientDescent()
    loss: Loss = Loss.NORM
    sampler: DDIMStep | ReNoiseStep = DDIMStep()
    prompt: PromptTuning | None = None
    regularizers: tuple = ()
    projection: ProximalProjection | NoiseLevelProjection | GluingProjection | None = None
    divergence_threshold: float = 1e3

    def __post_init__(self):
        if self.update is None and (self.regularizers or self.prompt is not None):
            raise ValueError("regularizers and prompt tuning need a guidance step (update=GradientDescent() or "
                             "AdamHistory())")

    # ------------------------------------------------------------------ init
    def init(self, data: Data) -> State:
        """Initial state: :math:`z_T \\sim \\mathcal{N}(0, I)` per sample from ``fold_in(key_n, 0)``."""
        z = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), self.latent_shape))(data.keys)
        history = () if self.update is None else self.update.init(z)
        return State(z=z, z0=jnp.zeros_like(z), emb=data.emb0, history=history,
                     status=jnp.zeros((z.shape[0],), jnp.int32),
                     prompt_opt=self.prompt.init(data.emb0) if self.prompt is not None else ())

    # ------------------------------------------------------------------ step
    def step(self, data: Data, state: State, i) -> tuple[State, StepStats]:
        """One reverse step ``i`` (0-based; timestep ``data.timesteps[i]``); pure, jittable."""
        prior, y, fwd, mix = data.prior, data.y, data.fwd, data.mix
        i = jnp.asarray(i, jnp.int32)
        t, t_prev = data.timesteps[i], data.prev_timesteps[i]
        n = y.shape[0]

        emb, prompt_opt = state.emb, state.prompt_opt
        if self.prompt is not None:  # K tuning iterations, then the guidance, through one VJP
            emb, prompt_res, prompt_opt, g, (eps, z0, x, r) = tuned_guidance(
                self.prompt, True if self.prompt.every == 1 else self.prompt.tunes_at(i), prior, fwd, y, state.z, t, emb,
                data.step_size, self.loss, self.regularizers, prompt_opt,
                iters=None if mix is None else mix.prompt_iters, zeta=None if mix is None else mix.zeta)
        elif self.update is None:
            prompt_res = jnp.zeros((n, 0), jnp.float32)
            eps, z0, x, r = estimate(prior, fwd, y, state.z, t, emb)
        else:
            prompt_res = jnp.zeros((n, 0), jnp.float32)
            g, (eps, z0, x, r) = guidance(prior, fwd, y, state.z, t, emb, data.step_size, self.loss,
                                          self.regularizers)

        if self.projection is not None:
            num_steps = data.timesteps.shape[0]
            every = self.projection.every if mix is None or mix.proj_every is None else mix.proj_every
            projected = (num_steps - 1 - i) % every == 0  # () or, with per-sample periods, (N,)
            proj, abar = self.projection, prior.schedule.abar(t)
            kw = {} if mix is None or mix.proj_weight is None else {"weight": mix.proj_weight}

            def project(z0):
                z0p = prior.encode(proj.image(fwd, y, x, abar, **kw)).astype(z0.dtype)
                return z0p if projected.ndim == 0 else jnp.where(bcast(projected, z0), z0p, z0)

            z0 = lax.cond(jnp.any(projected), project, lambda z0: z0, z0)
        else:
            projected = jnp.asarray(False)

        noise = None
        if self.sampler.stochastic:
            noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(jax.random.fold_in(k, 1), i),
                                                         self.latent_shape))(data.keys)
        z_new = self.sampler.step(prior.schedule, state.z, z0, eps, t, t_prev, noise)
        history = state.history
        if self.update is not None:
            if isinstance(self.update, SelectUpdate):
                direction, history = self.update.direction(g, state.history, mix.update)
            else:
                direction, history = self.update.direction(g, state.history)
            z_new = z_new - bcast(data.step_size, z_new) * direction

        status = self._classify(state.status, z_new, emb)
        new = _mask(status == Status.OK, State(z_new, z0, emb, history, status, prompt_opt), state, n)
        new = new._replace(status=status)
        return new, StepStats(t=t.astype(jnp.int32), residual=r, prompt_residual=prompt_res,
                              projected=jnp.asarray(projected), status=status)

    def skip(self, data: Data, state: State, i) -> tuple[State, StepStats]:
        """A padding step: the state unchanged and empty statistics (same shapes as :meth:`step`)."""
        n = data.y.shape[0]
        k = 0 if self.prompt is None else self.prompt.iters
        per_sample = self.projection is not None and data.mix is not None and data.mix.proj_every is not None
        return state, StepStats(t=jnp.asarray(-1, jnp.int32), residual=jnp.zeros((n,), jnp.float32),
                                prompt_residual=jnp.zeros((n, k), jnp.float32),
                                projected=jnp.zeros((n,), bool) if per_sample else jnp.asarray(False),
                                status=state.status)

    def _classify(self, old_status, z, emb):
        n = z.shape[0]
        flat = z.reshape(n, -1)
        finite = jnp.all(jnp.isfinite(flat), axis=1) & jnp.all(jnp.isfinite(emb.reshape(n, -1)), axis=1)
        big = jnp.max(jnp.abs(jnp.where(jnp.isfinite(flat), flat, 0.0)), axis=1) > self.divergence_threshold
        code = jnp.where(~finite, int(Status.NONFINITE), jnp.where(big, int(Status.DIVERGED), int(Status.OK)))
        return jnp.where(old_status != Status.OK, old_status, code).astype(jnp.int32)


def _mask(ok, new, old, n: int):
    """Per-sample select: leaves with a leading axis of length ``n`` keep ``old`` where not ``ok``."""

    def sel(a, b):
        if getattr(a, "ndim", 0) >= 1 and a.shape[0] == n:
            return jnp.where(bcast(ok, a), a, b)
        return a

    return jax.tree_util.tree_map(sel, new, old)


@functools.partial(jax.jit, static_argnums=0)
def run_chunk(plan: Plan, data: Data, state: State, steps, valid):
    """Run the steps ``steps`` (``valid`` False: padding) with ``lax.scan``; compiled once per plan and chunk length."""

    def body(s, iv):
        i, v = iv
        return lax.cond(v, lambda s: plan.step(data, s, i), lambda s: plan.skip(data, s, i), s)

    return lax.scan(body, state, (steps, valid))


@functools.partial(jax.jit, static_argnums=0)
def init_state(plan: Plan, data: Data) -> State:
    """Jitted :meth:`Plan.init`."""
    return plan.init(data)


@jax.jit
def decode_images(prior, z):
    """Latents -> images clipped to ``[0, 1]``."""
    return jnp.clip(prior.decode(z), 0.0, 1.0)
