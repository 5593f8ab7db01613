"""``diffprior demo``: P2L and LDPS restore a few CIFAR-10 validation images on the bundled prior.

The images shipped in ``diffprior/assets/demo`` (files ``4950.jpg`` of several classes from
the project's validation split, never trained on) are degraded by three task presets of
:mod:`diffprior.commands.tasks` (4x super-resolution, motion blur, free-form inpainting) at
sigma = 0.005, restored by LDPS and P2L with the same key and number of steps, and written to
``OUT/demo.h5`` (one group per task: measurement, ground truth, both reconstructions,
metrics, solver settings) and ``OUT/demo.png`` (rows: measurement | LDPS | P2L | ground
truth), with a PSNR/SSIM/LPIPS table printed at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from . import CLIError, preset_dataset

TASK_NAMES = ("sr4", "motion-deblur", "inpaint-freeform")


def demo_images(limit: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The shipped demo images as float32 ``(N, 32, 32, 3)`` in [0, 1] and their names."""
    from PIL import Image

    folder = Path(__file__).resolve().parents[1] / "assets" / "demo"
    files = sorted(folder.glob("*.png"))[:limit]
    if not files:
        raise CLIError(f"no demo images in {folder} (broken installation?)")
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0 for f in files])
    return imgs, [f.stem for f in files]


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="restore a few shipped images with P2L and LDPS on the bundled prior",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", metavar="DIR", help="output folder (default: demo_out)")
    p.add_argument("--prior", default=None, metavar="PATH",
                   help="diffusers-layout prior folder (default: the bundled CIFAR-10 prior)")
    p.add_argument("--steps", type=int, default=25, metavar="N", help="reverse DDIM steps of both solvers (default 25)")
    p.add_argument("--images", type=int, default=4, metavar="N", help="how many shipped images to use (default 4, max 8)")
    p.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), choices=TASK_NAMES, metavar="TASK",
                   help=f"task presets to run (default: all of {', '.join(TASK_NAMES)})")
    p.add_argument("--sigma", type=float, default=0.005, help="measurement noise in [0, 1] units (default 0.005)")
    p.add_argument("--seed", type=int, default=0, help="seed of operators, noise and samplers (default 0)")
    p.add_argument("--lpips", action=argparse.BooleanOptionalAction, default=True, help="compute LPIPS (default on)")
    p.add_argument("--jobs", type=int, default=3, metavar="J",
                   help="tasks restored concurrently (overlaps one task's compilation with another's "
                        "computation; default 3)")
    p.set_defaults(func=run)
    return p


def _solver_config(cls_config, task, prior_path):
    from diffprior.solvers import Task

    return cls_config.for_task(Task(task.solver_task), preset_dataset(prior_path)) if task.solver_task else cls_config()


def _restore(task_name, ti, x, prior, args, key, bar):
    """Degrade ``x`` with one task preset and restore it with LDPS and P2L (runs in a worker thread)."""
    import jax

    import operators
    from diffprior.solvers import LDPS, P2L, LDPSConfig, P2LConfig

    from .tasks import TASKS

    task = TASKS[task_name]
    A = task.build(x.shape[1:], jax.random.fold_in(key, 100 + ti))
    y = np.stack([np.asarray(operators.simulate(A, xi, args.sigma, jax.random.fold_in(key, 1000 * ti + i)))
                  for i, xi in enumerate(x)])
    recs = {}
    for sname, cls, cfg_cls in (("LDPS", LDPS, LDPSConfig), ("P2L", P2L, P2LConfig)):
        cfg = _solver_config(cfg_cls, task, args.prior)
        t0 = time.time()
        solver = cls(y=y, A=A, prior=prior, key=jax.random.fold_in(key, 7 + ti), num_steps=args.steps,
                     config=cfg, progress=False, chunk_size=5)
        last = [0]

        def tick(s, last=last):
            bar.update(s.step_index - last[0])
            last[0] = s.step_index

        recs[sname] = (np.asarray(solver.solve(callback=tick)), time.time() - t0)
    return A, y, recs


