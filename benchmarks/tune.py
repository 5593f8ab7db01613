"""Validation search for the hyperparameters the paper leaves unreadable, on the bundled prior.

For each task preset and solver, runs a small grid over one hyperparameter on the *tuning*
images (files 4995-4999 of every CIFAR-10 validation class, never used by the other
benchmarks) and keeps the value with the lowest mean LPIPS. Step sizes are per-sample values
of the solvers, so a whole grid of step sizes runs as one batch and one compiled program.

Results (every grid point's PSNR/SSIM/LPIPS, the choice) go to
``benchmarks/results/tuning.json`` and ``tuning.md``; each (solver, task, parameter) entry is
written as soon as it is done, and a rerun skips the entries already there. The chosen values
become the solvers' ``Dataset.CIFAR10`` presets (see ``diffprior/solvers/tuned.py``).

Usage::

    python benchmarks/tune.py --solvers ldps --tasks sr4 inpaint-freeform --steps 25 [--n 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from _common import RESULTS, prior_fingerprint, solve_all, build_operator, image_keys, load_validation, measure, scores, se, solver_config, tuning_set

#: (solver name, parameter) -> grid. ``step_size`` runs as one batch.
GRIDS = {
    ("ldps", "step_size"): (0.1, 0.3, 1.0, 3.0, 10.0),
    ("ldps", "eta"): (0.0, 0.5, 1.0),
    ("p2l", "eta"): (0.0, 0.5, 1.0),
    ("ldir", "step_size"): (0.01, 0.03, 0.1, 0.3, 1.0),
    ("gmldps", "step_size"): (0.1, 0.3, 1.0, 3.0, 10.0),
    ("psld", "step_size"): (0.1, 0.3, 1.0, 3.0, 10.0),
    ("p2l", "step_size"): (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),  # plain gradient (GD) presets
    ("p2l", "prompt_lr"): (1e-3, 1e-2, 1e-1),
    ("p2l", "prompt_shift_step"): (0.3, 1.0, 3.0),  # zeta of Eqs. 18-19 (default: rho)
    ("p2l", "projection_weight"): (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),  # lambda of Eq. 16
    ("p2l", "projection_cg_iters"): (1, 5, 20),
    ("gmldps", "fixed_point_weight"): (0.01, 0.1, 1.0),  # gamma of Eq. 25
    ("psld", "gluing_weight"): (0.01, 0.1, 1.0),  # gamma of Eq. 26
    ("tvadmm", "lmbda"): (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1),
    ("pnpadmm", "rho"): (0.002, 0.005, 0.01, 0.02, 0.05, 0.2, 1.0),
}
#: ADMM iterations of the classic baselines (here and in paper_tables.py).
CLASSIC_ITERS = {"tvadmm": 50, "pnpadmm": 30}
TASKS = ("sr4", "sr4-avg", "gauss-deblur", "motion-deblur", "inpaint-freeform", "inpaint-random", "inpaint-box")


def _solver_class(name):
    import diffprior.solvers as S

    return {"ldps": S.LDPS, "ldir": S.LDIR, "gmldps": S.GMLDPS, "psld": S.PSLD, "p2l": S.P2L,
            "tvadmm": S.TVADMM, "pnpadmm": S.PnPADMM}[name]


def search(prior, val, solver: str, task: str, param: str, steps: int, base: dict, grid=None,
           fingerprint: str | None = None) -> dict:
    """One grid search; ``base`` holds already-chosen values that the run should use;
    ``fingerprint`` names the prior's weights in the entry."""
    cls = _solver_class(solver)
    A = build_operator(task, val.images.shape[1:])
    y = measure(A, val.images, val.names)
    keys = image_keys(val.names)
    default = GRIDS[(solver, param)]
    grid = tuple(type(default[0])(v) for v in (grid or default))  # integer parameters stay integers
    rows, t0 = [], time.perf_counter()
    if solver in CLASSIC_ITERS:  # ADMM baselines: one run per value
        outs = [np.asarray(cls(y=y, A=A, maxiter=CLASSIC_ITERS[solver], **{param: float(v)}).solve()) for v in grid]
    elif param == "step_size":
        cfg = solver_config(cls, task, **base)
        n = len(y)
        rho = np.repeat(np.asarray(grid, np.float64), n)
        s = cls(y=np.tile(y, (len(grid), 1, 1, 1)), A=A, prior=prior, key=np.tile(np.asarray(keys), (len(grid), 1)),
                num_steps=steps, config=dataclasses.replace(cfg, step_size=tuple(rho)), progress=True)
        x = solve_all(s)
        outs = [x[i * n:(i + 1) * n] for i in range(len(grid))]
    else:  # any other value (static in the compiled program): one compile per value
        cfg = solver_config(cls, task, **base)
        outs = []
        for v in grid:
            s = cls(y=y, A=A, prior=prior, key=keys, num_steps=steps, config=cfg.with_values({param: v}), progress=True)
            outs.append(solve_all(s))
    for v, x in zip(grid, outs):
        ok = np.all(np.isfinite(x), axis=(1, 2, 3))
        sc = scores(np.where(ok[:, None, None, None], x, 0.0), val.images)
        rows.append({"value": v, "failed": int((~ok).sum()),
                     **{m: float(np.mean(a)) for m, a in sc.items()}, "lpips_se": se(sc["lpips"])})
    valid = [r for r in rows if r["failed"] == 0] or rows
    best = min(valid, key=lambda r: r["lpips"])
    return {"solver": solver, "task": task, "param": param, "steps": steps, "n_images": len(y), "base": base,
            "grid": rows, "chosen": best["value"], "seconds": time.perf_counter() - t0,
            "prior": None if solver in CLASSIC_ITERS else fingerprint}


