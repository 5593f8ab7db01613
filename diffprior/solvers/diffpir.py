r"""DiffPIR: denoising diffusion models for plug-and-play image restoration (Zhu et al. 2023).

Half-quadratic splitting inside the reverse diffusion: each step denoises (Tweedie), solves a
proximal data problem whose weight follows the noise level
(:class:`~diffprior.solvers.consistency.NoiseLevelProjection`, the shared CG solve of P2L's
projection and DDS), and re-noises the corrected estimate with a share :math:`\zeta` of fresh
noise (:class:`~diffprior.solvers.samplers.ReNoiseStep`). No gradient through the network.

Presets (:meth:`DiffPIRConfig.for_task`): the reference implementation's per-task scripts
for ``Dataset.FFHQ`` and ``Dataset.IMAGENET``; for ``Dataset.CIFAR10`` (the bundled pixel
prior) :math:`\lambda` and :math:`\zeta` come from a validation search at 100 steps that starts
from them (:mod:`~diffprior.solvers.tuned`). The reference values:

==========================  ===============  ===============  =====================================
task                        :math:`\lambda`  :math:`\zeta`    source
==========================  ===============  ===============  =====================================
Gaussian / motion deblur    7                0.3              the deblurring script's setting
super-resolution            7                0.25             the SR script (:math:`\zeta = 0.25`;
                                                              it sweeps :math:`\lambda` over 2-12,
                                                              we take the deblurring value)
inpainting                  1                1.0              the inpainting script (noise-free)
==========================  ===============  ===============  =====================================

:math:`\lambda` is in the reference implementation's convention (the measurement noise in
``[0, 1]`` units over the ``[-1, 1]`` diffusion noise level; see
:class:`~diffprior.solvers.consistency.NoiseLevelProjection`). The reference scripts run
100 steps for deblurring and SR (20 for inpainting) on a quadratic timestep spacing; we run
the shell's uniform spacing, 100 steps by default.
"""

from __future__ import annotations

import dataclasses

from .base import Solver
from .common import Dataset, Task
from .config import SolverConfig
from .consistency import NoiseLevelProjection
from .samplers import ReNoiseStep

#: (lambda, zeta) per task, from the reference implementation's scripts (module docstring).
PAPER = {Task.DEBLUR_GAUSS: (7.0, 0.3), Task.DEBLUR_MOTION: (7.0, 0.3), Task.SR: (7.0, 0.25),
         Task.INPAINT: (1.0, 1.0)}

#: The project's measurement noise level in [0, 1] units (the papers' 0.01 on [-1, 1]).
DEFAULT_NOISE_SIGMA = 0.005


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffPIRConfig(SolverConfig):
    """DiffPIR hyperparameters (defaults: the deblurring setting).

    Attributes:
        lmbda: :math:`\\lambda` of :math:`\\rho_t = \\lambda\\sigma_n^2/\\bar\\sigma_t^2` (7), in the
            reference implementation's convention (:math:`\\sigma_n` in ``[0, 1]`` units; in
            consistent ``[-1, 1]`` units the weight is :math:`\\lambda/4`).
        zeta: :math:`\\zeta \\in [0, 1]`, the share of fresh noise in the re-noising (0.3).
        noise_sigma: :math:`\\sigma_n`, the measurement noise std in ``[0, 1]`` units, an input
            of the solver (default 0.005, the project's noise level; set it to the noise of
            your measurement).
        cg_iters: CG iterations of the data step (20; one is exact for masks and average
            pooling, blur needs more to approach the reference implementation's closed form).
    """

    lmbda: float = PAPER[Task.DEBLUR_GAUSS][0]
    zeta: float = PAPER[Task.DEBLUR_GAUSS][1]
    noise_sigma: float = DEFAULT_NOISE_SIGMA
    cg_iters: int = 20

    def __post_init__(self):
        if not 0.0 <= self.zeta <= 1.0:
            raise ValueError(f"zeta must be in [0, 1], got {self.zeta}")
        if not self.lmbda > 0 or not self.noise_sigma >= 0 or int(self.cg_iters) < 1:
            raise ValueError(f"DiffPIR needs lmbda > 0, noise_sigma >= 0 and cg_iters >= 1, got lmbda={self.lmbda}, "
                             f"noise_sigma={self.noise_sigma}, cg_iters={self.cg_iters}")

    @classmethod
    def _paper_preset(cls, task: Task, dataset: Dataset) -> "DiffPIRConfig":
        """The reference implementation's :math:`(\\lambda, \\zeta)` for ``task``."""
        lmbda, zeta = PAPER[task]
        return cls(lmbda=lmbda, zeta=zeta)


class DiffPIR(Solver):
    """DiffPIR :cite:`zhu2023diffpir`: denoise, solve the data proximal problem, re-noise.

    With :math:`x_t` the noisy image on ``[-1, 1]`` (the pixel prior's diffusion space) and
    :math:`\\bar\\sigma_t = \\sqrt{1-\\bar\\alpha_t}/\\sqrt{\\bar\\alpha_t}`, each reverse step is
    (Alg. 1)

    .. math::
        \\hat x_0 &= \\big(x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon_\\theta(x_t, t)\\big)/\\sqrt{\\bar\\alpha_t} \\\\
        \\hat x_0 &\\leftarrow \\arg\\min_x \\|y - Ax\\|_2^2 + \\rho_t\\,\\|x - \\hat x_0\\|_2^2,
        \\qquad \\rho_t = \\lambda\\,\\sigma_n^2 / \\bar\\sigma_t^2 \\\\
        \\hat\\epsilon &= \\big(x_t - \\sqrt{\\bar\\alpha_t}\\,\\hat x_0\\big)/\\sqrt{1-\\bar\\alpha_t} \\\\
        x_{t-1} &= \\sqrt{\\bar\\alpha_{t-1}}\\,\\hat x_0 + \\sqrt{1-\\bar\\alpha_{t-1}}\\,
        \\big(\\sqrt{1-\\zeta}\\,\\hat\\epsilon + \\sqrt{\\zeta}\\,\\epsilon\\big),
        \\qquad \\epsilon \\sim \\mathcal{N}(0, I)

    :math:`\\sigma_n` is the measurement noise (``config.noise_sigma``, ``[0, 1]`` units: the
    factor 2 to ``[-1, 1]`` is discussed in
    :class:`~diffprior.solvers.consistency.NoiseLevelProjection`, which is the data step). The
    data problem is solved by conjugate gradients with the operator's exact adjoint
    (:func:`~diffprior.solvers.consistency.proximal_image`), not by the reference's closed forms
    (FFT for circular blur and SR, a division for masks): CG covers every linear operator, is
    exact after one iteration for masks and average pooling and approaches the closed form on
    blur. The data step also runs at the last step (the reference skips it there).

    One network evaluation per step and no VJP, plus ``cg_iters`` applications of
    :math:`A^T A`. Needs a ``scico.linop.LinearOperator`` and a pixel-space prior
    (``metadata.latent`` False, where the prior has metadata). Defaults: 100 steps
    (:attr:`default_num_steps`). See :class:`~diffprior.solvers.base.Solver` for the arguments.
    """

    config_class = DiffPIRConfig
    default_prompt = ""
    default_num_steps = 100
    pixel_space = True

    def _components(self, config: DiffPIRConfig) -> dict:
        return {"update": None, "sampler": ReNoiseStep(zeta=float(config.zeta)),
                "projection": NoiseLevelProjection(weight=float(config.lmbda), noise_sigma=float(config.noise_sigma),
                                                   cg_iters=int(config.cg_iters))}
