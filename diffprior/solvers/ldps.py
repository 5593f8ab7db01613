"""LDPS: latent diffusion posterior sampling (P2L paper App. B.3, Eq. 20)."""

from __future__ import annotations

import dataclasses

from .base import SamplerConfig, Solver
from .common import Dataset, Task
from .consistency import GradientDescent
from .prompt import PromptTuning


@dataclasses.dataclass(frozen=True, kw_only=True)
class LDPSConfig(SamplerConfig):
    """LDPS hyperparameters.

    Attributes:
        step_size: static step :math:`\\rho` on the gradient of the residual norm. The paper
            ("a static step size of ..., widely adopted in literature") lost the value in our
            copy. 1.0 is a stand-in for Stable Diffusion; for the bundled prior
            ``for_task(task, Dataset.CIFAR10)`` gives the searched values
            (:mod:`diffprior.solvers.tuned`).
        prompt: ``None`` (LDPS: the initial prompt stays) or a
            :class:`~diffprior.solvers.prompt.PromptTuning`: LDPS plus P2L's prompt tuning and
            nothing else, the "tuned prompt" row of the paper's Table 1 and the "prompt tuning
            only" row of its Table 5 (:meth:`with_prompt_tuning` gives the searched setting).
        eta, loss: see :class:`~diffprior.solvers.base.SamplerConfig`.
    """

    step_size: float | tuple = 1.0
    prompt: PromptTuning | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.prompt is not None and not isinstance(self.prompt, PromptTuning):
            raise TypeError(f"prompt must be a PromptTuning or None, got {self.prompt!r}")

    @classmethod
    def with_prompt_tuning(cls, task: Task, dataset: Dataset = Dataset.CIFAR10) -> "LDPSConfig":
        """LDPS's preset for ``task`` plus prompt tuning: the paper's "prompt tuning only".

        Everything LDPS's preset sets (step, :math:`\\eta`) stays; the prompt tuning's
        :math:`K` and learning rate are those searched for this setting (``LDPS+PT`` in
        :mod:`diffprior.solvers.tuned`; P2L's own search, made with the projection on, does not
        apply), and its shift :math:`\\zeta` is LDPS's step (``shift_step=None``). Elsewhere than on
        the bundled prior: Table 6's :math:`K` with the provisional learning rate.
        """
        from .p2l import PROVISIONAL, TABLE6
        from .tuned import tuned_values

        task, dataset = Task(task), Dataset(dataset)
        base = cls.for_task(task, dataset)
        k = TABLE6[(Dataset.IMAGENET if dataset is Dataset.CIFAR10 else dataset, task)][-1]
        cfg = dataclasses.replace(base, prompt=PromptTuning(iters=k, lr=PROVISIONAL["prompt_lr"]))
        return cfg.with_values(tuned_values("LDPS+PT", task)) if dataset is Dataset.CIFAR10 else cfg


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
        return {"update": GradientDescent(), "prompt": config.prompt}
