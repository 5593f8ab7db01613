r"""DDS: the decomposed diffusion sampler (Chung, Lee, Ye, ICLR 2024).

No gradient through the network: each step denoises (Tweedie), moves the clean estimate
towards the measurement by a few conjugate-gradient iterations of a proximal problem, and
takes a DDIM step from it. The CG step is P2L's proximal projection
(:class:`~diffprior.solvers.consistency.ProximalProjection`, with :math:`\lambda = 1/\gamma`)
on a pixel-space prior, whose encoder is the affine map :math:`2x - 1`.

Presets (:meth:`DDSConfig.for_task`): :math:`\gamma = 1`, 5 CG iterations, :math:`\eta = 0.85`
on every task, the paper's general setting; for ``Dataset.CIFAR10`` (the bundled pixel prior)
:math:`\gamma` comes from a validation search at 100 steps (:mod:`~diffprior.solvers.tuned`:
100, or 10 for motion deblurring; with so large a weight the 5 CG iterations are close to an
early-stopped least-squares solve started at :math:`\hat x_0`).
"""

from __future__ import annotations

import dataclasses

from .base import Solver
from .common import Dataset, Task
from .config import SolverConfig
from .consistency import ProximalProjection


@dataclasses.dataclass(frozen=True, kw_only=True)
class DDSConfig(SolverConfig):
    """DDS hyperparameters (defaults: the paper's).

    Attributes:
        eta: DDIM stochasticity :math:`\\eta` (0.85).
        gamma: :math:`\\gamma`, the weight of the data term in the CG problem (1); the same in
            ``[0, 1]`` and ``[-1, 1]`` units. Its pull depends on the operator's scale: on a
            component of :math:`A` with gain :math:`s` the step closes a fraction
            :math:`\\gamma s^2 / (1 + \\gamma s^2)` of the gap to :math:`y` (at convergence).
        cg_iters: conjugate-gradient iterations per step (5): an early-stopped solve, which
            keeps the update in a low-dimensional Krylov subspace around :math:`\\hat x_0`.
    """

    eta: float = 0.85
    gamma: float = 1.0
    cg_iters: int = 5

    def __post_init__(self):
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if not self.gamma > 0 or int(self.cg_iters) < 1:
            raise ValueError(f"DDS needs gamma > 0 and cg_iters >= 1, got gamma={self.gamma}, "
                             f"cg_iters={self.cg_iters}")

    @classmethod
    def _paper_preset(cls, task: Task, dataset: Dataset) -> "DDSConfig":
        """The paper's setting on every task."""
        return cls()


class DDS(Solver):
    """DDS :cite:`chung2024dds`: Tweedie, a few CG steps towards the measurement, DDIM.

    With :math:`x_t` the noisy image on ``[-1, 1]`` (the pixel prior's diffusion space), each
    reverse step is

    .. math::
        \\hat x_0 &= \\big(x_t - \\sqrt{1-\\bar\\alpha_t}\\,\\hat\\epsilon\\big)/\\sqrt{\\bar\\alpha_t},
        \\qquad \\hat\\epsilon = \\epsilon_\\theta(x_t, t) \\\\
        \\hat x_0' &= \\mathrm{CG}_M\\big[(I + \\gamma A^T A)\\,x = \\hat x_0 + \\gamma A^T y;\\
        x^{(0)} = \\hat x_0\\big] \\\\
        x_{t-1} &= \\sqrt{\\bar\\alpha_{t-1}}\\,\\hat x_0'
        + \\sqrt{1-\\bar\\alpha_{t-1}-\\sigma_t^2}\\,\\hat\\epsilon + \\sigma_t\\,\\epsilon,
        \\qquad \\sigma_t = \\eta\\,\\sigma_t^{\\mathrm{DDPM}}

    with :math:`M` CG iterations warm-started at :math:`\\hat x_0`, i.e. :math:`M` Krylov steps
    on :math:`\\min_x \\tfrac{\\gamma}{2}\\|y - Ax\\|^2 + \\tfrac12\\|x - \\hat x_0\\|^2`, and the
    network's :math:`\\hat\\epsilon` in the DDIM step. The CG system is
    :class:`~diffprior.solvers.consistency.ProximalProjection`'s
    :math:`(A^T A + \\lambda I)\\,x = A^T y + \\lambda \\hat x_0` with :math:`\\lambda = 1/\\gamma`
    (a positive multiple of the same system: the same CG iterates), solved on ``[0, 1]`` images,
    :math:`\\mathcal{D}(\\hat x_0) = (\\hat x_0 + 1)/2`, and mapped back by the encoder
    :math:`2x - 1`; for a linear :math:`A` the iterates are those of the ``[-1, 1]`` problem
    (:func:`~diffprior.solvers.consistency.proximal_image`).

    One network evaluation per step and no VJP (the guidance step is off: ``update=None``), plus
    :math:`M` applications of :math:`A^T A`. Needs a ``scico.linop.LinearOperator`` (exact
    adjoint) and a pixel-space prior (``metadata.latent`` False, where the prior has metadata).
    Defaults: 50 steps (:attr:`default_num_steps`; the paper uses 50 to 100). See
    :class:`~diffprior.solvers.base.Solver` for the arguments.
    """

    config_class = DDSConfig
    default_prompt = ""
    default_num_steps = 50
    pixel_space = True

    def _components(self, config: DDSConfig) -> dict:
        return {"update": None,
                "projection": ProximalProjection(weight=1.0 / config.gamma, every=1, cg_iters=int(config.cg_iters))}
