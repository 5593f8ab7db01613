"""Inverse-problem solvers: P2L, the latent baselines LDPS, GML-DPS, PSLD, LDIR, the pixel-space
DPS, DDS and DiffPIR, and TV/PnP-ADMM.

Every solver is registered by name in :data:`SOLVERS` (:mod:`diffprior.solvers.registry`).

All share one shell (:class:`Solver`: keyword-only construction, ``solve``, ``history``,
iteration table, progress bar, ``save_state``/``load_state``) over one pure core
(:mod:`diffprior.solvers.core`: ``init``/``step`` on NamedTuples, run under ``jax.jit`` with
``lax.scan``). Data-consistency variants and reverse steps are strategy objects
(:mod:`diffprior.solvers.consistency`, :mod:`diffprior.solvers.prompt`,
:mod:`diffprior.solvers.samplers`). A batch may mix configurations that differ only in numbers,
one compiled program for all (:mod:`diffprior.solvers.mixing`).
"""

from .base import SamplerConfig, Solver, SolverFailure, sample_keys
from .classic import ADMMConfig
from .config import ConfigError, SolverConfig
from .common import RESIDUAL_SCALE, Dataset, LatentPrior, Loss, PriorMismatchError, Status, Task
from .consistency import (AdamHistory, FixedPointRegularizer, GluingProjection, GluingRegularizer, GradientDescent,
                          NoiseLevelProjection, ProximalProjection, SelectUpdate)
from .core import State, StepStats
from .dds import DDS, DDSConfig
from .diffpir import DiffPIR, DiffPIRConfig
from .dps import DPS, DPSConfig
from .gmldps import GMLDPS, GMLDPSConfig
from .ldir import LDIR, LDIRConfig
from .ldps import LDPS, LDPSConfig
from .mixing import PER_SAMPLE_SETTINGS, MixedConfigError
from .p2l import P2L, P2LConfig
from .prompt import PromptTuning
from .pnp_admm import PnPADMM, PnPADMMConfig
from .psld import PSLD, PSLDConfig
from .registry import SOLVERS, get_solver, solver_name
from .samplers import DDIMStep, ReNoiseStep
from .tv_admm import TVADMM, TVADMMConfig

__all__ = [
    "P2L", "LDPS", "GMLDPS", "PSLD", "LDIR", "DPS", "DDS", "DiffPIR", "TVADMM", "PnPADMM", "Solver", "SolverFailure",
    "P2LConfig", "LDPSConfig", "GMLDPSConfig", "PSLDConfig", "LDIRConfig", "DPSConfig", "DDSConfig", "DiffPIRConfig",
    "SamplerConfig", "SolverConfig",
    "ADMMConfig", "TVADMMConfig", "PnPADMMConfig", "ConfigError", "SOLVERS", "get_solver", "solver_name",
    "PromptTuning", "GradientDescent", "AdamHistory", "ProximalProjection", "GluingProjection",
    "FixedPointRegularizer", "GluingRegularizer", "NoiseLevelProjection", "DDIMStep", "ReNoiseStep", "State",
    "StepStats", "Task", "Dataset", "Loss", "Status", "LatentPrior", "PriorMismatchError", "RESIDUAL_SCALE",
    "SelectUpdate", "MixedConfigError", "PER_SAMPLE_SETTINGS",
]
