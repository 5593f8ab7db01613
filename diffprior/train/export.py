"""Write a trained prior as a diffusers-layout folder that ``from_pretrained`` (and diffusers) load."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..models.clip import CLIPTextModel
from ..models.config import CLIPTextConfig, UNetConfig, to_diffusers_dict
from ..models.convert import params_to_state_dict
from ..models.unet import UNet2DConditionModel
from . import checkpoint
from .autoencoder_io import load_vae
from .common import RunLock, diffusion_optimizer, new_train_state

SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
    "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False,
}


def _tuplify(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def write_component(folder: Path, config: dict, params, weights_name: str, dtype=np.float32) -> None:
    """Write ``config.json`` and a safetensors file of ``params`` in PyTorch naming."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.astype(dtype) for k, v in params_to_state_dict(params).items()}
    save_file(state, str(folder / weights_name))


def load_ldm_state(ldm_dir: str | Path):
    """EMA UNet/text parameters and metadata from a stage-2 run folder."""
    from .ldm import LDMTrainConfig, MAX_TOKENS

    ckpt = Path(ldm_dir) / "ldm"
    if not checkpoint.exists(ckpt):
        raise FileNotFoundError(f"{ldm_dir}: no UNet checkpoint (ldm.msgpack/ldm.json); run `diffprior train ldm`")
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    ucfg, tcfg = UNetConfig(**_tuplify(meta["unet"])), CLIPTextConfig(**_tuplify(meta["text"]))
    cfg = LDMTrainConfig(**meta["config"])
    unet, text = UNet2DConditionModel(ucfg), CLIPTextModel(tcfg)
    params = {
        "unet": unet.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, ucfg.in_channels)), jnp.zeros((1,)),
                          jnp.zeros((1, MAX_TOKENS, ucfg.cross_attention_dim)))["params"],
        "text": text.init(jax.random.PRNGKey(0), jnp.zeros((1, MAX_TOKENS), jnp.int32))["params"],
    }
    tx, _ = diffusion_optimizer(cfg.lr, cfg.warmup, cfg.steps)
    template = new_train_state(params, tx)
    state, meta = checkpoint.restore(ckpt, template)
    return ucfg, tcfg, state, meta


def lineage(run_dir: str | Path, name: str) -> list[dict]:
    """The runs that produced the checkpoint ``<run_dir>/<name>.json``, oldest first.

    Follows the ``init_from`` records of fine-tuning runs (``diffprior train ... --init``);
    each entry is ``{"path", "steps", "wall_s", "decoder_only"}`` with the steps and wall time
    of that run alone. A starting run whose folder is gone is described by the record kept
    in its successor.
    """
    chain, path = [], Path(run_dir)
    while True:
        m = json.loads((path / f"{name}.json").read_text())
        chain.insert(0, {"path": str(path.resolve()), "steps": m.get("step"), "wall_s": m.get("wall_s"),
                         "decoder_only": bool(m.get("config", {}).get("decoder_only", False))})
        init = m.get("init_from")
        if not init:
            return chain
        path = Path(init["path"])
        if not (path / f"{name}.json").is_file():
            while init:  # the records alone
                chain.insert(0, {"path": init["path"], "steps": init.get("step"), "wall_s": init.get("wall_s"),
                                 "decoder_only": None})
                init = init.get("init_from")
            return chain


