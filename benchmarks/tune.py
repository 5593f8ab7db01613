"""Validation search for the hyperparameters the paper leaves unreadable, on the bundled prior.

For each task preset and solver, runs a small grid over one hyperparameter on the *tuning*
images (files 4995-4999 of every CIFAR-10 validation class, never used by the other
benchmarks) and keeps the value with the lowest mean LPIPS. Step sizes are per-sample values
of the solvers, so a whole grid of step sizes runs as one batch and one compiled program.

Results (every grid point's PSNR/SSIM/LPIPS, the choice) go to
``benchmarks/results/tuning.json`` and ``tuning.md``; each (solver, task, parameter) entry is
written as soon as it is done, and a rerun skips the entries already there. The chosen values
become the solvers' ``Dataset.CIFAR10`` presets (see ``diffprior/solvers/tuned.py``).

Every grid point is solved by the library's runner (:func:`diffprior.runner.solve_problem`)
into a result file (:class:`diffprior.io.ResultWriter`) in a temporary folder, from which its
scores are read (failed samples: NaN scores); a search that is interrupted starts again (the
entries of ``tuning.json`` are the resume unit). The ADMM baselines run their task's preset
(its iteration count, 50 for TV-ADMM and 30 for PnP-ADMM, at which the weights were searched)
with the searched value replaced.

Usage::

    python benchmarks/tune.py --solvers ldps --tasks sr4 inpaint-freeform --steps 25 [--n 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import (RESULTS, bundled_prior, image_keys, load_validation, run_result, se, solver_config,
                     task_problem, tuning_set)

#: (solver name, parameter) -> grid. ``step_size`` runs as one batch.
GRIDS = {
    ("ldps", "step_size"): (0.1, 0.3, 1.0, 3.0, 10.0),
    ("ldps", "eta"): (0.0, 0.5, 1.0),  # one eta per task for every latent solver (see ONE_ETA)
    ("ldir", "step_size"): (0.003, 0.01, 0.03, 0.1, 0.3, 1.0),  # Adam-normalised: each element moves about rho
    ("gmldps", "step_size"): (0.1, 0.3, 1.0, 3.0, 10.0),
    ("psld", "step_size"): (0.1, 0.3, 1.0, 3.0, 10.0),
    ("p2l", "step_size"): (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),  # plain gradient (GD) presets
    ("p2l", "prompt_lr"): (1e-3, 1e-2, 1e-1),
    ("p2l", "prompt_shift_step"): (0.3, 1.0, 3.0),  # zeta of Eqs. 18-19 (default: rho)
    ("p2l", "projection_weight"): (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),  # lambda of Eq. 16
    ("p2l", "projection_cg_iters"): (1, 5, 20),
    # gamma of Eqs. 25 and 26, from 0 (the regulariser off: LDPS) up
    ("gmldps", "fixed_point_weight"): (0.0, 0.001, 0.003, 0.01, 0.1, 1.0),
    ("psld", "gluing_weight"): (0.0, 0.001, 0.003, 0.01, 0.1, 1.0),
    # LDPS plus prompt tuning (the paper's "prompt tuning only"): its own K and learning rate
    ("ldps-pt", "prompt_lr"): (1e-3, 1e-2, 1e-1),
    ("ldps-pt", "prompt_iters"): (1, 3, 5),  # Table 6's values of K
    ("tvadmm", "lmbda"): (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1),
    ("pnpadmm", "rho"): (0.002, 0.005, 0.01, 0.02, 0.05, 0.2, 1.0),
    # the pixel-space solvers, on the bundled pixel prior, around their papers' values (DPS's
    # zeta 0.3-1, DDS's gamma 1, DiffPIR's lambda 7 and zeta 0.3-1)
    ("dps", "step_size"): (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
    ("dds", "gamma"): (0.1, 0.3, 1.0, 3.0, 10.0, 100.0),
    ("diffpir", "lmbda"): (1.0, 3.0, 7.0, 20.0, 50.0),
    ("diffpir", "zeta"): (0.1, 0.3, 0.5, 0.8, 1.0),
}
#: DDIM's eta is searched once per task, on LDPS (the solver every other latent solver extends),
#: and the presets give every latent solver that value (``diffprior.solvers.tuned``): a search
#: of another solver runs with it, never with an eta of its own.
ONE_ETA = "ldps"
#: The classic (ADMM) baselines: no diffusion prior, no DDIM steps (their iteration counts are
#: part of their presets).
CLASSIC = ("tvadmm", "pnpadmm")
#: The pixel-space solvers: searched on the bundled pixel prior (``--steps``: theirs, e.g. the
#: benchmark's ``--pixel-steps``), with their own DDIM eta (not :data:`ONE_ETA`'s).
PIXEL = ("dps", "dds", "diffpir")
TASKS = ("sr4", "sr4-avg", "gauss-deblur", "motion-deblur", "inpaint-freeform", "inpaint-random", "inpaint-box")


def _solver_class(name):
    import diffprior.solvers as S

    return {"ldps": S.LDPS, "ldps-pt": S.LDPS, "ldir": S.LDIR, "gmldps": S.GMLDPS, "psld": S.PSLD, "p2l": S.P2L,
            "tvadmm": S.TVADMM, "pnpadmm": S.PnPADMM, "dps": S.DPS, "dds": S.DDS, "diffpir": S.DiffPIR}[name]


def _base_config(solver: str, task: str, base: dict):
    """The preset the search starts from, with the values already chosen (``base``)."""
    if solver == "ldps-pt":
        from diffprior.solvers import LDPSConfig, Task
        from diffprior.tasks import TASKS

        cfg = LDPSConfig.with_prompt_tuning(Task(TASKS[task].solver_task))
        return cfg.with_values(base) if base else cfg
    if solver == "diffpir":  # its rho_t needs the measurement noise: the searches' sigma
        from _common import SIGMA

        base = {"noise_sigma": SIGMA, **base}
    return solver_config(_solver_class(solver), task, **base)


def search(prior, val, solver: str, task: str, param: str, steps: int, base: dict, grid=None,
           fingerprint: str | None = None) -> dict:
    """One grid search; ``base`` holds already-chosen values that the run should use;
    ``fingerprint`` names the prior's weights in the entry."""
    cls = _solver_class(solver)
    problem = task_problem(task, val)
    keys = image_keys(val.names)
    n = problem.n_samples
    default = GRIDS[(solver, param)]
    grid = tuple(type(default[0])(v) for v in (grid or default))  # integer parameters stay integers
    rows, t0 = [], time.perf_counter()
    cfg = _base_config(solver, task, base)
    hyper = {"solver": solver, "task": task, "param": param, "images": list(val.names), "keys": "image_keys",
             **({"steps": steps, "prior": fingerprint} if cls.uses_prior else {})}

    def run(tmp: Path, name: str, problem_, config, keys_, batch) -> dict:
        path = tmp / f"{name}.h5"
        run_result(path, problem_, cls, config, hyperparameters={**hyper, "config": config.to_json()},
                   prior=prior if cls.uses_prior else None, steps=steps, keys=keys_, batch=batch, label=name,
                   quiet=not cls.uses_prior)
        return read_result(path).metrics

    from diffprior.io import read_result

    with tempfile.TemporaryDirectory(prefix="tune_") as tmp:
        tmp = Path(tmp)
        if param == "step_size" and cls.uses_prior:
            # one batch, one compiled program: the images repeated once per value, each copy
            # with its own static step (a per-sample value of the solvers)
            tiled = dataclasses.replace(problem, measurement=np.tile(problem.measurement, (len(grid), 1, 1, 1)),
                                        ground_truth=np.tile(problem.ground_truth, (len(grid), 1, 1, 1)),
                                        seeds=np.tile(problem.seeds, len(grid)), names=list(problem.names) * len(grid))
            rho = np.repeat(np.asarray(grid, np.float64), n)
            m = run(tmp, "step_size", tiled, dataclasses.replace(cfg, step_size=tuple(rho)),
                    np.tile(np.asarray(keys), (len(grid), 1)), len(rho))
            outs = [{k: v[i * n:(i + 1) * n] for k, v in m.items()} for i in range(len(grid))]
        else:  # any other value (static in the compiled program; the ADMM baselines): one run per value
            outs = [run(tmp, f"{param}_{i}", problem, cfg.with_values({param: v}), keys, n) for i, v in enumerate(grid)]
    for v, sc in zip(grid, outs):
        ok = np.isfinite(sc["psnr"])
        rows.append({"value": v, "failed": int((~ok).sum()),
                     **{m: float(np.mean(sc[m][ok])) if ok.any() else float("nan") for m in ("psnr", "ssim", "lpips")},
                     "lpips_se": se(sc["lpips"][ok])})
    return {"solver": solver, "task": task, "param": param, "steps": steps, "n_images": n, "base": base,
            "grid": rows, "chosen": _choose(rows), "seconds": time.perf_counter() - t0,
            "prior": None if solver in CLASSIC else fingerprint}


