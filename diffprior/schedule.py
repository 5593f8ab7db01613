"""Noise schedules and DDIM / DDPM update math (pure functions of arrays).

Notation (Ho et al. 2020; Song et al. 2021, "DDIM"): :math:`\\bar\\alpha_t` is the cumulative
product of :math:`1-\\beta_t`, and the forward process is

.. math:: z_t = \\sqrt{\\bar\\alpha_t}\\, z_0 + \\sqrt{1-\\bar\\alpha_t}\\, \\epsilon .

Tweedie's formula turns a noise estimate into the posterior mean of :math:`z_0`
(P2L paper Eq. 10):

.. math:: \\hat z_0(z_t) = (z_t - \\sqrt{1-\\bar\\alpha_t}\\,\\hat\\epsilon)/\\sqrt{\\bar\\alpha_t},

and the DDIM update (P2L Eq. 11) with stochasticity :math:`\\eta` is

.. math:: z_{t'} = \\sqrt{\\bar\\alpha_{t'}}\\,\\hat z_0
          + \\sqrt{1-\\bar\\alpha_{t'}-\\sigma_t^2}\\,\\hat\\epsilon + \\sigma_t\\,\\epsilon,\\quad
          \\sigma_t = \\eta\\sqrt{\\tfrac{1-\\bar\\alpha_{t'}}{1-\\bar\\alpha_t}}
          \\sqrt{1-\\tfrac{\\bar\\alpha_t}{\\bar\\alpha_{t'}}} .

:math:`\\eta = 1` gives the DDPM ancestral sampler with the posterior variance.

DiffPIR's re-noising (Zhu et al. 2023, Alg. 1) takes the step from a *corrected* clean
estimate :math:`\\hat z_0` and the noise that it implies,

.. math:: \\hat\\epsilon = \\frac{z_t - \\sqrt{\\bar\\alpha_t}\\,\\hat z_0}{\\sqrt{1-\\bar\\alpha_t}},\\quad
          z_{t'} = \\sqrt{\\bar\\alpha_{t'}}\\,\\hat z_0 + \\sqrt{1-\\bar\\alpha_{t'}}
          \\big(\\sqrt{1-\\zeta}\\,\\hat\\epsilon + \\sqrt{\\zeta}\\,\\epsilon\\big)

(:func:`renoise_step`): :math:`\\zeta = 0` is deterministic DDIM from :math:`(\\hat z_0,
\\hat\\epsilon)`, :math:`\\zeta = 1` forgets :math:`z_t` and draws
:math:`z_{t'} \\sim q(z_{t'} \\mid \\hat z_0)`.
"""

from __future__ import annotations

import enum
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class BetaSchedule(str, enum.Enum):
    """Beta schedules of diffusers' schedulers."""

    LINEAR = "linear"
    SCALED_LINEAR = "scaled_linear"
    COSINE = "squaredcos_cap_v2"


class Prediction(str, enum.Enum):
    """What the network predicts."""

    EPSILON = "epsilon"
    V = "v_prediction"


def make_betas(schedule: BetaSchedule | str, num_train_timesteps: int = 1000,
               beta_start: float = 0.00085, beta_end: float = 0.012) -> np.ndarray:
    """Return the ``(T,)`` float64 betas of a named schedule.

    ``scaled_linear`` (Stable Diffusion) is linear in :math:`\\sqrt\\beta`.
    """
    schedule = BetaSchedule(schedule)
    t = num_train_timesteps
    if schedule is BetaSchedule.LINEAR:
        return np.linspace(beta_start, beta_end, t, dtype=np.float64)
    if schedule is BetaSchedule.SCALED_LINEAR:
        return np.linspace(beta_start ** 0.5, beta_end ** 0.5, t, dtype=np.float64) ** 2
    steps = np.arange(t + 1, dtype=np.float64) / t
    abar = np.cos((steps + 0.008) / 1.008 * np.pi / 2) ** 2
    return np.minimum(1 - abar[1:] / abar[:-1], 0.999)


@struct.dataclass
class Schedule:
    """A discrete diffusion schedule (a pytree: arrays are leaves, settings are static).

    Attributes:
        alphas_cumprod: :math:`\\bar\\alpha_t` for ``t = 0..T-1``, float32 ``(T,)``.
        final_alpha_cumprod: :math:`\\bar\\alpha` used after the last step (1 when
            ``set_alpha_to_one``).
        prediction: :class:`Prediction` of the network.
        steps_offset: offset added to DDIM timesteps (1 for SD v1.x).
    """

    alphas_cumprod: jax.Array
    final_alpha_cumprod: jax.Array
    prediction: Prediction = struct.field(pytree_node=False, default=Prediction.EPSILON)
    steps_offset: int = struct.field(pytree_node=False, default=0)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    @classmethod
    def create(cls, beta_schedule="scaled_linear", num_train_timesteps=1000, beta_start=0.00085,
               beta_end=0.012, prediction="epsilon", set_alpha_to_one=False, steps_offset=1):
        """Build a schedule from diffusers-style settings (defaults: Stable Diffusion v1.x)."""
        betas = make_betas(beta_schedule, num_train_timesteps, beta_start, beta_end)
        abar = np.cumprod(1.0 - betas)
        final = 1.0 if set_alpha_to_one else abar[0]
        return cls(jnp.asarray(abar, jnp.float32), jnp.asarray(final, jnp.float32),
                   Prediction(prediction), int(steps_offset))

    @classmethod
    def from_config_file(cls, path: str | os.PathLike):
        """Read a diffusers ``scheduler/scheduler_config.json``."""
        with open(path) as f:
            d = json.load(f)
        if d.get("trained_betas") is not None:
            raise ValueError(f"{path}: trained_betas schedules are not supported")
        return cls.create(d.get("beta_schedule", "linear"), d.get("num_train_timesteps", 1000),
                          d.get("beta_start", 0.0001), d.get("beta_end", 0.02),
                          d.get("prediction_type", "epsilon"), d.get("set_alpha_to_one", True),
                          d.get("steps_offset", 0))

    def abar(self, t):
        """:math:`\\bar\\alpha_t` for integer ``t``; ``t < 0`` gives the final value."""
        t = jnp.asarray(t)
        return jnp.where(t >= 0, self.alphas_cumprod[jnp.clip(t, 0, None)], self.final_alpha_cumprod)