def export_prior(vae_dir: str | Path, ldm_dir: str | Path, out: str | Path, *,
                 preset_table: str | None = "cifar10", name: str | None = None) -> Path:
    """Assemble ``unet/ vae/ text_encoder/ tokenizer/ scheduler/`` from the two run folders.

    Also writes the prior's metadata ``diffprior.json`` (:mod:`diffprior.priors.metadata`):
    ``name`` (default: the folder name of ``out``), ``preset_table`` (default ``"cifar10"``:
    the priors trained here are CIFAR-10 models, for which the searched solver presets of
    :mod:`diffprior.solvers.tuned` were made; ``None``: the paper's ImageNet presets) and
    the native image size.

    Raises ``BlockingIOError`` if a training process holds either folder: its checkpoint may
    change under the export (a trainer stopped by a signal writes one last checkpoint).
    """
    out = Path(out)
    folders = {Path(d).resolve() for d in (vae_dir, ldm_dir) if Path(d).is_dir()}
    locks = []
    try:
        for d in sorted(folders):
            locks.append(RunLock(d))
        return _export(vae_dir, ldm_dir, out, preset_table=preset_table, name=name)
    finally:
        for lock in locks:
            lock.release()


def _export(vae_dir, ldm_dir, out: Path, preset_table: str | None = "cifar10", name: str | None = None) -> Path:
    from ..priors.metadata import PriorMetadata, write_metadata

    metadata = PriorMetadata(name=name or out.resolve().name, preset_table=preset_table)  # validates early
    vae_cfg, vae_params, vae_meta = load_vae(vae_dir)
    ucfg, tcfg, state, meta = load_ldm_state(ldm_dir)
    vae_cfg = dataclasses.replace(vae_cfg, scaling_factor=round(float(meta["scaling_factor"]), 5))
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    # the UNet is stored in float16 to keep the bundled prior small; it loads as float32
    write_component(tmp / "unet", to_diffusers_dict(ucfg), state["ema"]["unet"], "diffusion_pytorch_model.safetensors",
                    dtype=np.float16)
    write_component(tmp / "vae", to_diffusers_dict(vae_cfg), vae_params, "diffusion_pytorch_model.safetensors")
    write_component(tmp / "text_encoder", to_diffusers_dict(tcfg), state["ema"]["text"], "model.safetensors")
    shutil.copytree(Path(ldm_dir) / "tokenizer", tmp / "tokenizer")
    (tmp / "scheduler").mkdir()
    (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2))
    (tmp / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False,
    }, indent=2))
    (tmp / "training.json").write_text(json.dumps({
        "vae_steps": vae_meta["step"], "vae_wall_s": vae_meta.get("wall_s"),
        "vae_stages": lineage(vae_dir, "vae"), "ldm_stages": lineage(ldm_dir, "ldm"),
        "ldm_steps": meta["step"], "ldm_wall_s": meta.get("wall_s"),
        "scaling_factor": meta["scaling_factor"], "templates": meta["templates"],
        "caption_drop": meta["caption_drop"],
    }, indent=2))
    size = ucfg.sample_size * vae_cfg.downsample_factor
    write_metadata(tmp, metadata, image_size=(size, size))
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out


# ----------------------------------------------------------------------------- pixel-space DDPM
#: ``model_index.json`` of an exported pixel prior (diffusers' ``DDPMPipeline`` layout).
PIXEL_MODEL_INDEX = {"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
                     "scheduler": ["diffusers", "DDPMScheduler"]}


