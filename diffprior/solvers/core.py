"""The pure core shared by the diffusion solvers: ``init`` and ``step`` on NamedTuples.

Every diffusion solver of this package -- the latent ones (P2L, LDPS, GML-DPS, PSLD, LDIR)
and the pixel-space ones (DPS, DDS, DiffPIR), whose "latent" is the image mapped to
``[-1, 1]`` -- is one reverse pass in which each step

1. optionally tunes the text embedding (:class:`~diffprior.solvers.prompt.PromptTuning`);
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
from jax import lax

from .common import RESIDUAL_SCALE, Forward, Loss, Status, bcast, penalty, residual
from .consistency import AdamHistory, GluingProjection, GradientDescent, NoiseLevelProjection, ProximalProjection
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
        projected: whether this step projected.
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
    """

    prior: Any
    fwd: Forward
    y: jax.Array
    timesteps: jax.Array
    prev_timesteps: jax.Array
    step_size: jax.Array
    keys: jax.Array
    emb0: jax.Array


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

    def objective(z):
        eps, z0, x, r = estimate(prior, fwd, y, z, t, emb)
        obj = penalty(RESIDUAL_SCALE * r, loss)
        if regularizers:
            inv = jnp.where(step_size > 0, 1.0 / jnp.where(step_size > 0, step_size, 1.0), 0.0)
            for reg in regularizers:
                obj = obj + inv * reg(prior, fwd, y, z0, x, loss)
        return obj.sum(), (eps, z0, x, r)

    return jax.grad(objective, has_aux=True)(z)


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
        if self.update is None and self.regularizers:
            raise ValueError("regularizers need a guidance step (update=GradientDescent() or AdamHistory())")

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
        prior, y, fwd = data.prior, data.y, data.fwd
        i = jnp.asarray(i, jnp.int32)
        t, t_prev = data.timesteps[i], data.prev_timesteps[i]
        n = y.shape[0]

        emb, prompt_opt = state.emb, state.prompt_opt
        if self.prompt is not None:
            pt = self.prompt

            def tune():
                return pt.tune(prior, fwd, y, state.z, t, emb, data.step_size, self.loss, prompt_opt)

            def keep():  # a step without tuning: no residuals to report (NaN)
                return emb, jnp.full((n, pt.iters), jnp.nan, jnp.float32), prompt_opt

            emb, prompt_res, prompt_opt = tune() if pt.every == 1 else lax.cond(pt.tunes_at(i), tune, keep)
        else:
            prompt_res = jnp.zeros((n, 0), jnp.float32)

        if self.update is None:
            eps, z0, x, r = estimate(prior, fwd, y, state.z, t, emb)
        else:
            g, (eps, z0, x, r) = guidance(prior, fwd, y, state.z, t, emb, data.step_size, self.loss,
                                          self.regularizers)

        if self.projection is not None:
            num_steps = data.timesteps.shape[0]
            projected = (num_steps - 1 - i) % self.projection.every == 0
            proj, abar = self.projection, prior.schedule.abar(t)
            z0 = lax.cond(projected, lambda: prior.encode(proj.image(fwd, y, x, abar)).astype(z0.dtype), lambda: z0)
        else:
            projected = jnp.asarray(False)

        noise = None
        if self.sampler.stochastic:
            noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(jax.random.fold_in(k, 1), i),
                                                         self.latent_shape))(data.keys)
        z_new = self.sampler.step(prior.schedule, state.z, z0, eps, t, t_prev, noise)
        history = state.history
        if self.update is not None:
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
        return state, StepStats(t=jnp.asarray(-1, jnp.int32), residual=jnp.zeros((n,), jnp.float32),
                                prompt_residual=jnp.zeros((n, k), jnp.float32), projected=jnp.asarray(False),
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
