"""Write the model card of an exported prior from its training records and validation results.

Every number in the card is read from a file: ``training.json`` (written by
:func:`diffprior.train.export.export_prior`), the run folders' CSV logs and, when present,
``benchmarks/results/prior_quality.json`` (written by ``benchmarks/prior_quality.py``).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from ..prior import count_params, weights_fingerprint


#: Where the bundled latent prior was trained (stated in its card; its records predate ``hardware``).
LATENT_HARDWARE = "2 CPU cores (shared with other work), no accelerator"


def _last_row(path: Path, column: str, max_step: int | None = None):
    """Last logged row with a value in ``column`` at or before ``max_step`` (the exported step)."""
    if not path.is_file():
        return None
    rows = [r for r in csv.DictReader(open(path)) if r.get(column) not in (None, "")
            and (max_step is None or int(r["step"]) <= max_step)]
    return rows[-1] if rows else None


def quality_targets(q: dict) -> list:
    """Markdown lines stating, target by target, whether the measured figures meet the prior's bars."""
    rows = []
    if "vae_psnr" in q:
        v = q["vae_psnr"]["mean"]
        rows.append(("autoencoder PSNR >= 25 dB", f"{v:.2f} dB", v >= 25.0))
    for t, d in q.get("text_conditioning", {}).items():
        rows.append((f"noise MSE at t = {t}: correct prompt < empty and < wrong class",
                     f"{d['correct']['mean']:.4f} / {d['empty']['mean']:.4f} / {d['wrong']['mean']:.4f}", d["holds"]))
    r = q.get("restoration", {})
    for task, base, what in (("sr4", "bicubic", "LDPS beats bicubic on SR x4 (LPIPS)"),
                             ("inpaint_box", "tv_admm", "LDPS beats TV-ADMM on box inpainting (LPIPS)")):
        if task in r:
            a, b = r[task]["ldps"]["lpips"]["mean"], r[task][base]["lpips"]["mean"]
            rows.append((what, f"{a:.4f} vs {b:.4f}", a < b))
    if not rows:
        return []
    return (["## Quality targets", "", "| target | measured | met |", "|---|---|---|"]
            + [f"| {w} | {m} | {'yes' if ok else '**no**'} |" for w, m, ok in rows] + [""])


def describe_stages(stages: list, what: str) -> str:
    """One sentence for a chain of training runs (:func:`~diffprior.train.export.lineage`)."""

    def hours(st):
        return f" ({st['wall_s'] / 3600:.2f} h)" if st.get("wall_s") else ""

    parts = [f"{stages[0]['steps']} steps{hours(stages[0])}"]
    for st in stages[1:]:
        how = ("the decoder alone fine-tuned (encoder frozen, so the latents are unchanged)" if st.get("decoder_only")
               else "all weights fine-tuned" if what == "autoencoder"
               else "continued from those weights with a fresh optimiser" if what == "pixel diffusion model"
               else "fine-tuned on the latents of the autoencoder above")
        parts.append(f"then {how} for {st['steps']} more steps{hours(st)}")
    return ", ".join(parts)