def image_grid(images, cols: int, pad: int = 2) -> np.ndarray:
    """``uint8`` grid ``(rows*(H+pad)+pad, cols*(W+pad)+pad, C)`` of ``[0, 1]`` images ``(N, H, W, C)``
    on a white background, row by row."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    n, h, w, c = images.shape
    rows = -(-n // cols)
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for k in range(n):
        r, q = divmod(k, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[k]
    return np.rint(grid * 255.0).astype(np.uint8)


def command_lines(runs) -> list:
    """The lines of the ``commands.txt`` of each run folder that still exists, in order, once
    each (time stamp and command line), so that a later stage started from the exported folder
    (``diffprior train pixel --init``) can carry them on."""
    lines = []
    for run in runs:
        f = Path(run) / "commands.txt"
        if f.is_file():
            lines += [ln for ln in f.read_text().splitlines() if ln.strip() and ln not in lines]
    return lines


def export_pixel_prior(run_dir: str | Path, out: str | Path, *, preset_table: str | None = "cifar10",
                       name: str | None = None, samples: int = 64, sample_steps: int = 50, seed: int = 0) -> Path:
    """Write a ``diffprior train pixel`` run as a diffusers ``DDPMPipeline`` folder.

    ``unet/`` (``config.json`` and the EMA weights in float32,
    ``diffusion_pytorch_model.safetensors``), ``scheduler/scheduler_config.json`` (DDPM's
    linear schedule, :data:`diffprior.train.pixel.SCHEDULER_CONFIG`), ``model_index.json``,
    ``diffprior.json`` (``latent=false, conditioning=false``, the native size, ``name``
    (default: the folder name of ``out``) and ``preset_table``, as :func:`export_prior`),
    ``training.json`` (the run's steps, wall time, settings and hardware, its chain of runs and their
    command lines) and, unless
    ``samples`` is 0, ``samples.png``: ``samples`` DDIM samples (``sample_steps`` steps,
    ``eta = 0``, key ``seed``) of the exported folder as loaded back by
    :meth:`~diffprior.priors.pixel.PixelDiffusionPrior.from_pretrained`, 8 per row.

    Raises:
        FileNotFoundError: ``run_dir`` holds no pixel checkpoint.
        BlockingIOError: a training process holds ``run_dir``.
    """
    out = Path(out)
    lock = RunLock(run_dir) if Path(run_dir).is_dir() else None
    try:
        return _export_pixel(Path(run_dir), out, preset_table, name, samples, sample_steps, seed)
    finally:
        if lock is not None:
            lock.release()


def _export_pixel(run_dir: Path, out: Path, preset_table, name, samples: int, sample_steps: int, seed: int) -> Path:
    from PIL import Image

    from ..models.unet2d import WEIGHTS_NAME
    from ..priors.metadata import PriorMetadata, write_metadata
    from ..priors.pixel import SCHEDULER_FILE, PixelDiffusionPrior
    from ..sampling import sample_unconditional
    from .pixel import CHECKPOINT, SCHEDULER_CONFIG, load_pixel_state

    ucfg, state, meta = load_pixel_state(run_dir)
    metadata = PriorMetadata(name=name or out.resolve().name, preset_table=preset_table, image_size=ucfg.sample_size,
                             latent=False, conditioning=False)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_component(tmp / "unet", to_diffusers_dict(ucfg), state["ema"], WEIGHTS_NAME)
    (tmp / "scheduler").mkdir()
    (tmp / "scheduler" / SCHEDULER_FILE).write_text(json.dumps(SCHEDULER_CONFIG, indent=2))
    (tmp / "model_index.json").write_text(json.dumps(PIXEL_MODEL_INDEX, indent=2))
    cfg = meta["config"]
    stages = lineage(run_dir, CHECKPOINT)
    info = {
        "pixel_steps": meta["step"], "pixel_wall_s": meta.get("wall_s"), "pixel_stages": stages,
        "commands": command_lines(st["path"] for st in stages),
        "batch_size": cfg["batch_size"], "lr": cfg["lr"], "warmup": cfg["warmup"], "ema_decay": cfg["ema_decay"],
        "seed": cfg["seed"], "n_train": meta["n_train"], "flip": meta.get("flip", True),
        "hardware": meta.get("hardware", []),
    }
    write_metadata(tmp, metadata)
    if samples:
        prior = PixelDiffusionPrior.from_pretrained(tmp)
        images = sample_unconditional(prior, samples, jax.random.PRNGKey(seed), num_steps=sample_steps)
        Image.fromarray(image_grid(np.asarray(images), cols=min(8, samples))).save(tmp / "samples.png")
        info["samples"] = {"count": samples, "ddim_steps": sample_steps, "eta": 0.0, "seed": seed}
    (tmp / "training.json").write_text(json.dumps(info, indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out
