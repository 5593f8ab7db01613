"""Validation figures of a latent diffusion prior on the CIFAR-10 validation files.

Measures, on the project's validation split (files 4900-4999 of every class, never trained on):

1. autoencoder reconstruction PSNR (posterior mean, all validation images);
2. text conditioning: the UNet's noise-prediction MSE at t = 200 and t = 500 with the correct
   class prompt, the empty prompt and a wrong class prompt (same image, noise and t);
3. the prior at work: LDPS against bicubic upsampling on 4x super-resolution (average pooling)
   and against TV-regularised ADMM on box inpainting, in LPIPS (AlexNet; images resized to
   64 px first), PSNR and SSIM, at sigma = 0.005 (in [0, 1] units);
4. a grid of generated samples for each class prompt.

Results go to ``benchmarks/results/prior_quality.json`` and ``.md`` and the sample grid to
``benchmarks/results/prior_samples.png``. Usage::

    python benchmarks/prior_quality.py --data ../shared/data/cifar10/train.tar.gz [--prior PATH]
        [--n-restore 100] [--steps 25]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from _common import RESULTS, prior_fingerprint, scores, se


def _summary(a) -> dict:
    return {"mean": float(np.mean(a)), "se": se(a), "n": int(len(a))}


def vae_psnr(prior, images: np.ndarray, batch: int = 100) -> np.ndarray:
    from diffprior.metrics import psnr

    rec = jax.jit(lambda x: prior.decode(prior.encode(x), clip=True))
    out = [np.asarray(psnr(rec(jnp.asarray(images[i:i + batch])), jnp.asarray(images[i:i + batch])))
           for i in range(0, len(images), batch)]
    return np.concatenate(out)


def text_conditioning(prior, images, labels, classes, key, timesteps=(200, 500), batch: int = 100) -> dict:
    """Per-image eps-MSE with the correct, empty and a wrong class prompt at each ``t``."""
    from diffprior.schedule import add_noise

    prompts = [f"a photo of a {c}" for c in classes]
    class_emb = prior.embed(prompts)  # (K, L, D)
    null = prior.null_embedding
    rng = np.random.default_rng(0)
    wrong = (labels + rng.integers(1, len(classes), len(labels))) % len(classes)

    @jax.jit
    def mse(z0, noise, t, emb):
        zt = add_noise(prior.schedule, z0, noise, t)
        return jnp.mean((prior.eps(zt, t, emb) - noise) ** 2, axis=(1, 2, 3))

    out = {}
    for t in timesteps:
        rows = {"correct": [], "empty": [], "wrong": []}
        for i in range(0, len(images), batch):
            x = jnp.asarray(images[i:i + batch])
            z0 = prior.encode(x)
            noise = jax.random.normal(jax.random.fold_in(key, 1000 * t + i), z0.shape)
            tt = jnp.full((len(x),), t)
            lab, wr = labels[i:i + batch], wrong[i:i + batch]
            rows["correct"].append(np.asarray(mse(z0, noise, tt, class_emb[lab])))
            rows["empty"].append(np.asarray(mse(z0, noise, tt, jnp.repeat(null, len(x), 0))))
            rows["wrong"].append(np.asarray(mse(z0, noise, tt, class_emb[wr])))
        r = {k: np.concatenate(v) for k, v in rows.items()}
        out[str(t)] = {
            **{k: _summary(v) for k, v in r.items()},
            "frac_correct_below_empty": float(np.mean(r["correct"] < r["empty"])),
            "frac_correct_below_wrong": float(np.mean(r["correct"] < r["wrong"])),
            "holds": bool(r["correct"].mean() < r["empty"].mean() and r["correct"].mean() < r["wrong"].mean()),
        }
    return out


def restoration(prior, images, key, steps: int, sigma: float = 0.005, box: int = 16, margin: int = 2) -> dict:
    """LDPS vs bicubic (SR x4) and vs TV-ADMM (box inpainting) on the given images.

    The box is DPS's and P2L's (128 x 128 in 256 x 256 images, 16 px from the border) scaled
    to 32 px: 16 x 16, 2 px from the border; one box position, drawn from ``key``, for all images.
    """
    import operators
    from diffprior.solvers import LDPS, Dataset, LDPSConfig, Task
    from diffprior.solvers.tuned import tuned_values
    from diffprior.solvers.tv_admm import TVADMM

    shape = images.shape[1:]
    res = {}
    kx, km, kn1, kn2, ks = jax.random.split(key, 5)
    # --- 4x super-resolution with average pooling
    A = operators.Downsample(shape, 4, "average")
    y = np.stack([np.asarray(operators.simulate(A, x, sigma, jax.random.fold_in(kn1, i)))
                  for i, x in enumerate(images)])
    h, w = shape[:2]
    bicubic = np.clip(np.asarray(jax.image.resize(jnp.asarray(y), (len(y), h, w, 3), "bicubic")), 0, 1)
    t0 = time.time()
    ldps = np.asarray(LDPS(y=y, A=A, prior=prior, key=ks, num_steps=steps,
                           config=LDPSConfig.for_task(Task.SR, Dataset.CIFAR10)).solve())
    t_sr = time.time() - t0
    res["sr4"] = {"ldps": scores(ldps, images), "bicubic": scores(bicubic, images), "ldps_seconds": t_sr}
    # --- box inpainting
    mask = operators.box_mask(km, (h, w), box, margin=margin)
    A = operators.Inpaint(shape, mask)
    y = np.stack([np.asarray(operators.simulate(A, x, sigma, jax.random.fold_in(kn2, i)))
                  for i, x in enumerate(images)])
    t0 = time.time()
    ldps = np.asarray(LDPS(y=y, A=A, prior=prior, key=jax.random.fold_in(ks, 1), num_steps=steps,
                           config=LDPSConfig.for_task(Task.INPAINT, Dataset.CIFAR10)).solve())
    t_in = time.time() - t0
    # TV weight: the value searched on the tuning images for inpainting (benchmarks/tune.py)
    tv = TVADMM(y=y, A=A, maxiter=50, **({"lmbda": 0.01} | tuned_values("TVADMM", Task.INPAINT))).solve()
    res["inpaint_box"] = {"ldps": scores(ldps, images), "tv_admm": scores(tv, images), "ldps_seconds": t_in,
                          "box_size": box}
    return res


def sample_grid(prior, classes, key, per_class: int = 8, steps: int = 50, guidance: float = 3.0) -> np.ndarray:
    from diffprior.sampling import sample

    rows = []
    for i, c in enumerate(classes):
        imgs = np.asarray(sample(prior, [f"a photo of a {c}"] * per_class, jax.random.fold_in(key, i),
                                 num_steps=steps, guidance_scale=guidance))
        rows.append(np.concatenate(list(imgs), axis=1))
    return np.concatenate(rows, axis=0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).parents[1] / ".." / "shared" / "data" / "cifar10" / "train.tar.gz"))
    p.add_argument("--prior", default=None, help="diffusers-layout folder (default: the bundled prior)")
    p.add_argument("--n-restore", type=int, default=100, help="validation images for the restoration checks")
    p.add_argument("--steps", type=int, default=25, help="LDPS reverse steps (default 25, as the demo)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--skip", nargs="*", default=(), choices=("vae", "text", "restore", "samples"))
    args = p.parse_args(argv)

    from PIL import Image

    from diffprior.data import read_dataset, split
    from diffprior.prior import LatentDiffusionPrior

    prior = LatentDiffusionPrior.from_pretrained(args.prior) if args.prior else LatentDiffusionPrior.bundled()
    _, val = split(read_dataset(args.data))
    images = val.as_float()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(0)
    results = {"prior": args.prior or "bundled", "fingerprint": prior_fingerprint(args.prior),
               "n_validation": len(val), "sigma": 0.005}
    if "vae" not in args.skip:
        results["vae_psnr"] = _summary(vae_psnr(prior, images))
        print(f"VAE PSNR: {results['vae_psnr']['mean']:.2f} dB")
    if "text" not in args.skip:
        results["text_conditioning"] = text_conditioning(prior, images, val.labels, val.classes, key)
        print(json.dumps(results["text_conditioning"], indent=1))
    if "restore" not in args.skip:
        # an equal number of images from every class, the first ones by file name
        per = max(1, args.n_restore // len(val.classes))
        idx = np.concatenate([np.nonzero(val.labels == k)[0][:per] for k in range(len(val.classes))])
        r = restoration(prior, images[idx], jax.random.fold_in(key, 7), args.steps)
        results["restoration"] = {
            task: {m: ({k: _summary(v) for k, v in s.items()} if isinstance(s, dict) else s) for m, s in d.items()}
            for task, d in r.items()}
        results["restoration"]["n_images"] = int(len(idx))
        results["restoration"]["steps"] = args.steps
        print(json.dumps(results["restoration"], indent=1))
    if "samples" not in args.skip:
        grid = sample_grid(prior, val.classes, jax.random.fold_in(key, 11))
        Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8)).save(out / "prior_samples.png")
    (out / "prior_quality.json").write_text(json.dumps(results, indent=2))
    (out / "prior_quality.md").write_text(to_markdown(results))
    print(f"wrote {out / 'prior_quality.json'}")


def to_markdown(r: dict) -> str:
    lines = ["# Bundled prior: validation figures", "",
             f"Produced by `python benchmarks/prior_quality.py` on {r['n_validation']} CIFAR-10 validation images"
             + (f" (weights `{r['fingerprint']}`, `diffprior.prior.weights_fingerprint`)." if "fingerprint" in r else "."),
             ""]
    if "vae_psnr" in r:
        v = r["vae_psnr"]
        lines += [f"- VAE reconstruction PSNR: **{v['mean']:.2f} dB** (± {v['se']:.2f} s.e., n = {v['n']})", ""]
    if "text_conditioning" in r:
        lines += ["| t | MSE correct | MSE empty | MSE wrong class | correct < empty | correct < wrong | holds |",
                  "|---|---|---|---|---|---|---|"]
        for t, d in r["text_conditioning"].items():
            lines.append(f"| {t} | {d['correct']['mean']:.4f} | {d['empty']['mean']:.4f} | {d['wrong']['mean']:.4f} | "
                         f"{d['frac_correct_below_empty']:.0%} | {d['frac_correct_below_wrong']:.0%} | {d['holds']} |")
        lines.append("")
    if "restoration" in r:
        rr = r["restoration"]
        lines += [f"Restoration on {rr['n_images']} images, LDPS with {rr['steps']} DDIM steps, sigma = 0.005:", "",
                  "| task | method | LPIPS | PSNR | SSIM |", "|---|---|---|---|---|"]
        for task in ("sr4", "inpaint_box"):
            for m, s in rr[task].items():
                if isinstance(s, dict) and "lpips" in s:
                    lines.append(f"| {task} | {m} | {s['lpips']['mean']:.4f} ± {s['lpips']['se']:.4f} | "
                                 f"{s['psnr']['mean']:.2f} | {s['ssim']['mean']:.3f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
