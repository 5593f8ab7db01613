"""The prior's own description: ``diffprior.json`` at the root of a prior folder.

The file says which solver preset table fits the prior (so a copy or a renamed folder
keeps its presets), its native image size and what kind of prior it is. Format 1::

    {
      "format": 1,
      "name": "cifar10-ldm",
      "preset_table": "cifar10",
      "image_size": [32, 32],
      "latent": true,
      "conditioning": true
    }

Every key but ``format`` is optional:

* ``name`` (string): a display name; default: the folder's name.
* ``preset_table`` (string or null): a :class:`diffprior.solvers.Dataset` value
  (``"cifar10"``, ``"imagenet"``, ``"ffhq"``): the column of the solver presets that was
  tuned for this prior. ``null`` or absent: none was, the paper's ``imagenet`` presets
  apply (see :func:`diffprior.priors.preset_table`).
* ``image_size`` (``[H, W]`` or null): the native resolution; absent: the loader derives it
  from the model configuration where it can.
* ``latent``, ``conditioning`` (booleans): whether diffusion runs in an autoencoder's
  latent space and whether the prior takes text. They describe the implementation; the
  loader checks them against the folder's layout. Absent, they default to what the layout
  is: true for a latent-diffusion pipeline (Stable Diffusion), false for a pixel-space
  ``UNet2DModel`` folder (:class:`~diffprior.priors.pixel.PixelDiffusionPrior`).

A folder without the file gets these defaults (so a Stable Diffusion download works
as is). A file that is not valid JSON, or holds unknown values, raises
:class:`~diffprior.prior.PriorLoadError` naming the file. Keys this version does not know
are ignored; a ``format`` newer than 1 is an error.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

#: File name of the metadata, at the root of the prior folder.
METADATA_FILE = "diffprior.json"
#: The format this version reads and writes.
FORMAT = 1


def _dataset(value):
    from ..solvers.common import Dataset  # deferred: diffprior.solvers imports this package

    return value if isinstance(value, Dataset) else Dataset(value)


@dataclasses.dataclass(frozen=True)
class PriorMetadata:
    """What a prior says about itself (frozen and hashable: a static field of the prior pytree).

    Attributes:
        name: display name (the folder name when the file does not give one).
        preset_table: the :class:`diffprior.solvers.Dataset` whose solver presets were tuned
            for this prior, or ``None``: the paper's ``Dataset.IMAGENET`` presets apply.
            A string value is converted.
        image_size: native ``(H, W)`` or ``None`` (unknown).
        latent: diffusion runs in an autoencoder's latent space (False: in pixel space).
        conditioning: the prior is text-conditioned (False: ``embed`` returns a placeholder).
    """

    name: str = "unnamed"
    preset_table: Any = None
    image_size: tuple | None = None
    latent: bool = True
    conditioning: bool = True

    def __post_init__(self):
        if self.preset_table is not None:
            object.__setattr__(self, "preset_table", _dataset(self.preset_table))
        if self.image_size is not None:
            size = tuple(int(s) for s in self.image_size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"image_size must be (H, W) with positive sizes, got {self.image_size!r}")
            object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "latent", bool(self.latent))
        object.__setattr__(self, "conditioning", bool(self.conditioning))

    def to_dict(self) -> dict:
        """The JSON object of :data:`METADATA_FILE` (format 1)."""
        return {
            "format": FORMAT,
            "name": self.name,
            "preset_table": None if self.preset_table is None else self.preset_table.value,
            "image_size": None if self.image_size is None else list(self.image_size),
            "latent": self.latent,
            "conditioning": self.conditioning,
        }


def _error(message: str):
    from ..prior import PriorLoadError  # deferred: diffprior.prior loads JAX and the models

    return PriorLoadError(message)


def _parse(data: Any, file: Path, default_name: str, latent: bool = True, conditioning: bool = True) -> PriorMetadata:
    if not isinstance(data, dict):
        raise _error(f"{file}: the prior metadata must be a JSON object, got {type(data).__name__}")
    problems = []
    fmt = data.get("format", FORMAT)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        problems.append(f"format must be a positive integer, got {fmt!r}")
    elif fmt > FORMAT:
        problems.append(f"format {fmt} is newer than this version of diffprior reads ({FORMAT}): upgrade diffprior")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        problems.append(f"name must be a non-empty string, got {name!r}")
    table = data.get("preset_table")
    if table is not None:
        from ..solvers.common import Dataset

        known = [d.value for d in Dataset]
        if table not in known:
            problems.append(f"unknown preset_table {table!r}; known: {', '.join(map(repr, known))} or null")
    size = data.get("image_size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        problems.append(f"image_size must be [H, W] (positive integers) or null, got {size!r}")
    flags = {}
    for key, default in (("latent", latent), ("conditioning", conditioning)):
        v = data.get(key, default)
        if not isinstance(v, bool):
            problems.append(f"{key} must be true or false, got {v!r}")
        flags[key] = v
    if problems:
        raise _error(f"{file}: invalid prior metadata:\n  " + "\n  ".join(problems))
    return PriorMetadata(name=name, preset_table=table, image_size=size, **flags)


def read_metadata(path: str | os.PathLike, *, latent: bool = True, conditioning: bool = True) -> PriorMetadata:
    """Read ``<path>/diffprior.json``; defaults (name: the folder's name, no preset table)
    when the folder has no such file.

    Args:
        path: the prior folder.
        latent, conditioning: the values of these keys when the file (or the folder's file)
            does not give them: the kind of prior the folder's layout says it is (a pixel
            ``UNet2DModel`` loader passes ``False, False``).

    Raises:
        PriorLoadError: the file is not valid JSON or holds invalid values (the message
            names the file and lists every problem).
    """
    folder = Path(path).expanduser()
    file = folder / METADATA_FILE
    default_name = folder.resolve().name or "unnamed"
    if not file.is_file():
        return PriorMetadata(name=default_name, latent=latent, conditioning=conditioning)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # json.JSONDecodeError is a ValueError
        raise _error(f"{file}: the prior metadata is not valid JSON ({e})") from None
    return _parse(data, file, default_name, latent, conditioning)


def write_metadata(path: str | os.PathLike, metadata: PriorMetadata | None = None, **fields) -> Path:
    """Write ``<path>/diffprior.json`` (the folder must exist); return the file's path.

    Args:
        path: the prior folder.
        metadata: what to write; default ``PriorMetadata(name=<folder name>)``.
        **fields: fields to replace in ``metadata`` (e.g. ``preset_table="cifar10"``).
    """
    folder = Path(path).expanduser()
    if metadata is None:
        metadata = PriorMetadata(name=folder.resolve().name or "unnamed")
    if fields:
        metadata = dataclasses.replace(metadata, **fields)
    file = folder / METADATA_FILE
    file.write_text(json.dumps(metadata.to_dict(), indent=2) + "\n", encoding="utf-8")
    return file


__all__ = ["PriorMetadata", "read_metadata", "write_metadata", "METADATA_FILE", "FORMAT"]
