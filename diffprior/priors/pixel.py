"""The pixel-space diffusion prior: a DDPM ``UNet2DModel`` denoising the images themselves.

:class:`PixelDiffusionPrior` implements :class:`~diffprior.priors.DiffusionPrior` with no
autoencoder and no text: diffusion space is the image mapped affinely to the network's
``[-1, 1]`` range,

.. math:: z = E(x) = 2x - 1, \\qquad x = D(z) = (z + 1) / 2,

so ``latent_shape(image_shape) == image_shape``, and the denoiser is an unconditional
``UNet2DModel`` (:mod:`diffprior.models.unet2d`), the network of DDPM :cite:`ho2020ddpm`
and of diffusers' ``google/ddpm-*`` checkpoints. Tweedie's estimate is that of the latent
prior, in pixels:

.. math:: \\hat x_0 = \\bigl(z_t - \\sqrt{1 - \\bar\\alpha_t}\\,\\epsilon_\\theta(z_t, t)\\bigr)
          / \\sqrt{\\bar\\alpha_t}

(in ``[-1, 1]``; ``decode`` maps it to ``[0, 1]``). Because :math:`E` is affine, a
measurement noise level :math:`\\sigma` in ``[0, 1]`` units is :math:`2\\sigma` in
diffusion space. The prior is unconditional: :meth:`~PixelDiffusionPrior.embed` returns
zeros ``(N, 1, 1)`` and ``eps_and_x0`` ignores ``emb``; its metadata says
``latent=False, conditioning=False``.

Folder layouts read by :meth:`PixelDiffusionPrior.from_pretrained` (nothing is downloaded;
weights are read with ``safetensors.numpy``, PyTorch pickles are refused)::

    ddpm-pipeline/                      ddpm-model/   (google/ddpm-cifar10-32's root layout)
    ├── model_index.json  (optional)    ├── config.json
    ├── unet/                           ├── diffusion_pytorch_model.safetensors
    │   ├── config.json                 └── scheduler_config.json
    │   └── diffusion_pytorch_model.safetensors
    └── scheduler/scheduler_config.json

The schedule comes from the scheduler configuration (``DDPMScheduler``, ``DDIMScheduler``
and the other beta-schedule schedulers): ``beta_schedule`` ``linear``, ``scaled_linear`` or
``squaredcos_cap_v2``, ``num_train_timesteps``, ``beta_start``/``beta_end`` and
``prediction_type`` ``epsilon`` or ``v_prediction`` (converted to a noise estimate by
:func:`~diffprior.schedule.model_output_to_eps`). Sampler-only settings
(``clip_sample``, ``variance_type``, ``timestep_spacing``, ``thresholding``) are ignored: the
solvers do their own stepping.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import struct

from ..models.config import UNet2DConfig, UnsupportedConfigError
from ..models.unet2d import WEIGHTS_NAME, UNet2DModel, load_unet2d
from ..schedule import BetaSchedule, Prediction, Schedule, model_output_to_eps, tweedie
from .metadata import PriorMetadata, read_metadata

#: Scheduler configuration file name (in ``scheduler/`` or beside a bare model's ``config.json``).
SCHEDULER_FILE = "scheduler_config.json"
#: Schedulers whose noise process is not a beta schedule (score-SDE / Karras VE models).
_VE_SCHEDULERS = ("ScoreSdeVeScheduler", "KarrasVeScheduler", "ScoreSdeVpScheduler")


def _paths(path: Path) -> tuple[Path, list[Path]]:
    """The model folder (``unet/`` of a pipeline, else ``path`` itself) and the scheduler
    configuration candidates, in the order they are tried."""
    model = path / "unet" if (path / "unet").is_dir() else path
    return model, [path / "scheduler" / SCHEDULER_FILE, path / SCHEDULER_FILE]


def _folder_problems(path: Path) -> list[str]:
    """Every missing file of a pixel prior folder, relative to ``path``."""
    model, schedulers = _paths(path)
    where = "unet/" if model != path else ""
    problems = []
    if not (model / "config.json").is_file():
        problems.append(f"missing {where}config.json" + (" (or unet/config.json of a pipeline folder)"
                                                        if not where else ""))
    if not list(model.glob("*.safetensors")):
        pickles = sorted(p.name for p in (*model.glob("*.bin"), *model.glob("*.ckpt")))
        extra = (f" (found only PyTorch pickles: {', '.join(pickles)}; pickles are never unpickled: convert "
                 "them to safetensors, see the docs page on loading Stable Diffusion)") if pickles else ""
        problems.append(f"missing {where}{WEIGHTS_NAME}{extra}")
    if not any(f.is_file() for f in schedulers):
        problems.append(f"missing scheduler/{SCHEDULER_FILE} (or {SCHEDULER_FILE} beside config.json)")
    return problems


def schedule_from_config(file: str | os.PathLike) -> Schedule:
    """The training :class:`~diffprior.schedule.Schedule` of a diffusers scheduler configuration.

    Args:
        file: a ``scheduler_config.json`` (``DDPMScheduler``, ``DDIMScheduler``, ...).

    Raises:
        PriorLoadError: the file is not a JSON object.
        UnsupportedConfigError: a setting this library does not implement (one line naming
            each): a variance-exploding scheduler, ``trained_betas``, a ``beta_schedule``
            other than ``linear`` / ``scaled_linear`` / ``squaredcos_cap_v2``, a
            ``prediction_type`` other than ``epsilon`` / ``v_prediction``,
            ``rescale_betas_zero_snr``.
    """
    from ..prior import _read_json

    file = Path(file)
    d = _read_json(file)
    problems = []
    if d.get("_class_name") in _VE_SCHEDULERS:
        problems.append(f"_class_name={d['_class_name']!r} (a variance-exploding score model, not a beta schedule)")
    if d.get("trained_betas") is not None:
        problems.append("trained_betas (an explicit list of betas)")
    beta = d.get("beta_schedule", "linear")
    if beta not in [b.value for b in BetaSchedule]:
        problems.append(f"beta_schedule={beta!r} (supported: {', '.join(b.value for b in BetaSchedule)})")
    pred = d.get("prediction_type", "epsilon")
    if pred not in [p.value for p in Prediction]:
        problems.append(f"prediction_type={pred!r} (supported: {', '.join(p.value for p in Prediction)})")
    if d.get("rescale_betas_zero_snr"):
        problems.append("rescale_betas_zero_snr=true")
    if problems:
        raise UnsupportedConfigError(f"{file}: unsupported scheduler settings: " + "; ".join(problems))
    return Schedule.from_config_file(file)


@struct.dataclass
class PixelDiffusionPrior:
    """Unconditional pixel-space diffusion prior (see the module documentation).

    Attributes:
        params: the UNet's Flax parameter tree.
        schedule: the training noise :class:`~diffprior.schedule.Schedule`.
        unet: the :class:`~diffprior.models.UNet2DModel` (static).
        dtype: parameter and compute dtype (``float32`` or ``bfloat16``); public outputs are
            float32.
        metadata: a :class:`~diffprior.priors.PriorMetadata` with ``latent=False,
            conditioning=False`` (static); :meth:`from_pretrained` reads the folder's
            ``diffprior.json`` and takes the native size from the UNet's ``sample_size``
            when the file gives none.

    Implements :class:`diffprior.priors.DiffusionPrior`.
    """

    params: dict
    schedule: Schedule
    unet: UNet2DModel = struct.field(pytree_node=False)
    dtype: object = struct.field(pytree_node=False, default=jnp.float32)
    metadata: PriorMetadata = struct.field(pytree_node=False,
                                           default=PriorMetadata(latent=False, conditioning=False))

    def __post_init__(self):
        c = self.unet.config
        if c.out_channels != c.in_channels:
            raise UnsupportedConfigError(
                f"UNet2DModel out_channels={c.out_channels} differs from in_channels={c.in_channels}: a "
                "learned-variance (or other non-noise) output is not supported; the prior needs a network "
                "predicting epsilon or v")
        if self.metadata.latent or self.metadata.conditioning:
            raise ValueError("PixelDiffusionPrior metadata must say latent=False and conditioning=False, got "
                             f"latent={self.metadata.latent}, conditioning={self.metadata.conditioning}")

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype=jnp.float32, remat: bool = False):
        """Load a pixel-space diffusers folder: a pipeline (``unet/`` + ``scheduler/``) or a
        bare model folder (``config.json``, weights and ``scheduler_config.json`` side by side).

        Args:
            path: local folder; nothing is ever downloaded.
            dtype: ``jnp.float32`` or ``jnp.bfloat16`` for parameters and compute.
            remat: activation checkpointing in the UNet's residual blocks.

        Raises:
            PriorLoadError: the folder or a file is missing (every missing file is named), the
                folder holds an autoencoder (``vae/``, ``vqvae/``: not a pixel-space model), a
                file is unreadable (invalid JSON, a weight file that is not safetensors;
                pickles are never unpickled) or ``diffprior.json`` contradicts the layout.
            UnsupportedConfigError: the UNet or scheduler configuration selects an
                unimplemented feature (the message names each).
            WeightLoadError: tensors do not match the configuration (all mismatches listed).
        """
        from ..prior import PriorLoadError

        path = Path(path).expanduser()
        if not path.is_dir():
            raise PriorLoadError(f"{path} is not a directory" + (" (does it exist?)" if not path.exists() else ""))
        auto = [d for d in ("vae", "vqvae") if (path / d).is_dir()]
        if auto:
            raise PriorLoadError(f"{path} holds an autoencoder ({auto[0]}/): it is a latent diffusion model, not a "
                                 "pixel-space one")
        problems = _folder_problems(path)
        if problems:
            raise PriorLoadError(f"{path} is not a complete pixel-space diffusers folder:\n  " + "\n  ".join(problems))
        metadata = read_metadata(path, latent=False, conditioning=False)
        if metadata.latent or metadata.conditioning:
            raise PriorLoadError(f"{path / 'diffprior.json'}: says latent={str(metadata.latent).lower()}, "
                                 f"conditioning={str(metadata.conditioning).lower()}, but the folder is an "
                                 "unconditional pixel-space UNet2DModel")
        model_dir, schedulers = _paths(path)
        schedule = schedule_from_config(next(f for f in schedulers if f.is_file()))
        unet, params = load_unet2d(model_dir, dtype=dtype, remat=remat)
        return cls(params, schedule, unet, dtype, _with_image_size(metadata, unet.config))

    @classmethod
    def random(cls, key, config: UNet2DConfig, schedule: Schedule | None = None, dtype=jnp.float32,
               remat: bool = False, metadata: PriorMetadata | None = None):
        """A prior with freshly initialised weights (tests, timing, training from scratch).

        ``schedule`` defaults to DDPM's (linear betas from 1e-4 to 0.02 over 1000 steps,
        epsilon prediction); ``metadata`` to ``PriorMetadata(name="random", latent=False,
        conditioning=False)`` with the configuration's ``sample_size``.
        """
        unet = UNet2DModel(config, remat)
        s = config.size_multiple
        params = unet.init(key, jnp.zeros((1, s, s, config.in_channels)), jnp.zeros((1,)))["params"]
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
        schedule = schedule or Schedule.create("linear", 1000, 1e-4, 0.02, "epsilon", True, 0)
        metadata = metadata or PriorMetadata(name="random", latent=False, conditioning=False)
        return cls(params, schedule, unet, dtype, _with_image_size(metadata, config))

    # ----------------------------------------------------------------- properties
    @property
    def config(self) -> UNet2DConfig:
        """The UNet's configuration."""
        return self.unet.config

    @property
    def downsample_factor(self) -> int:
        """1: diffusion runs on the pixels (the latent prior's autoencoder factor)."""
        return 1

    @property
    def latent_channels(self) -> int:
        """Channels of diffusion space: the image channels the UNet takes."""
        return self.unet.config.in_channels

    def latent_shape(self, image_shape: Sequence[int]) -> tuple:
        """``image_shape`` itself, ``(N, H, W, C)``.

        Raises:
            ValueError: ``C`` is not the UNet's channel count, or ``H`` or ``W`` is not a
                multiple of ``2 ** (levels - 1)`` (the UNet's downsamplings).
        """
        if len(image_shape) != 4:
            raise ValueError(f"image shape must be (N, H, W, C), got {tuple(image_shape)}")
        n, h, w, c = (int(v) for v in image_shape)
        cfg = self.unet.config
        if c != cfg.in_channels:
            raise ValueError(f"the pixel prior takes {cfg.in_channels}-channel images, got {c} channels")
        m = cfg.size_multiple
        if h % m or w % m:
            raise ValueError(f"image size {h}x{w} is not divisible by {m}, the pixel UNet's "
                             f"{cfg.num_levels - 1} downsamplings")
        return (n, h, w, c)

    # ----------------------------------------------------------------- pure methods
    def encode(self, x):
        """Images ``(N, H, W, C)`` in [0, 1] -> diffusion space :math:`2x - 1` (float32)."""
        return 2.0 * jnp.asarray(x, jnp.float32) - 1.0

    def decode(self, z, clip: bool = False):
        """Diffusion space -> images :math:`(z + 1) / 2` (values may overshoot unless ``clip``)."""
        x = (jnp.asarray(z, jnp.float32) + 1.0) / 2.0
        return jnp.clip(x, 0.0, 1.0) if clip else x

    def model_output(self, z, t, emb=None):
        """Raw UNet output (epsilon or v, per the schedule's prediction type); ``emb`` is ignored."""
        t = jnp.broadcast_to(jnp.asarray(t), (z.shape[0],))
        return self.unet.apply({"params": self.params}, z.astype(self.dtype), t).astype(jnp.float32)

    def eps(self, z, t, emb=None):
        """Noise estimate :math:`\\epsilon_\\theta(z_t, t)` (v-prediction is converted)."""
        return model_output_to_eps(self.schedule, self.model_output(z, t), z, t)

    def x0(self, z, t, emb=None):
        """Tweedie estimate :math:`\\hat z_0(z_t)` in diffusion space (``[-1, 1]`` units)."""
        return tweedie(self.schedule, z, self.eps(z, t), t)

    def eps_and_x0(self, z, t, emb=None):
        """Both :meth:`eps` and :meth:`x0` from one network evaluation; ``emb`` is ignored."""
        e = self.eps(z, t)
        return e, tweedie(self.schedule, z, e, t)

    def embed(self, prompts):
        """Zeros ``(N, 1, 1)``, one row per prompt (a string counts as one): the prior is
        unconditional and ignores the conditioning."""
        n = 1 if prompts is None or isinstance(prompts, str) else len(list(prompts))
        return jnp.zeros((max(n, 1), 1, 1), jnp.float32)

    @property
    def null_embedding(self):
        """The placeholder conditioning ``(1, 1, 1)`` (zeros)."""
        return jnp.zeros((1, 1, 1), jnp.float32)


def _with_image_size(metadata: PriorMetadata, config: UNet2DConfig) -> PriorMetadata:
    """``metadata`` with the native image size from the UNet's ``sample_size`` when it gives none."""
    if metadata.image_size is not None or config.sample_size is None:
        return metadata
    return dataclasses.replace(metadata, image_size=config.sample_size)


__all__ = ["PixelDiffusionPrior", "schedule_from_config", "SCHEDULER_FILE"]
