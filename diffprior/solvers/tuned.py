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
#: Steps of the search: 25 DDIM steps, 20 tuning images, sigma = 0.005.
TUNED: dict = {
    ("LDPS", Task.SR): {"step_size": 1.0},
}


def tuned_values(solver: str, task: Task) -> dict:
    """The searched values for ``solver`` (class name without ``Config``) on ``task``."""
    return dict(TUNED.get((solver, Task(task)), {}))
