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
        "- Hardware: 2 CPU cores (shared with other work), no accelerator.",
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