def write_card(prior_dir: str | Path, vae_dir: str | Path, ldm_dir: str | Path,
               quality_json: str | Path | None = None, commands: dict | None = None) -> Path:
    """Write ``MODEL_CARD.md`` into ``prior_dir``; returns its path."""
    from ..prior import LatentDiffusionPrior

    prior_dir, vae_dir, ldm_dir = Path(prior_dir), Path(vae_dir), Path(ldm_dir)
    info = json.loads((prior_dir / "training.json").read_text())
    prior = LatentDiffusionPrior.from_pretrained(prior_dir)
    size_mb = sum(f.stat().st_size for f in prior_dir.rglob("*") if f.is_file()) / 2 ** 20
    vae_last = _last_row(vae_dir / "vae_log.csv", "loss", info["vae_steps"])
    vae_val = _last_row(vae_dir / "vae_log.csv", "val_psnr", info["vae_steps"])
    ldm_last = _last_row(ldm_dir / "ldm_log.csv", "loss", info["ldm_steps"])
    u, v, t = prior.unet.config, prior.vae.config, prior.text_encoder.config
    vae_stage = describe_stages(info.get("vae_stages") or [{"steps": info["vae_steps"]}], "autoencoder")
    ldm_stage = describe_stages(info.get("ldm_stages") or [{"steps": info["ldm_steps"]}], "diffusion model")
    lines = [
        "# Model card: diffprior bundled CIFAR-10 latent diffusion prior", "",
        "A text-conditioned latent diffusion model with the Stable Diffusion v1.x architecture in",
        "miniature (KL autoencoder, CLIP-style text encoder, cross-attention UNet), trained from scratch",
        "on CIFAR-10 by `diffprior train`. It is the library's embedded default prior: small enough to",
        "ship, fast enough for a 2-core CPU, and loaded by the same `from_pretrained` as Stable Diffusion.",
        "",
        "## Data", "",
        f"CIFAR-10 training split as JPEG files (`../shared/data/cifar10/train.tar.gz`): 49,000 training",
        "images (files 4900-4999 of every class, 1,000 images, are the validation set and were never",
        "trained on), horizontal flips. Captions: " + ", ".join(f'`"{tpl}"`' for tpl in info["templates"]) +
        f" with the class name; {info['caption_drop']:.0%} of captions replaced by `\"\"`.",
        "",
        "## Architecture", "",
        f"- Autoencoder: `AutoencoderKL`, channels {list(v.block_out_channels)}, {v.layers_per_block} resnet per "
        f"block, 32x32x3 -> {32 // v.downsample_factor}x{32 // v.downsample_factor}x{v.latent_channels} "
        f"(factor {v.downsample_factor}), scaling factor {v.scaling_factor}; {count_params(prior.vae_params):,} parameters.",
        f"- Text encoder: CLIP text transformer, width {t.hidden_size}, {t.num_hidden_layers} layers, "
        f"{t.num_attention_heads} heads, {t.max_position_embeddings} tokens, vocabulary {t.vocab_size} "
        f"(byte-level BPE built for the caption words); {count_params(prior.text_params):,} parameters.",
        f"- UNet: `UNet2DConditionModel`, channels {list(u.block_out_channels)}, blocks {list(u.down_block_types)}, "
        f"{list(u.num_attention_heads)} heads, cross-attention width {u.cross_attention_dim}; "
        f"{count_params(prior.unet_params):,} parameters (stored in float16, loaded as float32).",
        "- Schedule: `scaled_linear` betas 0.00085-0.012, 1000 steps, epsilon prediction (SD v1.x).",
        f"- Files: {size_mb:.1f} MB in the diffusers folder layout.",
        "",
        "## Training", "",
        f"- Autoencoder: {vae_stage}"
        + (f"; final loss {float(vae_last['loss']):.4f}" if vae_last else "")
        + (f"; validation PSNR during training {float(vae_val['val_psnr']):.2f} dB (256 images)" if vae_val else "")
        + ".",
        f"- UNet + text encoder: {ldm_stage}"
        + (f"; final loss (mean of last 50 steps) {float(ldm_last['loss']):.4f}" if ldm_last else "")
        + "; exported weights are the EMA (decay 0.999).",
        f"- Hardware: {LATENT_HARDWARE}.",
        "",
    ]
    if commands:
        lines += ["Commands that produced these weights (every invocation of every run, in order; a",
                  "command's `--steps` is the run's target: the steps above are where each run stood when",
                  "it was exported):", "", "```bash"] + list(commands.values()) + ["```", ""]
    quality = json.loads(Path(quality_json).read_text()) if quality_json and Path(quality_json).is_file() else None
    stale = quality is not None and quality.get("fingerprint") != weights_fingerprint(prior_dir)
    if quality is not None and not stale:
        md = Path(quality_json).with_suffix(".md")
        body = md.read_text().split("\n", 1)[1] if md.is_file() else ""
        lines += ["## Validation figures", "", f"Copied from `{md.name}` (written with `{Path(quality_json).name}` "
                  "by `python benchmarks/prior_quality.py`):", body, ""]
        lines += quality_targets(quality)
        samples = Path(quality_json).parent / "prior_samples.png"
        if samples.is_file():
            shutil.copyfile(samples, prior_dir / "samples.png")
            lines += ["Samples per class prompt (rows: classes in alphabetical order): `samples.png`.", ""]
    elif quality_json is not None:
        why = (f" (`{Path(quality_json).name}` describes weights `{quality.get('fingerprint')}`, these are "
               f"`{weights_fingerprint(prior_dir)}`)" if stale else "")
        lines += ["## Validation figures", "", f"Not yet measured for these weights{why}: run "
                  "`python benchmarks/prior_quality.py` and rewrite this card.", ""]
    path = prior_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- pixel-space DDPM
