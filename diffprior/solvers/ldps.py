"""LDPS: latent diffusion posterior sampling (P2L paper App. B.3, Eq. 20)."""

from __future__ import annotations

import dataclasses

from .base import SamplerConfig, Solver
from .consistency import GradientDescent


@dataclasses.dataclass(frozen=True, kw_only=True)
class LDPSConfig(SamplerConfig):
    """LDPS hyperparameters.

    Attributes:
        step_size: static step :math:`\\rho` on the gradient of the residual norm. The paper
            ("a static step size of ..., widely adopted in literature") lost the value in our
            copy. 1.0 is a stand-in for Stable Diffusion; for the bundled prior
            ``for_task(task, Dataset.CIFAR10)`` gives the searched values
            (:mod:`diffprior.solvers.tuned`).
        eta, loss: see :class:`~diffprior.solvers.base.SamplerConfig`.
    """

    step_size: float | tuple = 1.0


class LDPS(Solver):
    """Latent DPS: DDIM in the latent space with a measurement-gradient step (Eq. 20).

    .. math::
        z_{t-1} = \\mathrm{DDIM}(\\hat z_0, \\hat\\epsilon)
        - \\rho\\,\\nabla_{z_t}\\|y - \\mathcal{A}(\\mathcal{D}(\\hat z_0(z_t)))\\|_2,
        \\qquad \\hat z_0(z_t) = \\frac{z_t - \\sqrt{1-\\bar\\alpha_t}\\,
        \\epsilon_\\theta(z_t, t, c_\\varnothing)}{\\sqrt{\\bar\\alpha_t}}

    with the null-text embedding :math:`c_\\varnothing` by default (``prompt=""``), as in the
    works the paper compares with. One UNet + decoder VJP per step. Works with non-linear
    differentiable operators. See :class:`~diffprior.solvers.base.Solver` for the arguments.
    """

    config_class = LDPSConfig
    default_prompt = ""

    def _components(self, config: LDPSConfig) -> dict:
        return {"update": GradientDescent()}
