"""The stage-1 autoencoder's settings and checkpoint reading, shared by every training stage.

Both :mod:`diffprior.train.vae` (which writes these checkpoints) and
:mod:`diffprior.train.ldm` / :mod:`diffprior.train.export` (which read them) import from here,
so that no training module needs to import another one back.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from ..models.config import VAEConfig
from ..models.vae import AutoencoderKL
from . import checkpoint

# The bundled prior's autoencoder: 32x32x3 -> 8x8x4 (downsampling factor 4).
BUNDLED_VAE = VAEConfig(block_out_channels=(32, 64, 64), layers_per_block=1, latent_channels=4,
                        norm_num_groups=32, scaling_factor=1.0, sample_size=32)


@dataclasses.dataclass(frozen=True)
class VAETrainConfig:
    """Optimisation settings of the autoencoder."""

    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    final_lr_frac: float = 0.05
    kl_weight: float = 1e-6
    seed: int = 0
    ckpt_every: int = 250
    eval_every: int = 500
    log_every: int = 50
    n_eval: int = 256
    decoder_only: bool = False  # fine-tune the decoder with the encoder frozen (latents unchanged)


def vae_optimizer(cfg: VAETrainConfig):
    """The autoencoder's optimiser and learning-rate schedule ``(tx, sched)``.

    Also needed to read a checkpoint back, whose optimiser state has this structure.
    """
    warmup = min(cfg.warmup, max(cfg.steps // 10, 1))
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, max(cfg.steps, warmup + 1),
                                               cfg.lr * cfg.final_lr_frac)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched)), sched


def load_vae(vae_dir: str | Path):
    """Trained autoencoder ``(config, params, metadata)`` from a stage-1 run folder."""
    ckpt = Path(vae_dir) / "vae"
    if not checkpoint.exists(ckpt):
        raise FileNotFoundError(f"{vae_dir}: no autoencoder checkpoint (vae.msgpack/vae.json); "
                                "run `diffprior train vae` first")
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    cfg = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["model"].items()})
    model = AutoencoderKL(cfg)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
    tx, _ = vae_optimizer(VAETrainConfig(**meta["config"]))
    template = {"params": params, "opt_state": tx.init(params), "step": 0, "wall": 0.0}
    state, meta = checkpoint.restore(ckpt, template)
    return cfg, state["params"], meta
