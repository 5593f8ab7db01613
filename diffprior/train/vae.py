"""Train the KL-regularised autoencoder (stage 1 of the latent diffusion model).

Loss per image (Rombach et al. 2022, Sec. 3 and App. G, without the adversarial and
perceptual terms, which our 2-core budget cannot afford):

.. math::
    \\mathcal{L} = \\tfrac{1}{P}\\|x - D(z)\\|_2^2 + \\tfrac{1}{P}\\|x - D(z)\\|_1
        + \\beta\\, \\tfrac{1}{P} \\mathrm{KL}(q(z|x)\\,\\|\\,\\mathcal{N}(0, I)),
    \\quad z \\sim q(z|x),

with ``P`` the number of pixel values and :math:`\\beta = 10^{-6}` as in SD's KL-f8 VAE, on
images in ``[-1, 1]``. The run is resumable: ``run_vae`` continues from the last checkpoint
in ``out_dir`` with the same data order and random stream.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..data import apply_flips, batches
from ..models.config import VAEConfig
from ..models.vae import AutoencoderKL
from . import checkpoint
from .autoencoder_io import BUNDLED_VAE, VAETrainConfig, load_vae, vae_optimizer
from .common import CSVLog, RunLock, StopFlag, Timer, load_train_val, record_command

FROZEN_FOR_DECODER_ONLY = ("encoder", "quant_conv")


def make_step(model: AutoencoderKL, tx, kl_weight: float, decoder_only: bool = False):
    """The jitted training step ``(params, opt_state, x, key) -> (params, opt_state, stats)``.

    With ``decoder_only`` the encoder's gradients are zero, so its parameters (and therefore
    every latent a UNet was trained on) stay bit-for-bit unchanged while the decoder improves
    (the "ft-MSE" recipe of SD's released decoders).
    """

    def loss_fn(params, x, key):
        mean, logvar = model.apply({"params": params}, x, method=AutoencoderKL.encode)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
        xr = model.apply({"params": params}, z, method=AutoencoderKL.decode)
        pixels = np.prod(x.shape[1:])
        mse = jnp.mean((x - xr) ** 2)
        l1 = jnp.mean(jnp.abs(x - xr))
        kl = 0.5 * jnp.sum(mean ** 2 + jnp.exp(logvar) - 1.0 - logvar) / (x.shape[0] * pixels)
        return mse + l1 + kl_weight * kl, (mse, kl)

    @jax.jit
    def step(params, opt_state, x, key):
        (loss, (mse, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, key)
        if decoder_only:
            grads = {k: jax.tree_util.tree_map(jnp.zeros_like, g) if k in FROZEN_FOR_DECODER_ONLY else g
                     for k, g in grads.items()}
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss, "mse": mse, "kl": kl}

    return step


def psnr_np(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of ``[0, 1]`` images ``(N, H, W, C)``."""
    mse = np.mean((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2, axis=(1, 2, 3))
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-20))


def make_reconstruct(model: AutoencoderKL):
    """Jitted ``params, x [-1,1] -> D(mean(E(x)))``."""
    return jax.jit(lambda params, x: model.apply({"params": params}, x))


def evaluate_psnr(reconstruct, params, images_u8: np.ndarray, batch: int = 128) -> np.ndarray:
    """Per-image PSNR (dB, [0, 1] range) of encode-decode with the posterior mean."""
    out = []
    for i in range(0, len(images_u8), batch):
        x = images_u8[i:i + batch].astype(np.float32) / 127.5 - 1.0
        xr = np.asarray(reconstruct(params, jnp.asarray(x)))
        out.append(psnr_np((x + 1) / 2, np.clip((xr + 1) / 2, 0, 1)))
    return np.concatenate(out)


