"""Latent-diffusion inverse-problem solvers: P2L and the LDPS, GML-DPS, PSLD, LDIR baselines.

All share one shell (:class:`Solver`: keyword-only construction, ``solve``, ``history``,
iteration table, progress bar, ``save_state``/``load_state``) over one pure core
(:mod:`diffprior.solvers.core`: ``init``/``step`` on NamedTuples, run under ``jax.jit`` with
``lax.scan``). Data-consistency variants are strategy objects
(:mod:`diffprior.solvers.consistency`, :mod:`diffprior.solvers.prompt`).
"""

from .base import SamplerConfig, Solver, SolverFailure, sample_keys
from .common import RESIDUAL_SCALE, Dataset, LatentPrior, Loss, Status, Task
from .consistency import (AdamHistory, FixedPointRegularizer, GluingProjection, GluingRegularizer, GradientDescent,
                          ProximalProjection)
from .core import State, StepStats
from .gmldps import GMLDPS, GMLDPSConfig
from .ldir import LDIR, LDIRConfig
from .ldps import LDPS, LDPSConfig
from .p2l import P2L, P2LConfig
from .prompt import PromptTuning
from .pnp_admm import PnPADMM
from .psld import PSLD, PSLDConfig
from .tv_admm import TVADMM

__all__ = [
    "P2L", "LDPS", "GMLDPS", "PSLD", "LDIR", "TVADMM", "PnPADMM", "Solver", "SolverFailure",
    "P2LConfig", "LDPSConfig", "GMLDPSConfig", "PSLDConfig", "LDIRConfig", "SamplerConfig",
    "PromptTuning", "GradientDescent", "AdamHistory", "ProximalProjection", "GluingProjection",
    "FixedPointRegularizer", "GluingRegularizer", "State", "StepStats", "Task", "Dataset", "Loss", "Status",
    "LatentPrior", "RESIDUAL_SCALE",
]
