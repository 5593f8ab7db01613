"""diffprior: latent-diffusion priors (P2L and baselines) for imaging inverse problems in JAX.

Importing the package is cheap: submodules (and JAX itself) load on first attribute access.
"""

from __future__ import annotations

import importlib
from pathlib import Path

__version__ = "0.1.0"

_LAZY = {
    "LatentDiffusionPrior": "diffprior.prior",
    "DiffusionPrior": "diffprior.priors",
    "PriorMetadata": "diffprior.priors",
    "Schedule": "diffprior.schedule",
    "P2L": "diffprior.solvers",
    "LDPS": "diffprior.solvers",
    "GMLDPS": "diffprior.solvers",
    "PSLD": "diffprior.solvers",
    "LDIR": "diffprior.solvers",
    "TVADMM": "diffprior.solvers",
    "PnPADMM": "diffprior.solvers",
}
_SUBMODULES = {"models", "prior", "schedule", "sampling", "solvers", "io", "metrics", "data", "train", "cli",
               "perceptual", "priors"}


#: The bundled priors' folders under ``diffprior/bundled``, by kind.
BUNDLED = {"latent": "cifar10-ldm", "pixel": "cifar10-ddpm"}


def bundled_path(kind: str = "latent") -> Path:
    """Folder of a small CIFAR-10 diffusion prior shipped with the package: ``"latent"`` (the
    default prior, Stable Diffusion's architecture in miniature) or ``"pixel"`` (a DDPM
    ``UNet2DModel`` on pixels, for DPS, DDS and DiffPIR)."""
    if kind not in BUNDLED:
        raise ValueError(f"no bundled prior of kind {kind!r}; the kinds are {sorted(BUNDLED)}")
    return Path(__file__).parent / "bundled" / BUNDLED[kind]


def enable_compilation_cache(path: str | Path | None = None) -> Path | None:
    """Keep XLA's compiled programs on disk so that later runs skip compilation.

    Compiling a solver's step (a UNet and decoder VJP) takes tens of seconds on a CPU, often
    more than solving; with the cache a rerun with the same shapes starts at once. The folder
    is ``path``, else ``$DIFFPRIOR_CACHE``, else ``~/.cache/diffprior/xla``; set
    ``DIFFPRIOR_CACHE=off`` to disable. Returns the folder (``None`` when disabled).
    """
    import os

    where = path or os.environ.get("DIFFPRIOR_CACHE") or Path.home() / ".cache" / "diffprior" / "xla"
    if str(where).lower() in ("off", "0", "none", ""):
        return None
    import jax

    folder = Path(where).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return folder


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"diffprior.{name}")
    raise AttributeError(f"module 'diffprior' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_SUBMODULES))
