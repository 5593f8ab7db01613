"""Train the small pixel-space DDPM (``diffprior train pixel``).

An unconditional ``UNet2DModel`` (:mod:`diffprior.models.unet2d`) learns to predict the noise
added to the training images themselves, mapped to ``[-1, 1]`` (Ho et al. 2020, Eq. 14):

.. math::
    \\mathcal{L} = \\mathbb{E}_{x_0, \\epsilon, t}\\,
        \\|\\epsilon - \\epsilon_\\theta(\\sqrt{\\bar\\alpha_t} x_0 + \\sqrt{1-\\bar\\alpha_t}\\epsilon, t)\\|_2^2,
    \\quad t \\sim \\mathcal{U}\\{0, \\dots, 999\\},

with DDPM's schedule (linear betas from ``1e-4`` to ``0.02`` over ``T = 1000`` steps,
:data:`SCHEDULER_CONFIG`), random horizontal flips, and an exponential moving average of the
weights that is what gets exported. The data, its split (CIFAR-10 files 4900-4999 of every
class are never trained on), the optimiser, the EMA and the resumable checkpointed loop are
those of the latent prior's stage 2 (:mod:`diffprior.train.common`): restarting the same
command continues exactly where the run stopped.

The network (:func:`bundled_pixel_config`) is DDPM's CIFAR-10 UNet (``google/ddpm-cifar10-32``)
at a quarter of its width; see that function for the sizes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..data import DatasetError, apply_flips
from ..models.config import UNet2DConfig
from ..models.unet2d import UNet2DModel
from ..schedule import Schedule, add_noise
from . import checkpoint
from .common import (CSVLog, RunLock, check_data, diffusion_optimizer, load_train_val, make_train_step,
                     new_train_state, record_command, run_steps)

#: Checkpoint name in the run folder (``pixel.msgpack`` / ``pixel.json``).
CHECKPOINT = "pixel"

#: The noise schedule, as diffusers' ``scheduler/scheduler_config.json`` of the exported
#: folder: DDPM's (Ho et al. 2020, Sec. 4) and that of ``google/ddpm-cifar10-32``.
SCHEDULER_CONFIG = {
    "_class_name": "DDPMScheduler", "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "variance_type": "fixed_small",
    "clip_sample": True, "trained_betas": None,
}


def training_schedule() -> Schedule:
    """The :class:`~diffprior.schedule.Schedule` of :data:`SCHEDULER_CONFIG` (what
    :meth:`~diffprior.priors.pixel.PixelDiffusionPrior.from_pretrained` reads back)."""
    c = SCHEDULER_CONFIG
    return Schedule.create(c["beta_schedule"], c["num_train_timesteps"], c["beta_start"], c["beta_end"],
                           c["prediction_type"], True, 0)


def bundled_pixel_config(image_size: tuple = (32, 32)) -> UNet2DConfig:
    """The pixel prior's UNet: ``google/ddpm-cifar10-32`` at a quarter of its width.

    Four levels at 32, 16, 8 and 4 pixels with ``(32, 64, 64, 64)`` channels (DDPM's
    ``(128, 256, 256, 256)`` / 4), two residual blocks per level, self-attention at the 16x16
    level and in the 4x4 mid block (DDPM's places), GroupNorm of 8 groups (4 channels per
    group, DDPM's ratio), DDPM's time embedding (``flip_sin_to_cos=False``, ``freq_shift=1``).
    2,245,763 parameters: 9.0 MB in float32 (the ``<= 10 MB`` bound of a prior shipped inside
    the package), about 0.8 GFLOP per 32x32 image forward, the budget a 2-core CPU trains in
    hours. Width was cut rather than depth: at 32x32 the cost grows with the square of the
    channels, while the fourth level (a 4x4 receptive-field stage that sees the whole
    image) costs almost nothing.
    """
    return UNet2DConfig(
        in_channels=3, out_channels=3, block_out_channels=(32, 64, 64, 64), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=None, norm_num_groups=8, norm_eps=1e-6, flip_sin_to_cos=False, freq_shift=1.0,
        downsample_padding=0, sample_size=tuple(image_size),
    )


@dataclasses.dataclass(frozen=True)
class PixelTrainConfig:
    """Optimisation settings of the pixel DDPM.

    Defaults: the recommended CPU run, DDPM's learning rate at half its batch; 4000 steps
    of batch 64 (about 5 epochs of the 49,000 images) took about 4.2 s each on 2 shared CPU
    cores, under 5 hours.
    """

    steps: int = 4000
    batch_size: int = 64
    lr: float = 2e-4
    warmup: int = 200
    ema_decay: float = 0.999
    seed: int = 0
    ckpt_every: int = 100
    log_every: int = 50


def make_step(unet: UNet2DModel, tx, schedule: Schedule, ema_decay: float):
    """Jitted step ``(state, x0, key) -> (state, loss)``: the epsilon-prediction loss on
    images ``x0`` in ``[-1, 1]``, one Adam update and the EMA update."""

    def loss_fn(params, x0, key):
        kt, kn = jax.random.split(key)
        t = jax.random.randint(kt, (x0.shape[0],), 0, schedule.num_train_timesteps)
        noise = jax.random.normal(kn, x0.shape)
        out = unet.apply({"params": params}, add_noise(schedule, x0, noise, t), t)
        return jnp.mean((out - noise) ** 2)

    return make_train_step(loss_fn, tx, ema_decay)


def _config_from_meta(d: dict) -> UNet2DConfig:
    return UNet2DConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _hardware() -> dict:
    """Where this process trains: backend, device kind and the CPU cores it may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count()
    dev = jax.devices()[0]
    return {"backend": jax.default_backend(), "device": getattr(dev, "device_kind", str(dev)),
            "devices": jax.device_count(), "cpu_cores": cores}


def _init_params(unet: UNet2DModel, key, image_hw):
    c = unet.config
    return unet.init(key, jnp.zeros((1, *image_hw, c.in_channels)), jnp.zeros((1,)))["params"]


class _Start(NamedTuple):
    """Where a run started by ``--init`` begins (:func:`_starting_point`)."""

    config: UNet2DConfig
    params: dict
    ema: dict
    record: dict  # provenance: {"path", "step", "wall_s", "init_from"}, nested back to the first run
    commands: list  # the earlier runs' ``commands.txt`` lines, when their folders may be gone
    hardware: list  # the earlier runs' hardware records


def _starting_point(init_from: str | Path) -> _Start:
    """The weights a run starts from: a pixel run folder (its weights and EMA; its record
    points at that folder) or an exported pixel prior (its weights, which are an EMA, as both;
    its record is the chain of runs in its ``training.json``, with their command lines and
    hardware, so that a model card can still name every stage once the run folders are gone,
    e.g. when training spans machines or sessions)."""
    path = Path(init_from)
    if checkpoint.exists(path / CHECKPOINT):
        ucfg, state, m = load_pixel_state(path)
        rec = {"path": str(path.resolve()), "step": m.get("step"), "wall_s": m.get("wall_s"),
               "init_from": m.get("init_from")}
        return _Start(ucfg, state["params"], state["ema"], rec, [], list(m.get("hardware", [])))
    if (path / "training.json").is_file() and (path / "unet").is_dir():
        from ..priors.pixel import PixelDiffusionPrior

        prior = PixelDiffusionPrior.from_pretrained(path)
        info = json.loads((path / "training.json").read_text())
        rec = None
        for st in info.get("pixel_stages") or [{"path": str(path.resolve()), "steps": info.get("pixel_steps"),
                                                 "wall_s": info.get("pixel_wall_s")}]:
            rec = {"path": st["path"], "step": st["steps"], "wall_s": st["wall_s"], "init_from": rec}
        return _Start(prior.config, prior.params, prior.params, rec, list(info.get("commands", [])),
                      list(info.get("hardware", [])))
    raise FileNotFoundError(f"{init_from}: neither a pixel run folder ({CHECKPOINT}.msgpack/{CHECKPOINT}.json) nor "
                            "an exported pixel prior (unet/ and training.json) to start from")


def run_pixel(data: str, out_dir: str | Path, cfg: PixelTrainConfig = PixelTrainConfig(), progress: bool = True,
              max_steps: int | None = None, unet_config: UNet2DConfig | None = None,
              init_from: str | Path | None = None) -> Path:
    """Train (or resume) the pixel-space DDPM; returns the checkpoint path.

    Args:
        data: dataset path (image folder, ``.tar(.gz)`` or ``.h5``; CIFAR-10 validation files
            are held out). Read once and cached in ``out_dir``.
        out_dir: run folder (``pixel.msgpack``/``pixel.json``, ``pixel_log.csv``,
            ``commands.txt``, ``dataset_cache.npz``).
        cfg: optimisation settings; a resumed run should be given the same ones (``steps``
            may grow: it is the run's target).
        progress: show a progress bar.
        max_steps: stop after this many steps in this call (checkpointing first).
        unet_config: the UNet (default :func:`bundled_pixel_config`); its ``sample_size``
            is set to the images' size. Ignored when resuming: the checkpoint's architecture
            is used.
        init_from: start from these weights instead of a random initialisation: another
            pixel run folder or an exported pixel prior (:func:`_starting_point`); the
            optimiser and the step count start afresh, as for the latent prior's
            ``--init``. Their architecture is used, and ignored once ``out_dir`` holds a
            checkpoint of its own.

    Raises:
        DatasetError: ``data`` does not exist (and no cached copy does), holds no images, or
            its images do not fit the UNet (channels, or a size not divisible by its
            downsamplings).
        BlockingIOError: another training process holds ``out_dir``.
        FileNotFoundError: ``init_from`` is neither a pixel run nor an exported pixel prior.
    """
    out = Path(out_dir)
    check_data(data, out)
    ckpt = out / CHECKPOINT
    own_meta = json.loads(ckpt.with_suffix(".json").read_text()) if checkpoint.exists(ckpt) else None
    start = _starting_point(init_from) if init_from is not None and own_meta is None else None
    lock = RunLock(out)
    try:
        if start is not None and not (out / "commands.txt").exists():  # the earlier stages' command lines
            (out / "commands.txt").write_text("".join(line + "\n" for line in start.commands))
        record_command(out)
        train, _ = load_train_val(data, out)
        hw = tuple(int(s) for s in train.images.shape[1:3])
        if own_meta is not None:  # resuming: the run's own architecture
            unet_cfg = _config_from_meta(own_meta["unet"])
        elif start is not None:
            unet_cfg = dataclasses.replace(start.config, sample_size=hw)
        else:
            unet_cfg = dataclasses.replace(unet_config or bundled_pixel_config(hw), sample_size=hw)
        m = unet_cfg.size_multiple
        if hw[0] % m or hw[1] % m or unet_cfg.in_channels != train.images.shape[-1]:
            raise DatasetError(f"{data}: images of {hw[0]}x{hw[1]}x{train.images.shape[-1]} do not fit the UNet "
                               f"({unet_cfg.in_channels} channels, sizes divisible by {m})")
        unet = UNet2DModel(unet_cfg)
        key = jax.random.PRNGKey(cfg.seed)
        tx, sched = diffusion_optimizer(cfg.lr, cfg.warmup, cfg.steps)
        state = new_train_state(_init_params(unet, key, hw), tx)
        if own_meta is not None:
            state, _ = checkpoint.restore(ckpt, state)
        elif start is not None:
            state = dict(state, params=start.params, ema=start.ema)
        hardware = list((own_meta or {}).get("hardware", []) or (start.hardware if start is not None else []))
        if _hardware() not in hardware:
            hardware.append(_hardware())
        meta = {"config": dataclasses.asdict(cfg), "unet": dataclasses.asdict(unet_cfg), "n_train": len(train),
                "flip": True, "scheduler": SCHEDULER_CONFIG, "hardware": hardware}
        init_rec = start.record if start is not None else (own_meta or {}).get("init_from")
        if init_rec:  # provenance of the starting weights (for the model card)
            meta["init_from"] = init_rec
        schedule = training_schedule()
        images = train.images

        def make_batch(step, idx, flips):
            x = apply_flips(images[idx], flips).astype(np.float32) / 127.5 - 1.0
            return (jnp.asarray(x),)

        run_steps(state, make_step(unet, tx, schedule, cfg.ema_decay), make_batch, n_items=len(train), cfg=cfg,
                  sched=sched, key=key, ckpt=ckpt, meta=meta,
                  log=CSVLog(out / "pixel_log.csv", ["step", "loss", "lr", "wall_s"]), desc="pixel",
                  progress=progress, max_steps=max_steps, flip=True)
    finally:
        lock.release()
    return ckpt


def load_pixel_state(run_dir: str | Path):
    """``(unet_config, state, meta)`` of a pixel run folder's checkpoint (``state["ema"]`` is
    what gets exported).

    Raises:
        FileNotFoundError: the folder holds no pixel checkpoint.
    """
    ckpt = Path(run_dir) / CHECKPOINT
    if not checkpoint.exists(ckpt):
        raise FileNotFoundError(f"{run_dir}: no pixel checkpoint ({CHECKPOINT}.msgpack/{CHECKPOINT}.json); "
                                "run `diffprior train pixel` first")
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    ucfg = _config_from_meta(meta["unet"])
    cfg = PixelTrainConfig(**meta["config"])
    tx, _ = diffusion_optimizer(cfg.lr, cfg.warmup, cfg.steps)
    template = new_train_state(_init_params(UNet2DModel(ucfg), jax.random.PRNGKey(0), ucfg.sample_size), tx)
    state, meta = checkpoint.restore(ckpt, template)
    return ucfg, state, meta