def _choose(rows: list):
    """The value of the grid rows with the lowest mean LPIPS (a value with failed samples only
    when every value has some)."""
    valid = [r for r in rows if r["failed"] == 0] or rows
    return min(valid, key=lambda r: r["lpips"])["value"]


def extend(entry: dict, prior, val, base: dict, grid, fingerprint: str | None) -> dict | None:
    """``entry`` with the values of ``grid`` it lacks searched too (same images, base values and
    prior, else :class:`SystemExit`) and the choice made again over all its values; ``None`` when
    it has them all."""
    have = {float(r["value"]) for r in entry["grid"]}
    new = [v for v in grid if float(v) not in have]
    if not new:
        return None
    if entry["n_images"] != len(val.names) or entry["base"] != base or entry.get("prior") != (
            None if entry["solver"] in CLASSIC else fingerprint):
        raise SystemExit(f"--extend: {entry['solver']}/{entry['task']}/{entry['param']} was searched with other "
                         "images, base values or weights; use --redo")
    e = search(prior, val, entry["solver"], entry["task"], entry["param"], entry["steps"], base, new, fingerprint)
    rows = sorted(entry["grid"] + e["grid"], key=lambda r: float(r["value"]))
    return {**e, "grid": rows, "chosen": _choose(rows),
            "seconds": entry["seconds"] + e["seconds"]}


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
    p.add_argument("--extend", action="store_true",
                   help="add the values of the grid (default: GRIDS) that an entry lacks, keep its others, and "
                        "choose again (refused where its images, base values or prior differ from this run's)")
    p.add_argument("--out", default=str(RESULTS / "tuning.json"), help="results file (tuning.md is written beside it)")
    args = p.parse_args(argv)

    out = Path(args.out)
    entries = json.loads(out.read_text()) if out.exists() else []
    val = load_validation(*(args.data and [args.data] or []))
    tune = tuning_set(val)
    tune = tune.subset(np.arange(min(args.n, len(tune.names))))
    priors = {}  # kind -> (prior, fingerprint), loaded when first needed (the fingerprint hashes the weights)

    def prior_of(solver):
        kind = "pixel" if solver in PIXEL else "latent"
        if kind not in priors:
            priors[kind] = bundled_prior(kind)
        return priors[kind]
    for solver in args.solvers:
        for task in args.tasks:
            for param in args.params:
                if (solver, param) not in GRIDS:
                    continue
                steps = 0 if solver in CLASSIC else args.steps  # the ADMM baselines have no DDIM steps
                key = (solver, task, param, steps)
                done = [e for e in entries if (e["solver"], e["task"], e["param"], e["steps"]) == key]
                if done and not (args.redo or args.extend):
                    print(f"skip {key}: chosen {done[0]['chosen']}")
                    continue
                # the run uses the values already chosen for this solver and task (search step sizes first)
                base = {e["param"]: e["chosen"] for e in entries
                        if (e["solver"], e["task"], e["steps"]) == (solver, task, steps) and e["param"] != param
                        and (e["param"] != "eta" or solver == ONE_ETA)}
                prior, fingerprint = prior_of(solver)
                if done and args.extend and not args.redo:
                    e = extend(done[0], prior, tune, base, args.grid or GRIDS[(solver, param)], fingerprint)
                    if e is None:
                        print(f"skip {key}: every value already there, chosen {done[0]['chosen']}")
                        continue
                else:
                    e = search(prior, tune, solver, task, param, steps, base, args.grid, fingerprint)
                print(f"{solver} {task} {param}: " + ", ".join(f"{r['value']}: {r['lpips']:.4f}/{r['psnr']:.2f}dB"
                                                             for r in e["grid"]) + f" -> {e['chosen']}", flush=True)
                entries = _store(out, key, e)


if __name__ == "__main__":
    main()