def run_vae(data: str, out_dir: str, cfg: VAETrainConfig = VAETrainConfig(),
            model_cfg: VAEConfig = BUNDLED_VAE, progress: bool = True, max_steps: int | None = None,
            init_from: str | None = None) -> Path:
    """Train (or resume training) the autoencoder; returns the checkpoint path.

    Args:
        data: dataset path (folder, tar or HDF5; CIFAR-10 validation files are held out).
        out_dir: run folder (checkpoint ``vae.msgpack``/``vae.json``, ``vae_log.csv``).
        cfg: optimisation settings.
        model_cfg: autoencoder architecture.
        progress: show a progress bar.
        max_steps: stop after this many steps in this call (checkpointing first).
        init_from: another stage-1 run folder whose weights (and architecture) start this run
            (used with ``cfg.decoder_only`` to fine-tune a trained decoder).
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    lock = RunLock(out)
    record_command(out)
    train, val = load_train_val(data, out)
    key = jax.random.PRNGKey(cfg.seed)
    ckpt = out / "vae"
    if checkpoint.exists(ckpt):  # resume: the architecture is the checkpoint's
        meta0 = json.loads(ckpt.with_suffix(".json").read_text())
        model_cfg = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta0["model"].items()})
    elif init_from is not None:
        model_cfg, params, _ = load_vae(init_from)
    model = AutoencoderKL(model_cfg)
    tx, sched = vae_optimizer(cfg)
    if init_from is None or checkpoint.exists(ckpt):
        params = model.init(key, jnp.zeros((1, 32, 32, 3)))["params"]
    state = {"params": params, "opt_state": tx.init(params), "step": 0, "wall": 0.0}
    if checkpoint.exists(ckpt):
        state, _ = checkpoint.restore(ckpt, state)
    step0 = int(state["step"])
    train_step = make_step(model, tx, cfg.kl_weight, cfg.decoder_only)
    reconstruct = make_reconstruct(model)
    log = CSVLog(out / "vae_log.csv", ["step", "loss", "mse", "kl", "lr", "val_psnr", "wall_s"])
    timer = Timer(float(state["wall"]))
    flag = StopFlag()
    params, opt_state = state["params"], state["opt_state"]
    meta = {"config": dataclasses.asdict(cfg), "model": dataclasses.asdict(model_cfg), "n_train": len(train)}
    if init_from is not None:  # provenance of the starting weights (for the model card)
        init_meta = json.loads((Path(init_from) / "vae.json").read_text())
        meta["init_from"] = {"path": str(Path(init_from).resolve()), "step": init_meta.get("step"),
                             "wall_s": init_meta.get("wall_s"), "init_from": init_meta.get("init_from")}

    def save(step):
        checkpoint.save(ckpt, {"params": params, "opt_state": opt_state, "step": step, "wall": timer.total},
                        dict(meta, step=step, wall_s=timer.total))

    bar = tqdm(total=cfg.steps, initial=step0, desc="vae", disable=not progress, dynamic_ncols=True)
    end = cfg.steps if max_steps is None else min(cfg.steps, step0 + max_steps)
    step = step0
    for step, idx, flips in batches(len(train), cfg.batch_size, cfg.seed, start_step=step0):
        if step >= end or flag.stop:
            break
        x = apply_flips(train.images[idx], flips).astype(np.float32) / 127.5 - 1.0
        params, opt_state, stats = train_step(params, opt_state, jnp.asarray(x),
                                              jax.random.fold_in(key, step))
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == end:
            row = {k: float(v) for k, v in stats.items()}
            bar.set_postfix(loss=f"{row['loss']:.4f}", psnr=f"{10 * math.log10(4 / max(row['mse'], 1e-12)):.1f}")
            val_psnr = ""
            if done % cfg.eval_every == 0 or done == cfg.steps:
                val_psnr = float(np.mean(evaluate_psnr(reconstruct, params, val.images[:cfg.n_eval])))
                bar.write(f"step {done}: validation PSNR {val_psnr:.2f} dB ({cfg.n_eval} images)")
            log.write(step=done, lr=float(sched(step)), val_psnr=val_psnr, wall_s=round(timer.total, 1), **row)
        if done % cfg.ckpt_every == 0:
            save(done)
    save(step)  # the loop always leaves by ``break``: ``step`` steps are complete
    bar.close()
    flag.restore()
    lock.release()
    return ckpt
