"""Does LDPS's step have to grow with the image? A test of the any-size page's reading.

LDPS's guidance is a step :math:`\\rho` on the gradient of the *un-squared* residual norm,
:math:`\\nabla_{z}\\|y - A(D(\\hat z_0))\\|`, which is :math:`J^T A^T r / \\|r\\|`. With residual
values of a given size per pixel, :math:`\\|r\\|` grows as :math:`\\sqrt m` (``m`` measured
values), so each pixel's pull weakens as :math:`1/\\sqrt m`: a step searched on 32 x 32 images
(the bundled prior's size) is ``s`` times weaker per pixel on an image ``s`` times larger on
each side. If that is why LDPS loses quality with size (``any_size.md``'s cost table: 18.6 dB
at 64 px, 15.6 dB at 128 px, 13.3 dB at 256 px), multiplying the preset step by
:math:`\\sqrt{m / m_{32}}` = ``size / 32`` should win most of it back.

The script runs LDPS (the ``sr4-avg`` preset, 25 DDIM steps, sigma = 0.005) on ``--n`` BSDS500
photographs of one split (``train`` by default: this is a search), downscaled and centre-cropped
to ``--size``, with the preset step multiplied by each of ``--factors`` (per-sample steps: one
batch, one compiled program), tiles ``none`` or ``mixture``. Writes
``benchmarks/results/step_scaling/<split>_<size>_<tiles>.{json,md}``: mean PSNR / SSIM / LPIPS
± s.e. per factor and the factor :math:`\\sqrt{m/m_{32}}` beside them, with the load average.

Usage::

    python benchmarks/step_scaling.py --size 128 --n 8 --factors 1 2 4 8
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from _common import RESULTS, image_keys, se, solver_config
from _records import load_average, write_record
from any_size import DATA, problem_for, read_bsds, square

NATIVE = 32  # the bundled prior's image side


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--factors", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument("--split", default="train", choices=("train", "val"))
    p.add_argument("--tiles", default="none", choices=("none", "mixture", "multidiffusion"))
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=RESULTS / "step_scaling")
    args = p.parse_args(argv)

    import jax

    from diffprior.metrics import image_metrics
    from diffprior.prior import LatentDiffusionPrior
    from diffprior.priors.adapt import prior_for_images
    from diffprior.runner import problem_operator
    from diffprior.solvers import LDPS

    photos = read_bsds(args.split, args.data, args.n)
    images = np.stack([square(x, args.size) for x in photos.images])
    problem = problem_for("sr4-avg", images, photos.names)
    prior = LatentDiffusionPrior.bundled()
    p_, _ = prior_for_images(prior, images.shape[1:], args.tiles, tile_batch=16)
    base = solver_config(LDPS, "sr4-avg")
    k = len(args.factors)
    n = len(images)
    y = np.tile(problem.measurement, (k, 1, 1, 1))
    A = problem_operator(problem)
    keys = np.tile(np.asarray(image_keys(photos.names)), (k, 1))
    steps = np.repeat(np.asarray(args.factors) * float(base.step_size), n)
    xs, t0 = [], time.perf_counter()
    for b in range(0, len(y), args.batch):
        sl = slice(b, b + args.batch)
        cfg = dataclasses.replace(base, step_size=tuple(float(v) for v in steps[sl]))
        s = LDPS(y=y[sl], A=A, prior=p_, key=jax.numpy.asarray(keys[sl]), num_steps=args.steps, config=cfg,
                 progress=False)
        xs.append(np.asarray(s.solve()))
        print(f"  {min(b + args.batch, len(y))}/{len(y)} samples, {time.perf_counter() - t0:.0f} s", flush=True)
    x = np.concatenate(xs)
    scores = image_metrics(x, np.tile(images, (k, 1, 1, 1)), lpips=True)
    rows = []
    for i, f in enumerate(args.factors):
        sl = slice(i * n, (i + 1) * n)
        rows.append({"factor": f, "step_size": f * float(base.step_size),
                     **{m: float(np.mean(scores[m][sl])) for m in ("psnr", "ssim", "lpips")},
                     **{m + "_se": se(np.asarray(scores[m][sl])) for m in ("psnr", "ssim", "lpips")}})
    rule = args.size / NATIVE
    record = {"size": args.size, "split": args.split, "tiles": args.tiles, "n": n, "steps": args.steps,
              "preset_step": float(base.step_size), "sqrt_m_rule": rule, "rows": rows, "images": photos.names,
              "seconds": time.perf_counter() - t0, "load_average": load_average()}
    lines = [f"# LDPS's step against image size: {args.size} px, {args.split} split, tiles {args.tiles}", "",
             f"Produced by `python benchmarks/step_scaling.py --size {args.size} --n {n} --split {args.split} "
             f"--tiles {args.tiles}`: sr4-avg, sigma = 0.005, {args.steps} DDIM steps, the preset step "
             f"{float(base.step_size):g} times each factor; mean ± s.e. over {n} photographs. The "
             f"sqrt(m / m_32) rule's factor here is **{rule:g}**. Load average at the end: "
             f"{record['load_average']}.", "",
             "| factor | step | PSNR | SSIM | LPIPS |", "|---|---|---|---|---|"]
    lines += [f"| {r['factor']:g}{' (rule)' if r['factor'] == rule else ''} | {r['step_size']:g} | "
              f"{r['psnr']:.2f} ± {r['psnr_se']:.2f} | {r['ssim']:.3f} ± {r['ssim_se']:.3f} | "
              f"{r['lpips']:.4f} ± {r['lpips_se']:.4f} |" for r in rows]
    write_record(args.out / f"{args.split}_{args.size}_{args.tiles}", record, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
