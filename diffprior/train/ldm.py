"""Train the text-conditioned latent UNet and its CLIP-style text encoder (stage 2).

Objective (Ho et al. 2020, Eq. 14; Rombach et al. 2022, Eq. 2), on latents of the frozen
stage-1 autoencoder scaled to unit variance:

.. math::
    \\mathcal{L} = \\mathbb{E}_{z_0, c, \\epsilon, t}\\,
        \\|\\epsilon - \\epsilon_\\theta(\\sqrt{\\bar\\alpha_t} z_0 + \\sqrt{1-\\bar\\alpha_t}\\epsilon,
        t, \\tau_\\phi(c))\\|_2^2,

with SD's ``scaled_linear`` schedule (``beta`` 0.00085 to 0.012, ``T = 1000``), the text
encoder :math:`\\tau_\\phi` trained jointly from scratch, 10 % of captions replaced by ``""``
(so the null prompt is the unconditional model, as in SD), and an exponential moving average
of the weights that is what gets exported.

Captions are drawn from a few templates per class (:data:`TEMPLATES`), so that prompts such
as ``"a photo"`` or ``"a high quality photo"`` (P2L's initial prompt) are in distribution.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..models.clip import CLIPTextModel
from ..models.config import CLIPTextConfig, UNetConfig, VAEConfig
from ..models.unet import UNet2DConditionModel
from ..models.vae import AutoencoderKL
from ..prior import load_tokenizer
from ..schedule import Schedule, add_noise
from . import checkpoint
from .autoencoder_io import load_vae
from .common import (CSVLog, RunLock, diffusion_optimizer, load_train_val, make_train_step, new_train_state,
                     record_command, run_steps)
from .tokenizer import save_tokenizer

TEMPLATES = ("a photo of a {}", "a high quality photo of a {}", "a picture of a {}", "{}")
EXTRA_WORDS = ("a", "an", "photo", "of", "high", "quality", "picture", "image", "the")
MAX_TOKENS = 16
CAPTION_DROP = 0.1


def bundled_unet_config(cross_attention_dim: int) -> UNetConfig:
    """The bundled prior's UNet on 8x8x4 latents."""
    return UNetConfig(
        in_channels=4, out_channels=4, block_out_channels=(64, 128, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=(1, 1, 1), transformer_layers_per_block=(1, 1, 1), num_attention_heads=(4, 4, 4),
        only_cross_attention=(False, False, False), cross_attention_dim=cross_attention_dim,
        norm_num_groups=32, sample_size=8,
    )


def bundled_text_config(vocab_size: int, eos_token_id: int) -> CLIPTextConfig:
    """The bundled prior's text encoder (CLIP architecture, 2 layers, width 128)."""
    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=MAX_TOKENS, hidden_act="quick_gelu",
                          eos_token_id=eos_token_id)


@dataclasses.dataclass(frozen=True)
class LDMTrainConfig:
    """Optimisation settings of stage 2."""

    steps: int = 40000
    batch_size: int = 128
    lr: float = 3e-4
    warmup: int = 500
    ema_decay: float = 0.999
    seed: int = 0
    ckpt_every: int = 250
    log_every: int = 50
    encode_batch: int = 256


def encode_dataset(vae_params, vae_cfg: VAEConfig, images_u8: np.ndarray, batch: int, progress=True):
    """Posterior ``(mean, std)`` (unscaled) of every image and of its mirror image, float32."""
    from tqdm.auto import tqdm

    model = AutoencoderKL(vae_cfg)
    enc = jax.jit(lambda p, x: model.apply({"params": p}, x, method=AutoencoderKL.encode))
    means, stds = [], []
    for flip in (False, True):
        for i in tqdm(range(0, len(images_u8), batch), desc=f"encode{' (flipped)' if flip else ''}",
                      disable=not progress):
            x = images_u8[i:i + batch]
            x = x[:, :, ::-1] if flip else x
            m, lv = enc(vae_params, jnp.asarray(x.astype(np.float32) / 127.5 - 1.0))
            means.append(np.asarray(m))
            stds.append(np.asarray(jnp.exp(0.5 * lv)))
    return np.concatenate(means), np.concatenate(stds)


