"""Why does LDPS not beat TV-ADMM on box inpainting with the bundled prior? A diagnostic on
tuning images (every fourth of files 4995-4999 of each class: 13 images), sigma = 0.005, the
``inpaint-box`` task (16 x 16 hole, 2 px from the border).

Measures, each as mean LPIPS / PSNR over the whole image and PSNR over the *known* pixels:

* the autoencoder's round trip D(E(x)): a ceiling for the known pixels of any latent method;
* TV-ADMM (50 iterations) at three weights;
* LDPS (null prompt, eta 0) at 25, 100, 250 and 500 DDIM steps, each with static steps around
  the best one for that number of steps (the guidance's fixed-length steps make the best
  step shrink as the steps multiply).

Every solve goes through the library's runner (:func:`diffprior.runner.solve_problem`) into one
result file per setting (:class:`diffprior.io.ResultWriter`), in ``--work`` (default: a
temporary folder, deleted at the end; name a folder to keep the reconstructions and to resume
an interrupted run from them). Seconds: wall time of the solves, compilation excluded.

Writes ``benchmarks/results/box_ceiling.{json,md}``::

    python benchmarks/box_ceiling.py [--work DIR]   # 51 minutes measured, on one core shared with other jobs
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from _common import RESULTS, SIGMA, build_operator, image_keys, load_validation, prior_fingerprint, run_result, scores, \
    task_problem, tuning_set

#: (DDIM steps, static step) pairs for LDPS
LDPS_RUNS = ((25, 0.1), (25, 0.3), (100, 0.1), (100, 0.3), (250, 0.1), (250, 0.2), (500, 0.05), (500, 0.1))
TV_WEIGHTS = (0.01, 0.03, 0.1)


def known_psnr(x: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) over the observed pixels only (``mask`` (H, W), 1 = observed)."""
    m = np.broadcast_to(mask[..., None] > 0, gt.shape[1:])
    mse = ((x - gt) ** 2)[:, m].mean(axis=1)
    return 10 * np.log10(1.0 / mse)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RESULTS / "box_ceiling"), help="results path without suffix")
    p.add_argument("--work", default=None, help="folder of the result files (kept, and resumed from); default: a "
                   "temporary folder")
    p.add_argument("--batch", type=int, default=25, help="images solved together")
    args = p.parse_args(argv)
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="box_ceiling_") as work:
            run(args, Path(work))
    else:
        run(args, Path(args.work))


def run(args, work: Path) -> None:
    from diffprior import LatentDiffusionPrior
    from diffprior.io import read_result
    from diffprior.solvers import LDPS, TVADMM, Dataset, LDPSConfig, Task, TVADMMConfig

    val = tuning_set(load_validation()).subset(np.arange(0, 50, 4))
    prior = LatentDiffusionPrior.bundled()
    fingerprint = prior_fingerprint()
    A = build_operator("inpaint-box", val.images.shape[1:])
    mask = np.asarray(A.mask)
    problem = task_problem("inpaint-box", val, A)
    keys = image_keys(val.names)
    rows = []

    def with_known(x, gt):
        return {**scores(x, gt), "known_psnr": known_psnr(np.asarray(x), np.asarray(gt), mask)}

    def record(method, sc, seconds=None, **extra):
        row = {"method": method, **extra, "lpips": float(np.mean(sc["lpips"])), "psnr": float(np.mean(sc["psnr"])),
               "known_psnr": float(np.mean(sc["known_psnr"])), "seconds": seconds}
        rows.append(row)
        print(row, flush=True)

    def solve(name, cls, cfg, num_steps=0, **extra):
        hyper = {"images": list(val.names), "config": cfg.to_json(), "task": "inpaint-box", "keys": "image_keys",
                 **({"steps": num_steps, "prior": fingerprint} if cls.uses_prior else {})}
        path = work / f"inpaint-box__{name}.h5"
        run_result(path, problem, cls, cfg, hyperparameters=hyper, prior=prior if cls.uses_prior else None,
                   steps=num_steps, keys=keys, batch=args.batch, metrics=with_known, label=name)
        r = read_result(path)
        record("LDPS" if cls.uses_prior else "TV-ADMM", r.metrics, float(np.sum(r.wall_time)), **extra)

    x = np.asarray(jax.jit(lambda x: prior.decode(prior.encode(x), clip=True))(jnp.asarray(val.images)))
    record("autoencoder round trip", with_known(x, val.images))
    for lmbda in TV_WEIGHTS:
        solve(f"tv-admm-l{lmbda:g}", TVADMM, TVADMMConfig(maxiter=50, lmbda=lmbda), lmbda=lmbda)
    for steps, rho in LDPS_RUNS:
        solve(f"ldps-s{steps}-rho{rho:g}", LDPS,
              LDPSConfig.for_task(Task.INPAINT, Dataset.CIFAR10, step_size=rho, eta=0.0), steps,
              steps=steps, step_size=rho)

    result = {"prior": prior_fingerprint(), "images": list(val.names), "sigma": SIGMA, "rows": rows}
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    lines = ["# Box inpainting: autoencoder ceiling, TV-ADMM and LDPS against the number of steps", "",
             f"Produced by `python benchmarks/box_ceiling.py` on {len(val.names)} tuning images, weights "
             f"`{result['prior']}`. PSNR (known): over the observed pixels only.", "",
             "| method | setting | LPIPS | PSNR | PSNR (known) | seconds |", "|---|---|---|---|---|---|"]
    for r in rows:
        setting = (f"lambda {r['lmbda']}" if "lmbda" in r else
                   f"{r['steps']} steps, rho {r['step_size']}" if "steps" in r else "")
        sec = f"{r['seconds']:.0f}" if r["seconds"] is not None else ""
        lines.append(f"| {r['method']} | {setting} | {r['lpips']:.4f} | {r['psnr']:.2f} | {r['known_psnr']:.2f} | {sec} |")
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}.json and .md")


if __name__ == "__main__":
    main()