def _hardware_text(records: list) -> str:
    """``"2 CPU cores (cpu backend)"`` from the ``hardware`` records of a pixel run."""
    if not records:
        return "unknown (not recorded)"
    parts = []
    for r in records:
        if r.get("backend") == "cpu":
            parts.append(f"{r.get('cpu_cores')} CPU cores, no accelerator")
        else:
            parts.append(f"{r.get('devices')} x {r.get('device')} ({r.get('backend')}), {r.get('cpu_cores')} CPU cores")
    return "; then ".join(dict.fromkeys(parts))


def latent_budget(latent_dir: str | Path) -> dict | None:
    """Steps and wall hours of the latent prior's training, from its ``training.json``
    (``None`` if the folder has none): ``{"vae_steps", "vae_hours", "ldm_steps", "ldm_hours"}``,
    summed over every run of each stage."""
    f = Path(latent_dir) / "training.json"
    if not f.is_file():
        return None
    info = json.loads(f.read_text())
    out = {}
    for stage in ("vae", "ldm"):
        runs = info.get(f"{stage}_stages") or [{"steps": info.get(f"{stage}_steps"), "wall_s": info.get(f"{stage}_wall_s")}]
        out[f"{stage}_steps"] = sum(int(r.get("steps") or 0) for r in runs)
        out[f"{stage}_hours"] = sum(float(r.get("wall_s") or 0.0) for r in runs) / 3600
    return out