def caption_table(tokenizer, classes) -> np.ndarray:
    """Token ids ``(len(TEMPLATES) + 1, n_classes, L)``; the last row is the null prompt."""
    rows = []
    for tpl in TEMPLATES:
        ids = tokenizer([tpl.format(c) for c in classes], padding="max_length", max_length=MAX_TOKENS,
                        truncation=True)["input_ids"]
        rows.append(ids)
    rows.append(tokenizer([""] * len(classes), padding="max_length", max_length=MAX_TOKENS)["input_ids"])
    return np.asarray(rows, np.int32)


def make_step(unet, text, tx, schedule: Schedule, ema_decay: float):
    """Jitted step ``(state, z0, ids, key) -> (state, loss)`` with EMA update."""

    def loss_fn(params, z0, ids, key):
        kt, kn = jax.random.split(key)
        t = jax.random.randint(kt, (z0.shape[0],), 0, schedule.num_train_timesteps)
        noise = jax.random.normal(kn, z0.shape)
        emb = text.apply({"params": params["text"]}, ids)
        out = unet.apply({"params": params["unet"]}, add_noise(schedule, z0, noise, t), t, emb)
        return jnp.mean((out - noise) ** 2)

    return make_train_step(loss_fn, tx, ema_decay)


def run_ldm(data: str, vae_dir: str, out_dir: str, cfg: LDMTrainConfig = LDMTrainConfig(),
            progress: bool = True, max_steps: int | None = None, unet_config: UNetConfig | None = None,
            text_overrides: dict | None = None, init_from: str | Path | None = None) -> Path:
    """Train (or resume) the UNet and text encoder on the frozen autoencoder's latents.

    Args:
        data: dataset path (CIFAR-10 validation files are held out).
        vae_dir: stage-1 run folder.
        out_dir: run folder (``ldm.msgpack``/``ldm.json``, ``ldm_log.csv``, ``latents.npz``,
            ``tokenizer/``).
        cfg: optimisation settings.
        progress: show a progress bar.
        max_steps: stop after this many steps in this call (checkpointing first).
        unet_config: UNet architecture (default :func:`bundled_unet_config`); its
            ``cross_attention_dim`` is set to the text encoder's width.
        text_overrides: fields replacing those of :func:`bundled_text_config`.
        init_from: another stage-2 run folder whose UNet and text encoder (weights, EMA,
            tokenizer, architecture) start this run, with a fresh optimiser and step count: to
            fine-tune the diffusion model onto the latents of a changed autoencoder. Ignored
            when ``out_dir`` already holds a checkpoint (the run then resumes).
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    lock = RunLock(out)
    record_command(out)
    train, _ = load_train_val(data, Path(vae_dir))
    vae_cfg, vae_params, _ = load_vae(vae_dir)

    lat_file = out / "latents.npz"
    if lat_file.is_file():
        z = np.load(lat_file)
        means, stds, scale = z["means"], z["stds"], float(z["scale"])
    else:
        means, stds = encode_dataset(vae_params, vae_cfg, train.images, cfg.encode_batch, progress)
        rng = np.random.default_rng(cfg.seed)
        sub = rng.choice(len(means), size=min(10000, len(means)), replace=False)
        sample = means[sub] + stds[sub] * rng.standard_normal(means[sub].shape)
        scale = float(1.0 / np.std(sample))  # SD's recipe: unit-variance latents
        np.savez(out / "latents.tmp.npz", means=means, stds=stds, scale=scale)
        (out / "latents.tmp.npz").replace(lat_file)
    labels = np.concatenate([train.labels, train.labels])

    tok_dir = out / "tokenizer"
    init_meta = own_meta = None
    if (out / "ldm.json").is_file():  # resuming: the run's own architecture and provenance
        own_meta = json.loads((out / "ldm.json").read_text())
    elif init_from is not None:
        if not (Path(init_from) / "ldm.json").is_file():
            raise FileNotFoundError(f"{init_from}: no UNet checkpoint (ldm.msgpack/ldm.json) to start from")
        init_meta = json.loads((Path(init_from) / "ldm.json").read_text())
        if not (tok_dir / "vocab.json").is_file():  # same vocabulary, so the same token ids
            shutil.copytree(Path(init_from) / "tokenizer", tok_dir, dirs_exist_ok=True)
    arch = own_meta or init_meta
    if arch is not None:
        unet_config = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch["unet"].items()})
        text_overrides = arch["text"]
    words = set(EXTRA_WORDS) | {w for c in train.classes for w in c.split()}
    if not (tok_dir / "vocab.json").is_file():
        save_tokenizer(tok_dir, sorted(words), MAX_TOKENS)
    tokenizer = load_tokenizer(tok_dir)
    table = caption_table(tokenizer, train.classes)
    vocab = tokenizer.get_vocab()
    text_cfg = dataclasses.replace(bundled_text_config(len(vocab), vocab["<|endoftext|>"]), **(text_overrides or {}))
    unet_cfg = dataclasses.replace(unet_config or bundled_unet_config(text_cfg.hidden_size),
                                   cross_attention_dim=text_cfg.hidden_size)
    lat_hw = means.shape[1:3]
    unet, text = UNet2DConditionModel(unet_cfg), CLIPTextModel(text_cfg)
    schedule = Schedule.create()

    key = jax.random.PRNGKey(cfg.seed)
    k1, k2 = jax.random.split(key)
    params = {
        "unet": unet.init(k1, jnp.zeros((1, *lat_hw, unet_cfg.in_channels)), jnp.zeros((1,)),
                          jnp.zeros((1, MAX_TOKENS, text_cfg.hidden_size)))["params"],
        "text": text.init(k2, jnp.zeros((1, MAX_TOKENS), jnp.int32))["params"],
    }
    tx, sched = diffusion_optimizer(cfg.lr, cfg.warmup, cfg.steps)
    state = new_train_state(params, tx)
    ckpt = out / "ldm"
    if checkpoint.exists(ckpt):
        state, _ = checkpoint.restore(ckpt, state)
    elif init_meta is not None:
        start, _ = checkpoint.restore(Path(init_from) / "ldm", state)
        state = dict(state, params=start["params"], ema=start["ema"])
    train_step = make_step(unet, text, tx, schedule, cfg.ema_decay)
    meta = {"config": dataclasses.asdict(cfg), "unet": dataclasses.asdict(unet_cfg),
            "text": dataclasses.asdict(text_cfg), "vae": dataclasses.asdict(vae_cfg),
            "scaling_factor": scale, "n_train": len(train), "templates": TEMPLATES,
            "caption_drop": CAPTION_DROP}
    if init_meta is not None:  # provenance of the starting weights (for the model card)
        meta["init_from"] = {"path": str(Path(init_from).resolve()), "step": init_meta.get("step"),
                             "wall_s": init_meta.get("wall_s"), "init_from": init_meta.get("init_from")}
    elif own_meta is not None and own_meta.get("init_from"):
        meta["init_from"] = own_meta["init_from"]

    def make_batch(step, idx, flips):
        rng = np.random.default_rng([cfg.seed, step, 2])
        z0 = (means[idx] + stds[idx] * rng.standard_normal(means[idx].shape).astype(np.float32)) * scale
        tpl = rng.integers(0, len(TEMPLATES), len(idx))
        tpl = np.where(rng.random(len(idx)) < CAPTION_DROP, len(TEMPLATES), tpl)
        return jnp.asarray(z0, jnp.float32), jnp.asarray(table[tpl, labels[idx]])

    try:
        run_steps(state, train_step, make_batch, n_items=len(means), cfg=cfg, sched=sched, key=key, ckpt=ckpt,
                  meta=meta, log=CSVLog(out / "ldm_log.csv", ["step", "loss", "lr", "wall_s"]), desc="ldm",
                  progress=progress, max_steps=max_steps, flip=False)
    finally:
        lock.release()
    return ckpt
