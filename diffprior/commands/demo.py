"""``diffprior demo``: P2L and LDPS restore a few CIFAR-10 validation images on the bundled prior.

The images shipped in ``diffprior/assets/demo`` (files ``4950.jpg`` of several classes from
the project's validation split, never trained on) are degraded by three task presets of
:mod:`diffprior.tasks` (4x super-resolution, motion blur, free-form inpainting; one kernel or
mask per image) at sigma = 0.005 and restored by LDPS and P2L with the same keys and number of
steps. Each solver restores all the tasks in one batch of one compiled program (each image
measured by its own task's operator and solved with its own task's preset,
:func:`diffprior.runner.solve_together`), writing the same files as ``diffprior simulate``
and ``diffprior solve``:
``OUT/<task>/problems.h5`` (a problem file), ``OUT/<task>/ldps.h5`` and ``OUT/<task>/p2l.h5``
(result files with PSNR, SSIM and LPIPS per image; ``diffprior report`` reads them), and
``OUT/demo.png`` (rows: measurement | LDPS | P2L | ground truth), with a PSNR/SSIM/LPIPS
table printed at the end. A rerun resumes: finished restorations are kept.
"""

from __future__ import annotations

import argparse
import functools
import threading
import time
from pathlib import Path

import numpy as np

from . import CLIError

TASK_NAMES = ("sr4", "motion-deblur", "inpaint-freeform")


def demo_images(limit: int | None = None) -> tuple[np.ndarray, list[str]]:
    """The shipped demo images as float32 ``(N, 32, 32, 3)`` in [0, 1] and their names."""
    from ..data import read_image

    folder = Path(__file__).resolve().parents[1] / "assets" / "demo"
    files = sorted(folder.glob("*.png"))[:limit]
    if not files:
        raise CLIError(f"no demo images in {folder} (broken installation?)")
    imgs = np.stack([read_image(f, channels=3) for f in files])
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
    p.add_argument("--jobs", type=int, default=2, metavar="J",
                   help="solvers run concurrently (each solves every task in one batch of one compiled "
                        "program; 2 overlaps LDPS's compilation with P2L's; default 2)")
    p.set_defaults(func=run)
    return p


SOLVER_NAMES = ("ldps", "p2l")


def _problem(task_name: str, ti: int, x, names, args, folder: Path):
    """Write (or reuse) the task's problem file; the operator draws one kernel/mask per image."""
    import jax

    import operators

    from ..io import read_problem, write_problem
    from ..tasks import TASKS
    from .simulate import sample_seed, simulate_measurements

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "problems.h5"
    task = TASKS[task_name]
    A = task.build_batch(x.shape[1:], jax.random.fold_in(jax.random.PRNGKey(args.seed), 100 + ti), len(x))
    seeds = np.array([sample_seed(args.seed + 1000 * (ti + 1), n) for n in range(len(x))], np.int64)
    y = simulate_measurements(A, x, args.sigma, seeds)
    if path.exists():
        old = read_problem(path)
        if old.measurement.shape == y.shape and np.array_equal(old.measurement, y):
            return old
    write_problem(path, y, operators.describe(A), args.sigma, ground_truth=x, seeds=seeds, names=names, task=task_name,
                  per_sample=A.per_sample)
    return read_problem(path)


def _restore(sname: str, tasks: list, problems: list, prior, args, bar, out: Path, times: list, start=None,
             lowered=None) -> dict:
    """Restore every task's problem with one solver, all tasks in one batch of one compiled
    program (:func:`diffprior.runner.solve_together`: each sample measured by its task's
    operator, solved with its task's preset); runs in a worker thread. Returns ``{task: result
    path}`` and appends ``(compile seconds, solve seconds)`` of each batch to ``times``. With
    ``start`` (an event) it waits for it before tracing its program; it sets ``lowered`` (an
    event) once its own program is traced, or when it ends."""
    from .. import bundled_path
    from ..io import IncompatibleResultError, ResultWriter, WriteMode
    from ..metrics import image_metrics
    from ..priors import preset_table
    from ..runner import solve_together, solver_config
    from ..solvers import SOLVERS
    from ..tasks import TASKS

    from .solve import _digest, prior_fingerprint

    cls = SOLVERS[sname]
    prior_path = Path(args.prior) if args.prior else bundled_path()
    prior_info = {"name": prior.metadata.name, "fingerprint": prior_fingerprint(prior_path)}
    jobs, paths = [], {}
    try:
        for task_name, problem in zip(tasks, problems):
            folder = out / task_name
            task = TASKS[task_name]
            cfg = solver_config(cls, task.solver_task, preset_table(prior))
            hyper = {"config": cfg.to_json(), "num_steps": args.steps, "preset": task.solver_task,
                     "prior": prior_info, "lpips": bool(args.lpips), "problem_digest": _digest(problem.measurement)}
            path = paths[task_name] = folder / f"{sname}.h5"
            kw = dict(seed=args.seed, problem=str(folder / "problems.h5"))
            shape = problem.ground_truth.shape[1:]
            try:  # a rerun keeps finished restorations; one with other settings starts the file afresh
                writer = ResultWriter(path, problem.n_samples, shape, cls.__name__, hyper, mode=WriteMode.RESUME, **kw)
            except IncompatibleResultError:
                writer = ResultWriter(path, problem.n_samples, shape, cls.__name__, hyper, mode=WriteMode.OVERWRITE,
                                      **kw)
            jobs.append((problem, cfg, writer))
        last = [0]

        def tick(s):
            bar.update(s.step_index - last[0])
            last[0] = s.step_index

        def batch_done(report):
            last[0] = 0
            times.append((report.compile_seconds, report.seconds))

        if not any(w.pending_indices().size for _, _, w in jobs):
            bar.update(args.steps)  # restored by an earlier run
        if start is not None:
            start.wait()
        solve_together(jobs, cls, prior=prior, num_steps=args.steps, seed=args.seed,
                       metrics=functools.partial(image_metrics, lpips=args.lpips), on_chunk=tick, on_batch=batch_done,
                       on_lowered=None if lowered is None else lowered.set)
    finally:
        if lowered is not None:  # also when nothing was left to solve, or on an error: never leave the other waiting
            lowered.set()
        for _, _, w in jobs:
            w.close()
    return paths