def write_pixel_card(prior_dir: str | Path, run_dir: str | Path, commands: dict | None = None,
                     latent_dir: str | Path | None = None) -> Path:
    """Write ``MODEL_CARD.md`` of an exported pixel prior (:func:`~diffprior.train.export.export_pixel_prior`).

    Every number comes from a file: the folder's ``training.json`` and weights, the run's
    ``pixel_log.csv`` and, for the comparison of training budgets, the latent prior's
    ``training.json`` in ``latent_dir`` (default: the bundled prior).
    """
    from .. import bundled_path
    from ..priors.pixel import PixelDiffusionPrior

    prior_dir, run_dir = Path(prior_dir), Path(run_dir)
    latent_dir = Path(latent_dir) if latent_dir is not None else bundled_path()
    info = json.loads((prior_dir / "training.json").read_text())
    prior = PixelDiffusionPrior.from_pretrained(prior_dir)
    c = prior.config
    n_params = count_params(prior.params)
    weights_mb = sum(f.stat().st_size for f in (prior_dir / "unet").glob("*.safetensors")) / 1e6
    size_mb = sum(f.stat().st_size for f in prior_dir.rglob("*") if f.is_file()) / 2 ** 20
    last = _last_row(run_dir / "pixel_log.csv", "loss", info["pixel_steps"])
    runs = info.get("pixel_stages") or [{"steps": info["pixel_steps"], "wall_s": info.get("pixel_wall_s")}]
    stages = describe_stages(runs, "pixel diffusion model")
    total_steps = sum(int(r.get("steps") or 0) for r in runs)
    hours = sum(float(r.get("wall_s") or 0.0) for r in runs) / 3600
    hardware = _hardware_text(info.get("hardware", []))
    h, w = prior.metadata.image_size or (32, 32)
    where = [f"{h >> i}x{w >> i}" for i, b in enumerate(c.down_block_types) if b.startswith("Attn")]
    if c.mid_block_type is not None and c.add_attention:
        m = c.num_levels - 1
        where.append(f"the {h >> m}x{w >> m} mid block")
    sched = json.loads((prior_dir / "scheduler" / "scheduler_config.json").read_text())
    lines = [
        "# Model card: diffprior CIFAR-10 pixel-space diffusion prior (DDPM)", "",
        f"An unconditional DDPM (Ho et al. 2020) on {h}x{w} CIFAR-10 pixels: diffusers' `UNet2DModel` in the",
        "diffusers folder layout, trained from scratch by `diffprior train pixel` on the same images as the",
        "bundled latent prior, for the pixel-space solvers (DPS, DDS, DiffPIR). Loaded by",
        "`PixelDiffusionPrior.from_pretrained` or `diffprior.priors.load`; no text conditioning.",
        "",
        "## Data", "",
        f"CIFAR-10 training split as JPEG files (`../shared/data/cifar10/train.tar.gz`): {info['n_train']:,} training",
        "images (files 4900-4999 of every class, 1,000 images, are the validation set and were never",
        "trained on)" + (", random horizontal flips." if info.get("flip", True) else "."),
        "",
        "## Architecture", "",
        f"- UNet: `UNet2DModel`, channels {list(c.block_out_channels)}, {c.layers_per_block} residual blocks per "
        f"level, blocks {list(c.down_block_types)}, self-attention "
        + (f"at {' and in '.join(where)}" if where else "nowhere")
        + f", GroupNorm of {c.norm_num_groups} groups; {n_params:,} parameters "
        f"({weights_mb:.1f} MB in float32).",
        f"- Schedule: `{sched['beta_schedule']}` betas {sched['beta_start']:g}-{sched['beta_end']:g}, "
        f"{sched['num_train_timesteps']} steps, {sched['prediction_type']} prediction (DDPM).",
        f"- Diffusion space: the image mapped to [-1, 1], {h}x{w}x{c.in_channels}.",
        f"- Files: {size_mb:.1f} MB in the diffusers folder layout.",
        "",
        "## Training", "",
        f"- {stages}" + (f"; final loss (mean of the last logged steps) {float(last['loss']):.4f}" if last else "")
        + f"; batch {info['batch_size']}, Adam, learning rate {info['lr']:g} after {info['warmup']} warm-up steps, "
        f"exported weights are the EMA (decay {info['ema_decay']:g}).",
        f"- Hardware: {hardware}.",
        "",
        "Training budget beside the bundled latent prior's (`cifar10-ldm`, same data):", "",
        "| prior | network | steps | wall hours | hardware |", "|---|---|---|---|---|",
        f"| this (pixel DDPM) | UNet2DModel | {total_steps} (batch {info['batch_size']}) | {hours:.2f} | "
        f"{hardware} |",
    ]
    lb = latent_budget(latent_dir)
    if lb is not None:
        lines += [
            f"| cifar10-ldm | autoencoder | {lb['vae_steps']} | {lb['vae_hours']:.2f} | {LATENT_HARDWARE} |",
            f"| cifar10-ldm | UNet + text encoder | {lb['ldm_steps']} | {lb['ldm_hours']:.2f} | {LATENT_HARDWARE} |",
        ]
    lines.append("")
    if commands:
        lines += ["Commands that produced these weights (every invocation, in order; `--steps` is the run's",
                  "target, the steps above are where the run stood when it was exported):", "", "```bash"] \
            + list(commands.values()) + ["```", ""]
    s = info.get("samples")
    if s and (prior_dir / "samples.png").is_file():
        lines += ["## Samples", "",
                  f"`samples.png`: {s['count']} unconditional samples, DDIM with {s['ddim_steps']} steps, eta "
                  f"{s['eta']:g}, key {s['seed']} (`diffprior.sampling.sample_unconditional`), 8 per row.", ""]
    lines += ["## Validation figures", "",
              f"None measured at export (weights `{weights_fingerprint(prior_dir)}`). Restoration with DPS, DDS and "
              "DiffPIR on these weights: the pixel rows of `benchmarks/paper_tables.py` "
              "(`benchmarks/results/paper_tables/claims.md`), whose result files record the fingerprint above.", ""]
    path = prior_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path
