"""Diffusion priors: one protocol, one loader, and the prior's own metadata.

* :class:`DiffusionPrior` (:mod:`diffprior.priors.protocol`): what every prior implements
  (``schedule``, ``metadata``, ``encode``, ``decode``, ``eps_and_x0``, ``embed``,
  ``latent_shape``); :class:`~diffprior.prior.LatentDiffusionPrior` (Stable Diffusion) and
  :class:`~diffprior.priors.pixel.PixelDiffusionPrior` (a DDPM ``UNet2DModel`` on pixels)
  implement it.
* :func:`load`: a prior from a folder, dispatching on its layout.
* :class:`PriorMetadata`, :func:`read_metadata`, :func:`write_metadata`
  (:mod:`diffprior.priors.metadata`): the folder's ``diffprior.json``, which says among
  other things which solver presets apply; :func:`preset_table` turns it into a
  :class:`diffprior.solvers.Dataset`.

Example::

    from diffprior import priors
    from diffprior.solvers import P2L, P2LConfig, Task

    prior = priors.load("path/to/stable-diffusion-v1-5")   # or priors.load() for the bundled one
    config = P2LConfig.for_task(Task.SR, priors.preset_table(prior))
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .metadata import METADATA_FILE, PriorMetadata, read_metadata, write_metadata
from .protocol import SOLVER_MEMBERS, DiffusionPrior

#: Components of a diffusers latent-diffusion pipeline folder.
DIFFUSERS_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
#: diffusers pipelines that denoise in pixel space with a ``UNet2DModel``.
_PIXEL_PIPELINES = ("DDPMPipeline", "DDIMPipeline", "ScoreSdeVePipeline", "PNDMPipeline", "KarrasVePipeline")

_LAYOUTS = (
    "a diffusers latent-diffusion pipeline (Stable Diffusion v1.x layout: model_index.json and "
    "unet/ vae/ text_encoder/ tokenizer/ scheduler/ with config.json and *.safetensors); "
    "a pixel-space diffusers UNet2DModel (DDPM) folder (unet/ and scheduler/, or config.json, "
    "diffusion_pytorch_model.safetensors and scheduler_config.json side by side)"
)
#: Autoencoder folders: their presence makes a folder a latent model.
_AUTOENCODERS = ("vae", "vqvae")


def _json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _resolve(path) -> Path:
    if path is None or (isinstance(path, str) and path == "bundled"):
        from .. import bundled_path

        return bundled_path()
    if isinstance(path, str) and path.startswith("bundled:"):  # "bundled:latent", "bundled:pixel"
        from .. import bundled_path

        return bundled_path(path.split(":", 1)[1])
    return Path(path).expanduser()


def _is_pixel_layout(folder: Path) -> bool:
    """A ``UNet2DModel`` (or pixel pipeline) folder without an autoencoder."""
    if any((folder / d).is_dir() for d in _AUTOENCODERS):
        return False
    if _json(folder / "model_index.json").get("_class_name") in _PIXEL_PIPELINES:
        return True
    for cfg in (folder / "unet" / "config.json", folder / "config.json"):
        if _json(cfg).get("_class_name") == "UNet2DModel":
            return True
    return False


def load(path: str | os.PathLike | None = None, dtype=None, **kw):
    """Load a prior from a local folder (nothing is downloaded), dispatching on its layout.

    Understood layouts:

    * a pixel-space folder: a ``UNet2DModel`` configuration (``unet/config.json`` or
      ``config.json``) or a pixel pipeline's ``model_index.json`` (``DDPMPipeline``, ...),
      and no ``vae/`` or ``vqvae/`` ->
      :meth:`PixelDiffusionPrior.from_pretrained <diffprior.priors.pixel.PixelDiffusionPrior.from_pretrained>`;
    * a diffusers latent-diffusion pipeline folder (``model_index.json`` and/or
      ``unet/ vae/ text_encoder/ tokenizer/ scheduler/``) ->
      :meth:`LatentDiffusionPrior.from_pretrained <diffprior.prior.LatentDiffusionPrior.from_pretrained>`.

    The prior's :attr:`~DiffusionPrior.metadata` comes from the folder's ``diffprior.json``
    (:func:`read_metadata`).

    Args:
        path: the folder; ``None``, ``"bundled"`` or ``"bundled:latent"``: the bundled
            CIFAR-10 latent prior; ``"bundled:pixel"``: the bundled CIFAR-10 pixel prior.
        dtype: parameter and compute dtype (default ``jnp.float32``).
        **kw: passed to the implementation's loader (e.g. ``remat=True``).

    Returns:
        An object implementing :class:`DiffusionPrior`.

    Raises:
        PriorLoadError: the folder does not exist, is of no understood layout (the message
            lists what the folder holds and the layouts understood), lacks files, or has an
            invalid ``diffprior.json``.
        WeightLoadError, UnsupportedConfigError: from the implementation's loader.
    """
    import jax.numpy as jnp

    from ..prior import LatentDiffusionPrior, PriorLoadError

    folder = _resolve(path)
    if not folder.is_dir():
        raise PriorLoadError(f"{folder} is not a directory" + (" (does it exist?)" if not folder.exists() else ""))
    dtype = jnp.float32 if dtype is None else dtype
    if _is_pixel_layout(folder):
        from .pixel import PixelDiffusionPrior

        return PixelDiffusionPrior.from_pretrained(folder, dtype=dtype, **kw)
    if (folder / "model_index.json").is_file() or any((folder / c).is_dir() for c in DIFFUSERS_COMPONENTS):
        return LatentDiffusionPrior.from_pretrained(folder, dtype=dtype, **kw)
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    found = ", ".join(entries[:20]) + (f", ... ({len(entries)} entries)" if len(entries) > 20 else "")
    raise PriorLoadError(f"{folder} is not a prior folder of an understood layout; it holds: {found or 'nothing'}.\n"
                         f"Understood layouts: {_LAYOUTS}.")


def preset_table(prior):
    """Which solver preset table fits a prior, from the prior's own metadata.

    Args:
        prior: a loaded prior (its ``metadata`` attribute), a :class:`PriorMetadata`, or a
            prior folder (its ``diffprior.json`` is read; ``None``: the bundled prior).

    Returns:
        ``Dataset(metadata.preset_table)``, or ``Dataset.IMAGENET`` (the paper's general-domain
        presets for Stable Diffusion) when the metadata names none or the object has no
        ``metadata``.
    """
    from ..solvers.common import Dataset

    if prior is None or isinstance(prior, (str, os.PathLike)):
        meta = read_metadata(_resolve(prior))
    elif isinstance(prior, PriorMetadata):
        meta = prior
    else:
        meta = getattr(prior, "metadata", None)
        if meta is not None and not isinstance(meta, PriorMetadata):
            raise TypeError(f"{type(prior).__name__}.metadata is a {type(meta).__name__}, not a PriorMetadata")
    if meta is None or meta.preset_table is None:
        return Dataset.IMAGENET
    return Dataset(meta.preset_table)


__all__ = ["DiffusionPrior", "PriorMetadata", "load", "preset_table", "read_metadata", "write_metadata",
           "METADATA_FILE", "SOLVER_MEMBERS", "DIFFUSERS_COMPONENTS"]