def run(args) -> None:
    import concurrent.futures

    import h5py
    import jax
    from tqdm.auto import tqdm

    import operators
    from diffprior import __version__
    from diffprior.metrics import psnr, ssim
    from diffprior.prior import LatentDiffusionPrior

    if args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    if not 1 <= args.images <= 8:
        raise CLIError(f"--images must be between 1 and 8, got {args.images}")
    if args.sigma < 0:
        raise CLIError(f"--sigma must be >= 0, got {args.sigma}")
    if args.jobs < 1:
        raise CLIError(f"--jobs must be >= 1, got {args.jobs}")
    t_start = time.time()
    prior = LatentDiffusionPrior.from_pretrained(args.prior) if args.prior else LatentDiffusionPrior.bundled()
    x, names = demo_images(args.images)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(args.seed)
    print(f"restoring {len(x)} images x {len(args.tasks)} tasks ({', '.join(args.tasks)}) with LDPS and P2L, "
          f"{args.steps} DDIM steps each; compiling takes the first minute or two", flush=True)
    bar = tqdm(total=2 * len(args.tasks) * args.steps, desc="demo", unit="step")
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(args.jobs, len(args.tasks))) as pool:
        futures = [pool.submit(_restore, tname, ti, x, prior, args, key, bar) for ti, tname in enumerate(args.tasks)]
        done = [f.result() for f in futures]
    bar.close()
    rows, table = [], []
    tmp = out / "demo.h5.tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs.update({"library_version": __version__, "seed": args.seed, "steps": args.steps,
                        "sigma": args.sigma, "images": json.dumps(names)})
        for tname, (A, y, recs) in zip(args.tasks, done):
            g = f.create_group(tname)
            g["ground_truth"], g["measurement"] = x, y
            g.attrs["operator"] = json.dumps({k: v for k, v in operators.describe(A).items()
                                              if isinstance(v, (int, float, str, list, tuple))})
            for sname, (rec, secs) in recs.items():
                s = g.create_group(sname)
                s["reconstruction"] = rec
                s["psnr"] = np.asarray(psnr(rec, x))
                s["ssim"] = np.asarray(ssim(rec, x))
                scores = {"psnr": float(np.mean(s["psnr"])), "ssim": float(np.mean(s["ssim"]))}
                if args.lpips:
                    from diffprior.perceptual import lpips

                    s["lpips"] = lpips(rec, x)
                    scores["lpips"] = float(np.mean(s["lpips"]))
                s.attrs["seconds"] = secs
                table.append((tname, sname, scores, secs))
            rows.append((tname, _display(y, x.shape), recs["LDPS"][0], recs["P2L"][0], x))
    tmp.replace(out / "demo.h5")
    _figure(rows, out / "demo.png")
    print(_format(table))
    print(f"wrote {out / 'demo.h5'} and {out / 'demo.png'} in {time.time() - t_start:.0f} s")


def _display(y: np.ndarray, image_shape) -> np.ndarray:
    """Measurements shown as images: upsampled (nearest) when smaller, as is otherwise."""
    if y.shape[1:] == tuple(image_shape[1:]):
        return np.clip(y, 0, 1)
    fh, fw = image_shape[1] // y.shape[1], image_shape[2] // y.shape[2]
    return np.clip(np.repeat(np.repeat(y, fh, 1), fw, 2), 0, 1)


def _figure(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_img = rows[0][1].shape[0]
    cols = ["measurement", "LDPS", "P2L", "ground truth"]
    fig, axes = plt.subplots(len(rows) * n_img, 4, figsize=(6, 1.6 * len(rows) * n_img), squeeze=False)
    for r, (tname, *panels) in enumerate(rows):
        for i in range(n_img):
            for c, panel in enumerate(panels):
                ax = axes[r * n_img + i, c]
                ax.imshow(np.clip(panel[i], 0, 1), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r * n_img + i == 0:
                    ax.set_title(cols[c], fontsize=8)
            axes[r * n_img + i, 0].set_ylabel(tname if i == 0 else "", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _format(table) -> str:
    has_lpips = all("lpips" in s for _, _, s, _ in table)
    head = f"{'task':<18}{'solver':<7}{'PSNR':>8}{'SSIM':>8}" + (f"{'LPIPS':>8}" if has_lpips else "") + f"{'wall s':>9}"
    lines = [head, "-" * len(head)]
    for tname, sname, s, secs in table:
        lines.append(f"{tname:<18}{sname:<7}{s['psnr']:>8.2f}{s['ssim']:>8.3f}"
                     + (f"{s['lpips']:>8.3f}" if has_lpips else "") + f"{secs:>9.1f}")
    return "\n".join(lines)
