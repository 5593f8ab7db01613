"""The solver registry: every solver by the name the command line and the benchmarks use.

``SOLVERS[name]`` is the solver class; its ``config_class`` is its configuration dataclass
(presets by task, JSON round-trip, dotted overrides), ``uses_prior`` says whether it needs a
diffusion prior and ``pixel_space`` whether a pixel-space one. Adding a solver is its module
plus one line here (and its entry in the API docs).
"""

from __future__ import annotations

from typing import Dict

from .dds import DDS
from .diffpir import DiffPIR
from .dps import DPS
from .gmldps import GMLDPS
from .ldir import LDIR
from .ldps import LDPS
from .p2l import P2L
from .pnp_admm import PnPADMM
from .psld import PSLD
from .tv_admm import TVADMM

__all__ = ["SOLVERS", "get_solver", "solver_name"]

SOLVERS: Dict[str, type] = {
    "p2l": P2L,
    "ldps": LDPS,
    "gmldps": GMLDPS,
    "psld": PSLD,
    "ldir": LDIR,
    "dps": DPS,
    "dds": DDS,
    "diffpir": DiffPIR,
    "tv-admm": TVADMM,
    "pnp-admm": PnPADMM,
}
"""Every solver, by name (``diffprior solve --solver NAME``)."""


def get_solver(name: str) -> type:
    """The solver class registered as ``name``.

    Raises:
        KeyError: If there is none (the message lists the names).
    """
    try:
        return SOLVERS[name]
    except KeyError:
        raise KeyError(f"unknown solver {name!r}; expected one of {', '.join(SOLVERS)}") from None


def solver_name(cls: type) -> str:
    """The registered name of a solver class."""
    for name, c in SOLVERS.items():
        if c is cls:
            return name
    raise KeyError(f"{cls.__name__} is not a registered solver")
