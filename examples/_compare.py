"""Shared driver of the example scripts: degrade images, restore them with LDPS and P2L, report.

Not an example itself; each ``examples/<task>.py`` builds its operator and calls :func:`main`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def parse_args(description: str, extra=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--prior", default=None,
                   help="diffusers-format prior folder (default: the bundled CIFAR-10 prior)")
    p.add_argument("--images", default=None,
                   help="image folder, .tar(.gz) or .h5 readable by diffprior.data (default: a synthetic test image); "
                        "for the CIFAR-10 archive, the validation files 4900-4999 are used")
    p.add_argument("--n", type=int, default=2, help="number of images (default 2)")
    p.add_argument("--steps", type=int, default=25, help="reverse DDIM steps (the paper uses 1000; default 25, as the presets were tuned)")
    p.add_argument("--sigma", type=float, default=0.005, help="noise std in [0, 1] units (default 0.005)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="PNG figure to write (measurement | LDPS | P2L | truth)")
    if extra is not None:
        extra(p)
    return p.parse_args()


def load_prior(path):
    from diffprior.prior import LatentDiffusionPrior

    return LatentDiffusionPrior.bundled() if path is None else LatentDiffusionPrior.from_pretrained(path)


def image_size(prior) -> int:
    return prior.unet.config.sample_size * prior.downsample_factor


def load_images(path, n: int, size: int) -> np.ndarray:
    """``(n, size, size, 3)`` float32 in [0, 1]."""
    if path is None:
        u = np.linspace(-1, 1, size, dtype=np.float32)
        yy, xx = np.meshgrid(u, u, indexing="ij")
        disk = ((xx - 0.2) ** 2 + (yy + 0.1) ** 2 < 0.3).astype(np.float32)
        img = np.stack([0.5 + 0.4 * xx * (1 - disk), 0.3 + 0.6 * disk, 0.5 + 0.4 * np.sin(3 * yy)], axis=-1)
        return np.repeat(np.clip(img, 0, 1)[None], n, axis=0)
    from diffprior import data

    images = data.read_dataset(path, size=(size, size))
    _, val = data.split(images)
    images = val if len(val) else images
    return images.as_float(np.arange(min(n, len(images))))


def main(description: str, task, make_operator, extra_args=None):
    """Run LDPS and P2L (presets for ``task``) on ``make_operator(args, image_shape, key)``."""
    from diffprior.metrics import psnr, ssim
    from diffprior.priors import preset_table
    from diffprior.solvers import LDPS, P2L, LDPSConfig, P2LConfig
    from operators import simulate

    args = parse_args(description, extra_args)
    key = jax.random.PRNGKey(args.seed)
    k_op, k_noise, k_solve = jax.random.split(key, 3)
    prior = load_prior(args.prior)
    size = image_size(prior)
    x = jnp.asarray(load_images(args.images, args.n, size))
    A = make_operator(args, x.shape, k_op)
    y = simulate(A, x, args.sigma, k_noise)

    results = {}
    dataset = preset_table(prior)  # from the prior's metadata: the searched values for the bundled prior
    for name, cls, cfg in (("LDPS", LDPS, LDPSConfig.for_task(task, dataset)), ("P2L", P2L, P2LConfig.for_task(task, dataset))):
        t0 = time.perf_counter()
        solver = cls(y=y, A=A, prior=prior, key=k_solve, num_steps=args.steps, config=cfg, progress=True)
        xr = solver.solve()
        results[name] = (xr, time.perf_counter() - t0)

    print(f"\n{task.value}: {x.shape[0]} images {size}x{size}, sigma={args.sigma}, {args.steps} steps")
    print(f"{'method':<8}{'PSNR':>8}{'SSIM':>8}{'time/s':>9}")
    for name, (xr, dt) in results.items():
        print(f"{name:<8}{float(jnp.mean(psnr(xr, x))):8.2f}{float(jnp.mean(ssim(xr, x))):8.3f}{dt:9.1f}")
    if args.out:
        save_figure(args.out, A, y, x, results)


def save_figure(path, A, y, x, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if y.shape == x.shape:
        shown, title = y, "measurement"
    else:  # e.g. SR: the adjoint normalised by A^T A 1 (nearest-neighbour upsampling for pooling)
        shown, title = A.adj(y) / jnp.maximum(A.adj(A(jnp.ones_like(x))), 1e-6), "measurement (back-projected)"
    cols = [(title, np.clip(np.asarray(shown), 0, 1))]
    cols += [(name, np.asarray(xr)) for name, (xr, _) in results.items()] + [("ground truth", np.asarray(x))]
    n = x.shape[0]
    fig, axes = plt.subplots(n, len(cols), figsize=(2 * len(cols), 2 * n), squeeze=False)
    for r in range(n):
        for c, (title, imgs) in enumerate(cols):
            axes[r, c].imshow(imgs[r])
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(title, fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")
