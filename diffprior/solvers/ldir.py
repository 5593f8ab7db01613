"""LDIR: latent DPS with an Adam-like history gradient (He et al. 2023; P2L paper Eqs. 21-24)."""

from __future__ import annotations

import dataclasses

from .base import SamplerConfig, Solver
from .common import Dataset, Task
from .consistency import AdamHistory


@dataclasses.dataclass(frozen=True, kw_only=True)
class LDIRConfig(SamplerConfig):
    """LDIR hyperparameters.

    Attributes:
        step_size: :math:`\\rho` of the history update: 0.1 for ImageNet motion deblurring,
            0.05 otherwise (P2L App. B.3, grid search there).
        history: the :class:`~diffprior.solvers.consistency.AdamHistory` betas (Adam's defaults,
            "fixed to be identical to the proposed method").
    """

    step_size: float | tuple = 0.05
    history: AdamHistory = AdamHistory()

    @classmethod
    def _paper_preset(cls, task: Task, dataset: Dataset) -> "LDIRConfig":
        """Paper presets: 0.1 for ImageNet motion deblurring, 0.05 otherwise."""
        return cls(step_size=0.1 if (task, dataset) == (Task.DEBLUR_MOTION, Dataset.IMAGENET) else 0.05)


class LDIR(Solver):
    """LDIR: the LDPS gradient smoothed by Adam-like first and second moments (Eqs. 21-24).

    .. math::
        g_t &= \\nabla_{z_t}\\|y - \\mathcal{A}(\\mathcal{D}(\\hat z_0(z_t)))\\|_2 \\\\
        m_t &= \\beta_1 m_{t+1} + (1-\\beta_1)\\, g_t \\\\
        v_t &= \\beta_2 v_{t+1} + (1-\\beta_2)\\, g_t \\odot g_t \\\\
        z_{t-1} &= \\mathrm{DDIM}(\\hat z_0, \\hat\\epsilon) - \\rho\\, \\hat m_t \\oslash (\\sqrt{\\hat v_t} + \\epsilon)

    (hats: Adam's bias correction). Null-text embedding by default. Works with non-linear
    differentiable operators. See :class:`~diffprior.solvers.base.Solver` for the arguments.
    """

    config_class = LDIRConfig
    default_prompt = ""

    def _components(self, config: LDIRConfig) -> dict:
        return {"update": config.history}
