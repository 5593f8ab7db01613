"""What 25 DDIM steps cost against the paper's 1000: LPIPS and the data fit as the steps grow.

The paper runs 1000 DDIM steps; our tables run 25. At 25 steps the latent solvers leave
measurement residuals :math:`\\|y - A\\hat x\\|` far above the noise floor :math:`\\sigma\\sqrt{m}`
(the residual the ground truth itself leaves). This script solves the first ``--n`` evaluation
images of every task with LDPS and P2L (their ``Dataset.CIFAR10`` presets, unchanged) at 25, 100
and 1000 steps and reports, per task, method and number of steps, the mean LPIPS, PSNR and
residual (± standard error) beside :math:`\\sigma\\sqrt{m}`, and the seconds per image.

Each (task, method, steps) is one result file, ``OUT/results/<task>__<method>-s<steps>.h5``
(:class:`diffprior.io.ResultWriter`, resumable image by image: an interrupted run continues); the
summary (``steps_sweep.md``, ``steps_sweep.json``) is rebuilt from whatever result files are there
(``--summary-only`` rebuilds it without solving).

Usage (the committed run; P2L at 1000 steps costs about 7 minutes of one core per image)::

    python benchmarks/steps_sweep.py --methods ldps --n 4
    python benchmarks/steps_sweep.py --methods p2l --n 2 --tasks motion-deblur inpaint-freeform
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from _common import RESULTS, evaluation_set, load_validation, result_means, task_problem
from paper_tables import TASKS, method_spec, noise_floor_of, provenance, run_method

STEPS = (25, 100, 1000)
METHODS = ("ldps", "p2l")


def sweep_name(method: str, steps: int) -> str:
    return f"{method}-s{steps}"


def summarize(out: Path) -> list:
    """One row per (task, method, steps) result file of ``out``: means ± s.e. over its done images."""
    rows = []
    for path in sorted((out / "results").glob("*__*-s*.h5")):
        got = result_means(path, ("lpips", "psnr", "residual"))
        if got is None:
            continue
        h, stats = got
        rows.append({"task": h["task"], "method": h["method"].rsplit("-s", 1)[0], "steps": int(h["steps"]),
                     "noise_floor": noise_floor_of(h["task"]), **stats})
    rows.sort(key=lambda r: (TASKS.index(r["task"]), r["method"], r["steps"]))
    (out / "steps_sweep.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["# LPIPS and data fit against the number of DDIM steps (bundled prior, sigma = 0.005)", "",
             "Produced by `python benchmarks/steps_sweep.py`. The first n evaluation images of each task "
             "(the same images at every number of steps); mean ± standard error; `|y-Ax|`: the measurement "
             "residual of the reconstruction, beside `sigma sqrt(m)`, the residual the ground truth itself "
             "leaves; `s/img`: wall seconds per image, solving only.", "",
             "| task | method | steps | n | LPIPS | PSNR | \\|y-Ax\\| | sigma sqrt(m) | s/img |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['method']} | {r['steps']} | {r['n']} | {r['lpips']:.4f} ± {r['lpips_se']:.4f} "
                     f"| {r['psnr']:.2f} ± {r['psnr_se']:.2f} | {r['residual']:.3f} ± {r['residual_se']:.3f} "
                     f"| {r['noise_floor']:.3f} | {r['seconds']:.1f} |")
    (out / "steps_sweep.md").write_text("\n".join(lines) + "\n")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="CIFAR-10 archive (default ../shared/data/cifar10/train.tar.gz)")
    p.add_argument("--n", type=int, default=4, help="evaluation images per task (the first of the tables' images)")
    p.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--out", default=str(RESULTS / "steps_sweep"))
    p.add_argument("--summary-only", action="store_true", help="only rebuild the summary from the result files")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args.summary_only:
        from diffprior.prior import LatentDiffusionPrior

        val = evaluation_set(load_validation(*(args.data and [args.data] or [])), args.n)
        prior = LatentDiffusionPrior.bundled()
        now = provenance()
        for task in args.tasks:
            problem = task_problem(task, val)
            for m in args.methods:
                spec = method_spec(m, task, val.classes, val.labels, val.names)
                for steps in sorted(args.steps):
                    run_method(prior, sweep_name(m, steps), task, val, problem, steps, args.batch, out, spec=spec,
                               now=now)
                summarize(out)
    rows = summarize(out)
    print((out / "steps_sweep.md").read_text())
    print(f"wrote {out}/steps_sweep.md, steps_sweep.json ({len(rows)} rows)")


if __name__ == "__main__":
    main()
