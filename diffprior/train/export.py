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
from .common import RunLock

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
    import optax

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
    sched = optax.constant_schedule(cfg.lr)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=0.0))
    template = {"params": params, "opt_state": tx.init(params), "ema": params,
                "step": jnp.zeros((), jnp.int32), "wall": 0.0}
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