def run(args) -> None:
    import concurrent.futures

    from tqdm.auto import tqdm

    from ..io import read_result
    from ..priors import load

    if args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    if not 1 <= args.images <= 8:
        raise CLIError(f"--images must be between 1 and 8, got {args.images}")
    if args.sigma < 0:
        raise CLIError(f"--sigma must be >= 0, got {args.sigma}")
    if args.jobs < 1:
        raise CLIError(f"--jobs must be >= 1, got {args.jobs}")
    t_start = time.time()
    x, names = demo_images(args.images)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"restoring {len(x)} images x {len(args.tasks)} tasks ({', '.join(args.tasks)}) with LDPS and P2L, "
          f"{args.steps} DDIM steps each; compiling takes the first minute or two", flush=True)
    # loading the prior and simulating the problems overlap (each is mostly small compilations)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1 + len(args.tasks)) as pool:
        loading = pool.submit(load, args.prior)
        problems = list(pool.map(lambda a: _problem(a[1], a[0], x, names, args, out / a[1]), enumerate(args.tasks)))
        prior = loading.result()
    bar = tqdm(total=len(SOLVER_NAMES) * args.steps, desc="demo", unit="step")
    times: list = []
    # P2L, the longer, goes first; LDPS starts tracing once P2L's program is traced (tracing holds
    # the interpreter lock, XLA's compilation does not), so that the two overlap without contending
    lowered = threading.Event()
    order = {"p2l": (None, lowered), "ldps": (lowered, None)} if args.jobs > 1 else {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(args.jobs, len(SOLVER_NAMES))) as pool:
        futures = {sname: pool.submit(_restore, sname, args.tasks, problems, prior, args, bar, out, times,
                                      *order.get(sname, (None, None)))
                   for sname in ("p2l", "ldps")}
        paths = {sname: f.result() for sname, f in futures.items()}
    bar.close()
    rows, table = [], []
    for tname, problem in zip(args.tasks, problems):
        recs = {}
        for sname in SOLVER_NAMES:
            res = read_result(paths[sname][tname])
            recs[sname] = res.reconstruction
            scores = {k: float(np.nanmean(v)) for k, v in res.metrics.items() if k in ("psnr", "ssim", "lpips")}
            table.append((tname, res.solver, scores, float(np.nansum(res.wall_time))))
        rows.append((tname, _display(problem.measurement, x.shape), recs["ldps"], recs["p2l"], x))
    _figure(rows, out / "demo.png")
    print(_format(table))
    if times:
        print(f"compiling: {sum(c for c, _ in times):.0f} s, solving: {sum(s for _, s in times):.0f} s "
              f"(summed over the {len(times)} solver programs run, one per solver for all tasks; with --jobs > 1 "
              "they overlap in time)")
    print(f"wrote {', '.join(str(out / t) + '/' for t in args.tasks)} (problems.h5, ldps.h5, p2l.h5) and "
          f"{out / 'demo.png'} in {time.time() - t_start:.0f} s")


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
    head = f"{'task':<18}{'solver':<7}{'PSNR':>8}{'SSIM':>8}" + (f"{'LPIPS':>8}" if has_lpips else "") + f"{'solve s':>9}"
    lines = [head, "-" * len(head)]
    for tname, sname, s, secs in table:
        lines.append(f"{tname:<18}{sname:<7}{s['psnr']:>8.2f}{s['ssim']:>8.3f}"
                     + (f"{s['lpips']:>8.3f}" if has_lpips else "") + f"{secs:>9.1f}")
    return "\n".join(lines)
