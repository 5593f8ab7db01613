"""PSLD: LDPS with the "gluing" regulariser (Rout et al. 2023; P2L paper Eq. 26)."""

from __future__ import annotations

import dataclasses

from .base import SamplerConfig, Solver
from .consistency import GluingRegularizer, GradientDescent


@dataclasses.dataclass(frozen=True, kw_only=True)
class PSLDConfig(SamplerConfig):
    """PSLD hyperparameters.

    Attributes:
        step_size: :math:`\\rho` ("static step size of ...": value lost in our copy). 1.0 is a
            stand-in for Stable Diffusion; for the bundled prior ``for_task(task,
            Dataset.CIFAR10)`` gives LDPS's searched step (:mod:`diffprior.solvers.tuned`).
        gluing_weight: :math:`\\gamma` ("as advised in rout2023solving": value lost in our copy;
            0.1 stands in for Stable Diffusion; for the bundled prior ``for_task(task,
            Dataset.CIFAR10)`` gives the searched 0.01 on SR and 0.1 on inpainting
            (:mod:`diffprior.solvers.tuned`).
    """

    step_size: float | tuple = 1.0
    gluing_weight: float = 0.1


class PSLD(Solver):
    """PSLD: LDPS plus a pull of :math:`\\hat z_0` towards the encoding of the measurement-glued image (Eq. 26).

    .. math::
        z_{t-1} = \\mathrm{DDIM}(\\hat z_0, \\hat\\epsilon)
        - \\rho\\,\\nabla_{z_t}\\|y - \\mathcal{A}(\\mathcal{D}(\\hat z_0))\\|_2
        - \\gamma\\,\\nabla_{z_t}\\big\\|\\hat z_0 - \\mathcal{E}\\big(A^T y + (I - A^T A)\\,
        \\mathcal{D}(\\hat z_0)\\big)\\big\\|_2

    The gluing is an orthogonal projection onto :math:`\\{x: Ax = y\\}` only when
    :math:`AA^T = I` (inpainting); it needs a ``scico.linop.LinearOperator`` (exact adjoint).
    One UNet + decoder + encoder VJP per step. Null-text embedding by default.
    """

    config_class = PSLDConfig
    default_prompt = ""

    def _components(self, config: PSLDConfig) -> dict:
        return {"update": GradientDescent(), "regularizers": (GluingRegularizer(weight=config.gluing_weight),)}
