"""Solver hyperparameters for the bundled CIFAR-10 prior, chosen by a validation search.

The paper's Table 6 holds values for Stable Diffusion at 512 px and reached us with cells
lost (see :mod:`diffprior.solvers.p2l`). For the bundled prior (32 px images, 8 x 8 x 4
latents) the cells that are unreadable, or that the paper does not give (the baselines'
static step sizes, the prompt learning rate), were chosen by ``benchmarks/tune.py``: a small
grid per solver and task on the *tuning* images (files 4995-4999 of every CIFAR-10
validation class, never used by the benchmarks), keeping the value with the lowest mean
LPIPS. Every grid point is in ``benchmarks/results/tuning.md``. Cells the search did not
cover keep the ImageNet preset.

``P2LConfig.for_task(task, Dataset.CIFAR10)`` (and the same for the other solvers) applies
these values on top of the ImageNet preset.
"""

from __future__ import annotations

from .common import Task

#: (solver, task) -> {field: value}; ``prompt_lr`` is the prompt tuning's learning rate.
#: Search settings: 25 DDIM steps, sigma = 0.005, 20 tuning images for LDPS and the ADMM
#: baselines, 10 for P2L (it costs about five times as much). LDPS's inpainting value was
#: searched on free-form masks and holds for 80 % random drops too (searched separately: the
#: same choice; TV-ADMM's too). The searches ran on the interim export of the prior (UNet
#: 2518 steps, autoencoder 1300 steps); GML-DPS and PSLD take LDPS's static step (the paper gives them the same one);
#: their regulariser weights :math:`\gamma` were not searched (provisional 0.1). P2L's readable
#: Table 6 cells (Adam 0.1 for motion, GD 0.5 for Gaussian deblurring) are kept.
_LDPS_STEP = {Task.SR: 1.0, Task.DEBLUR_GAUSS: 0.3, Task.DEBLUR_MOTION: 0.3, Task.INPAINT: 0.3}
_P2L_PROMPT_LR = 1e-2
TUNED: dict = {
    **{(name, task): {"step_size": rho} for name in ("LDPS", "GMLDPS", "PSLD") for task, rho in _LDPS_STEP.items()},
    ("P2L", Task.SR): {"step_size": 1.0, "prompt_lr": _P2L_PROMPT_LR},
    ("P2L", Task.INPAINT): {"step_size": 0.1, "prompt_lr": _P2L_PROMPT_LR},
    ("P2L", Task.DEBLUR_GAUSS): {"prompt_lr": _P2L_PROMPT_LR},
    ("P2L", Task.DEBLUR_MOTION): {"prompt_lr": _P2L_PROMPT_LR},
    # TV-ADMM's weight (50 ADMM iterations; searched on sr4-avg, the deblurring tasks and
    # free-form inpainting; 0.003 is the grid's smallest value, so SR and deblurring may
    # prefer less)
    ("TVADMM", Task.SR): {"lmbda": 0.003},
    ("TVADMM", Task.DEBLUR_GAUSS): {"lmbda": 0.003},
    ("TVADMM", Task.DEBLUR_MOTION): {"lmbda": 0.003},
    ("TVADMM", Task.INPAINT): {"lmbda": 0.03},
    # PnP-ADMM's penalty (30 iterations, 10 tuning images; 0.05 is the grid's smallest value
    # for every task)
    **{("PnPADMM", task): {"rho": 0.05} for task in Task},
}


def tuned_values(solver: str, task: Task) -> dict:
    """The searched values for ``solver`` (class name without ``Config``) on ``task``."""
    return dict(TUNED.get((solver, Task(task)), {}))
