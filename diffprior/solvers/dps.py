r"""DPS: diffusion posterior sampling in pixel space (Chung et al., ICLR 2023).

DPS is LDPS's update (:mod:`diffprior.solvers.ldps`) on a pixel-space prior, whose decoder is
the affine map :math:`\mathcal{D}(z) = (z + 1)/2`: the same core, strategies and
configuration, with DPS's own defaults (DDPM ancestral sampling, 1000 steps, the reference
implementation's step sizes) and a check that the prior is a pixel-space one.

Presets (:meth:`DPSConfig.for_task`): for ``Dataset.FFHQ`` and ``Dataset.IMAGENET`` the step
:math:`\zeta` of the reference implementation's configuration files; for
``Dataset.CIFAR10`` (the bundled pixel prior) the values of a validation search at 100 steps
(:mod:`~diffprior.solvers.tuned`: 3 for SR, motion deblurring and inpainting, 1 for Gaussian
deblurring). The reference values:

==========================  =================
task                        :math:`\zeta`
==========================  =================
super-resolution            0.3
Gaussian / motion deblur    0.3
inpainting                  0.5
==========================  =================

These were chosen at the paper's measurement noise :math:`\sigma_y = 0.05` on ``[-1, 1]``
images (0.025 in our ``[0, 1]`` units), five times the project's 0.005; the step on the
un-squared norm is less sensitive to :math:`\sigma_y` than one on the squared norm would be,
but a prior and noise level of ours may want other values.
"""

from __future__ import annotations

import dataclasses

from .common import Dataset, Task
from .ldps import LDPS, LDPSConfig

#: The reference implementation's step sizes per task (its configuration files).
PAPER_STEP = {Task.SR: 0.3, Task.DEBLUR_GAUSS: 0.3, Task.DEBLUR_MOTION: 0.3, Task.INPAINT: 0.5}


@dataclasses.dataclass(frozen=True, kw_only=True)
class DPSConfig(LDPSConfig):
    """DPS hyperparameters: LDPS's, with DPS's defaults.

    Attributes:
        step_size: :math:`\\zeta`, the step on :math:`\\nabla_{x_t}\\|y - A\\hat x_0\\|` in the
            reference implementation's normalisation (``[-1, 1]`` images and measurement; see
            :class:`DPS`); a scalar or one per sample. Default 0.3 (its super-resolution and
            deblurring value; the presets in the module docstring).
        eta: 1 (default): DDPM ancestral sampling, as DPS; 0 gives deterministic DDIM.
        prompt: ``None`` (default). A :class:`~diffprior.solvers.prompt.PromptTuning` needs a
            text-conditioned pixel prior.
        loss: :class:`~diffprior.solvers.common.Loss` (``NORM``, DPS's un-squared norm).
    """

    step_size: float | tuple = PAPER_STEP[Task.SR]
    eta: float = 1.0

    @classmethod
    def _paper_preset(cls, task: Task, dataset: Dataset) -> "DPSConfig":
        """The reference implementation's step for ``task``."""
        return cls(step_size=PAPER_STEP[task])


class DPS(LDPS):
    """DPS :cite:`chung2023dps`: ancestral sampling with a gradient step on the measurement residual.

    With :math:`x_t` the noisy image on ``[-1, 1]`` (the pixel prior's diffusion space) and
    Tweedie's estimate :math:`\\hat x_0(x_t) = (x_t - \\sqrt{1-\\bar\\alpha_t}\\,
    \\epsilon_\\theta(x_t, t)) / \\sqrt{\\bar\\alpha_t}`, each of the reverse steps is (Alg. 1)

    .. math::
        x'_{t-1} &= \\sqrt{\\bar\\alpha_{t-1}}\\,\\hat x_0 + \\sqrt{1-\\bar\\alpha_{t-1}-\\sigma_t^2}\\,
        \\epsilon_\\theta(x_t, t) + \\sigma_t\\,\\epsilon
        \\qquad (\\sigma_t\\text{: DDPM's posterior std}, \\eta = 1) \\\\
        x_{t-1} &= x'_{t-1} - \\zeta\\,\\nabla_{x_t}\\big\\|y_{\\pm} - A\\,\\hat x_0(x_t)\\big\\|_2

    where :math:`y_\\pm` and :math:`A\\hat x_0` are in the ``[-1, 1]`` units of the reference
    implementation, whose step :math:`\\zeta` is on the *un-squared* norm (the paper's Alg. 1
    writes the squared norm with a step inversely proportional to the residual norm: the same
    direction, the step differing by a constant factor). Our measurement and images are in
    ``[0, 1]``; for a linear :math:`A` the ``[-1, 1]`` residual is exactly twice ours, which
    :data:`~diffprior.solvers.common.RESIDUAL_SCALE` restores, so :math:`\\zeta` keeps the
    reference meaning: this is LDPS's update (:class:`~diffprior.solvers.ldps.LDPS`, the same
    program) with :math:`\\mathcal{D}(z) = (z + 1)/2`.

    Differences from the reference implementation: the residual norm is per sample (the
    reference takes one norm over the whole batch, which couples the samples); the ancestral
    step uses the posterior variance :math:`\\tilde\\beta_t` (DDIM with :math:`\\eta = 1`),
    where the reference uses the variance its ADM networks learned, when they did.

    One network + VJP per step; non-linear differentiable operators work. Defaults: 1000
    steps (:attr:`default_num_steps`), :math:`\\eta = 1`, :math:`\\zeta = 0.3`, no prompt. Needs
    a pixel-space prior (``metadata.latent`` False, where the prior has metadata). See
    :class:`~diffprior.solvers.base.Solver` for the arguments.
    """

    config_class = DPSConfig
    default_prompt = ""
    default_num_steps = 1000
    pixel_space = True