def to_markdown(entries: list) -> str:
    lines = ["# Hyperparameter search on the tuning images (bundled prior)", "",
             "Produced by `python benchmarks/tune.py`. Tuning images: files 4995-4999 of every CIFAR-10",
             "validation class (never used by the other benchmarks); sigma = 0.005; the value with the",
             "lowest mean LPIPS is chosen (failed samples disqualify a value). `prior`: the weights the",
             "search ran on (`benchmarks/_common.py:prior_fingerprint`; entries without one predate it).", ""]
    for e in entries:
        lines += [f"## {e['solver']} / {e['task']} / {e['param']} ({e['steps']} steps, {e['n_images']} images"
                  + (f", with {e['base']}" if e["base"] else "")
                  + (f", prior `{e['prior']}`" if e.get("prior") else "") + f"): chosen **{e['chosen']}**", "",
                  "| value | PSNR | SSIM | LPIPS | failed |", "|---|---|---|---|---|"]
        for r in e["grid"]:
            lines.append(f"| {r['value']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['lpips']:.4f} ± {r['lpips_se']:.4f} "
                         f"| {r['failed']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _store(out, key, entry) -> list:
    """Add ``entry`` to the results file (re-read under a lock, so that searches may run in
    several processes at once) and rewrite ``tuning.md``; returns all entries."""
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = json.loads(out.read_text()) if out.exists() else []
        entries = [x for x in entries if (x["solver"], x["task"], x["param"], x["steps"]) != key] + [entry]
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(out)
        (out.parent / "tuning.md").write_text(to_markdown(entries))
    return entries


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="CIFAR-10 archive (default ../shared/data/cifar10/train.tar.gz)")
    p.add_argument("--solvers", nargs="+", default=["ldps"], choices=sorted({s for s, _ in GRIDS}))
    p.add_argument("--params", nargs="+", default=["step_size"], choices=sorted({q for _, q in GRIDS}))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--n", type=int, default=20, help="tuning images (at most 50)")
    p.add_argument("--grid", nargs="+", type=float, default=None, help="values to try (default: GRIDS)")
    p.add_argument("--redo", action="store_true", help="recompute entries already in the results file")
    args = p.parse_args(argv)

    from diffprior.prior import LatentDiffusionPrior

    out = RESULTS / "tuning.json"
    entries = json.loads(out.read_text()) if out.exists() else []
    val = load_validation(*(args.data and [args.data] or []))
    tune = tuning_set(val)
    tune = tune.subset(np.arange(min(args.n, len(tune.names))))
    prior = LatentDiffusionPrior.bundled()
    fingerprint = prior_fingerprint()  # once: it hashes the weight files
    for solver in args.solvers:
        for task in args.tasks:
            for param in args.params:
                if (solver, param) not in GRIDS:
                    continue
                steps = 0 if solver in CLASSIC_ITERS else args.steps  # the ADMM baselines have no DDIM steps
                key = (solver, task, param, steps)
                done = [e for e in entries if (e["solver"], e["task"], e["param"], e["steps"]) == key]
                if done and not args.redo:
                    print(f"skip {key}: chosen {done[0]['chosen']}")
                    continue
                # the run uses the values already chosen for this solver and task (search step sizes first)
                base = {e["param"]: e["chosen"] for e in entries
                        if (e["solver"], e["task"], e["steps"]) == (solver, task, steps) and e["param"] != param}
                e = search(prior, tune, solver, task, param, steps, base, args.grid, fingerprint)
                print(f"{solver} {task} {param}: " + ", ".join(f"{r['value']}: {r['lpips']:.4f}/{r['psnr']:.2f}dB"
                                                             for r in e["grid"]) + f" -> {e['chosen']}", flush=True)
                entries = _store(out, key, e)


if __name__ == "__main__":
    main()