def ddim_timesteps(num_steps: int, num_train_timesteps: int = 1000, steps_offset: int = 0) -> np.ndarray:
    """Decreasing DDIM timesteps with diffusers' "leading" spacing.

    Returns ``(num_steps,)`` int32: ``[(S-1) r, ..., r, 0] + offset`` with ``r = T // S``.
    """
    if not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_train_timesteps}], got {num_steps}")
    ratio = num_train_timesteps // num_steps
    ts = np.arange(num_steps)[::-1] * ratio + steps_offset
    return np.clip(ts, 0, num_train_timesteps - 1).astype(np.int32)


def _bcast(a, x):
    a = jnp.asarray(a, x.dtype)
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def model_output_to_eps(schedule: Schedule, out, z_t, t):
    """Convert a network output (epsilon or v) to a noise estimate :math:`\\hat\\epsilon`."""
    if schedule.prediction is Prediction.EPSILON:
        return out
    a = _bcast(schedule.abar(t), z_t)
    return jnp.sqrt(a) * out + jnp.sqrt(1 - a) * z_t


def tweedie(schedule: Schedule, z_t, eps, t):
    """Posterior mean :math:`\\hat z_0 = (z_t - \\sqrt{1-\\bar\\alpha_t}\\hat\\epsilon)/\\sqrt{\\bar\\alpha_t}` (Eq. 10)."""
    a = _bcast(schedule.abar(t), z_t)
    return (z_t - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)


def add_noise(schedule: Schedule, z0, noise, t):
    """Forward process sample :math:`z_t = \\sqrt{\\bar\\alpha_t} z_0 + \\sqrt{1-\\bar\\alpha_t}\\epsilon`."""
    a = _bcast(schedule.abar(t), z0)
    return jnp.sqrt(a) * z0 + jnp.sqrt(1 - a) * noise


def ddim_sigma(schedule: Schedule, t, t_prev, eta: float):
    """DDIM noise level :math:`\\sigma_t(\\eta)` between ``t`` and ``t_prev``."""
    a, ap = schedule.abar(t), schedule.abar(t_prev)
    return eta * jnp.sqrt((1 - ap) / (1 - a)) * jnp.sqrt(1 - a / ap)


def ddim_step(schedule: Schedule, z0, eps, t, t_prev, eta: float = 0.0, noise=None):
    """One DDIM update from ``t`` to ``t_prev`` given :math:`\\hat z_0` and :math:`\\hat\\epsilon` (Eq. 11).

    Args:
        schedule: the diffusion schedule.
        z0: Tweedie (or corrected) estimate of the clean latent.
        eps: noise estimate.
        t, t_prev: current and next timestep (``t_prev < 0`` for the final step).
        eta: 0 for deterministic DDIM, 1 for DDPM-like ancestral sampling.
        noise: standard normal array like ``z0``; required when ``eta > 0``.
    """
    ap = _bcast(schedule.abar(t_prev), z0)
    sigma = _bcast(ddim_sigma(schedule, t, t_prev, eta), z0)
    out = jnp.sqrt(ap) * z0 + jnp.sqrt(jnp.clip(1 - ap - sigma ** 2, 0.0, None)) * eps
    if noise is not None:
        out = out + sigma * noise
    elif eta != 0:
        raise ValueError("ddim_step: eta > 0 needs an explicit noise array (derived from a PRNG key)")
    return out


def renoise_step(schedule: Schedule, z_t, z0, t, t_prev, zeta: float, noise=None):
    """DiffPIR's step from ``t`` to ``t_prev`` (Zhu et al. 2023, Alg. 1; module docstring).

    Args:
        schedule: the diffusion schedule.
        z_t: the current sample :math:`z_t`.
        z0: the (data-corrected) clean estimate :math:`\\hat z_0`.
        t, t_prev: current and next timestep (``t_prev < 0`` for the final step).
        zeta: :math:`\\zeta \\in [0, 1]`, the share of fresh noise.
        noise: standard normal array like ``z0``; required when ``zeta > 0``.
    """
    a = _bcast(schedule.abar(t), z0)
    ap = _bcast(schedule.abar(t_prev), z0)
    eps = (z_t - jnp.sqrt(a) * z0) / jnp.sqrt(1 - a)
    mix = jnp.sqrt(1.0 - zeta) * eps
    if noise is not None:
        mix = mix + jnp.sqrt(zeta) * noise
    elif zeta != 0:
        raise ValueError("renoise_step: zeta > 0 needs an explicit noise array (derived from a PRNG key)")
    return jnp.sqrt(ap) * z0 + jnp.sqrt(1 - ap) * mix
