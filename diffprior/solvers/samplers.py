"""Reverse-step strategies: how a solver goes from :math:`z_t` to :math:`z_{t'}` once it has a
clean estimate :math:`\\hat z_0` (after any data-consistency correction) and the network's
noise estimate :math:`\\hat\\epsilon`.

Small frozen dataclasses (hashable: part of a solver's static
:class:`~diffprior.solvers.core.Plan`) with one pure method, ``step``:

* :class:`DDIMStep` -- the DDIM update (P2L Eq. 11) from :math:`(\\hat z_0, \\hat\\epsilon)`
  with stochasticity :math:`\\eta`; every solver but DiffPIR;
* :class:`ReNoiseStep` -- DiffPIR's re-noising (Zhu et al. 2023, Alg. 1), which recomputes
  the noise from the corrected :math:`\\hat z_0` and mixes in a share :math:`\\zeta` of fresh
  noise.

The update math itself is in :mod:`diffprior.schedule` (:func:`~diffprior.schedule.ddim_step`,
:func:`~diffprior.schedule.renoise_step`).
"""

from __future__ import annotations

import dataclasses

from ..schedule import ddim_step, renoise_step
from .config import register_component


@register_component
@dataclasses.dataclass(frozen=True)
class DDIMStep:
    """The DDIM step (P2L Eq. 11; :func:`~diffprior.schedule.ddim_step`).

    .. math::
        z_{t'} = \\sqrt{\\bar\\alpha_{t'}}\\,\\hat z_0
        + \\sqrt{1-\\bar\\alpha_{t'}-\\sigma_t^2}\\,\\hat\\epsilon + \\sigma_t\\,\\epsilon,
        \\qquad \\sigma_t = \\eta\\,\\sigma_t^{\\mathrm{DDPM}}

    with the network's :math:`\\hat\\epsilon = \\epsilon_\\theta(z_t, t, c)` even when
    :math:`\\hat z_0` was corrected (P2L's and DDS's projections).

    Attributes:
        eta: :math:`\\eta \\in [0, 1]`: 0 deterministic, 1 DDPM ancestral sampling.
    """

    eta: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")

    @property
    def stochastic(self) -> bool:
        """Whether the step draws noise (so the core derives it from the sample keys)."""
        return bool(self.eta)

    def step(self, schedule, z_t, z0, eps, t, t_prev, noise=None):
        return ddim_step(schedule, z0, eps, t, t_prev, eta=self.eta, noise=noise)


@register_component
@dataclasses.dataclass(frozen=True)
class ReNoiseStep:
    """DiffPIR's re-noising step (Zhu et al. 2023, Alg. 1; :func:`~diffprior.schedule.renoise_step`).

    .. math::
        \\hat\\epsilon = \\frac{z_t - \\sqrt{\\bar\\alpha_t}\\,\\hat z_0}{\\sqrt{1-\\bar\\alpha_t}},
        \\qquad
        z_{t'} = \\sqrt{\\bar\\alpha_{t'}}\\,\\hat z_0 + \\sqrt{1-\\bar\\alpha_{t'}}
        \\big(\\sqrt{1-\\zeta}\\,\\hat\\epsilon + \\sqrt{\\zeta}\\,\\epsilon\\big)

    :math:`\\hat z_0` is the clean estimate after the data step, so :math:`\\hat\\epsilon` (the
    noise that takes it to :math:`z_t`) is not the network's; the network's noise estimate is
    not used.

    Attributes:
        zeta: :math:`\\zeta \\in [0, 1]`, the share of fresh noise (0: deterministic).
    """

    zeta: float = 0.3

    def __post_init__(self):
        if not 0.0 <= self.zeta <= 1.0:
            raise ValueError(f"zeta must be in [0, 1], got {self.zeta}")

    @property
    def stochastic(self) -> bool:
        """Whether the step draws noise."""
        return bool(self.zeta)

    def step(self, schedule, z_t, z0, eps, t, t_prev, noise=None):
        return renoise_step(schedule, z_t, z0, t, t_prev, self.zeta, noise)
