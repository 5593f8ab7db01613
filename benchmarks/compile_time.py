"""Where the solvers' compilation time goes, and what XLA's flags do to it.

A cold ``diffprior demo`` spends most of its wall time compiling (``demo_time.md``: 317 s of
compilation against 54 s of solving, summed over its six programs). This script measures, for
the demo's setting (the bundled prior, 4 images of 32 px, ``sr4`` at sigma = 0.005, 25 DDIM
steps, the solvers' presets), how long each solver program takes to trace and lower
(``jax.jit(...).lower``) and to compile (XLA), and how long it then takes to solve, for
programs that add one piece at a time:

* ``ddim``: P2L's loop with no guidance, prompt tuning or projection (the UNet forward only);
* ``ldps``: LDPS, the guidance VJP through the UNet and the decoder;
* ``ldps+pt``: LDPS plus P2L's prompt tuning (its K Adam steps, a VJP w.r.t. the embedding);
* ``p2l-proj``: P2L without prompt tuning (guidance and the projection: CG and the encoder);
* ``p2l``: P2L as the demo runs it.

Each (program, XLA flags) pair runs in a fresh process with no compilation cache, pinned to one
core (``--cpu``), so that its numbers are its own; the PSNR of the result is kept to show that a
flag did not change what is computed. ``--flags`` takes XLA flag sets to compare (``""`` is
XLA's defaults), e.g. ``--xla_backend_optimization_level=0`` (LLVM's optimisation level: faster
compilation, slower code). ``--base REV`` also measures each program with the code of an
earlier commit (``git archive REV`` in a temporary folder, imported from there: the script
checks that it is), alternating with this checkout's, so that a change's effect on
compilation is a ratio within one run. Writes ``benchmarks/results/compile_time.{json,md}`` with the load
average before and after; refuses to write when the 1-minute load average at the start is
above ``--max-load`` (default 1.5 on this 2-core machine: a timing beside other jobs is not a
result).

Usage::

    python benchmarks/compile_time.py --flags "" --flags=--xla_backend_optimization_level=0
    python benchmarks/compile_time.py --base f98ee34 --programs ldps+pt p2l
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _records import checkout_label, load_average, source_tree, write_record  # noqa: E402

PROGRAMS = ("ddim", "ldps", "ldps+pt", "p2l-proj", "p2l")


def measure(program: str, steps: int, images: int) -> dict:
    """In this process: trace/lower, compile and solve one program; seconds and PSNR."""
    import dataclasses

    import jax
    import numpy as np

    from diffprior.commands.demo import demo_images
    from diffprior.commands.simulate import simulate_measurements
    from diffprior.metrics import psnr
    from diffprior.prior import LatentDiffusionPrior
    from diffprior.solvers import LDPS, P2L, LDPSConfig, P2LConfig, Task
    from diffprior.solvers.core import run_chunk
    from diffprior.tasks import TASKS

    x, _ = demo_images(images)
    preset = TASKS["sr4"]
    A = preset.build_batch(x.shape[1:], jax.random.PRNGKey(0), len(x))
    y = simulate_measurements(A, x, 0.005, np.arange(len(x)))
    prior = LatentDiffusionPrior.bundled()
    task = Task(preset.solver_task)
    p2l = P2LConfig.for_task(task)
    ldps = LDPSConfig.for_task(task)
    class Unguided(LDPS):  # LDPS's loop without its guidance: the network forward only
        def _components(self, config):
            return {"update": None, "prompt": None}

    cls, cfg = {"ddim": (Unguided, ldps),
                "ldps": (LDPS, ldps),
                "ldps+pt": (LDPS, LDPSConfig.with_prompt_tuning(task)),
                "p2l-proj": (P2L, dataclasses.replace(p2l, prompt=None)),
                "p2l": (P2L, p2l)}[program]
    s = cls(y=y, A=A, prior=prior, key=jax.random.PRNGKey(2), num_steps=steps, config=cfg, progress=False)
    chunk = jax.numpy.zeros((s.chunk_size,), jax.numpy.int32)
    t0 = time.perf_counter()
    lowered = run_chunk.lower(s.plan, s.data, s.state, chunk, jax.numpy.ones((s.chunk_size,), bool))
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    out = np.asarray(s.solve())  # runs the program just compiled (same plan and shapes)
    t3 = time.perf_counter()
    return {"lower_s": t1 - t0, "compile_s": t2 - t1, "solve_s": t3 - t2,
            "psnr": float(np.mean(np.asarray(psnr(out, x)))), "hlo_chars": len(lowered.as_text())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--programs", nargs="+", default=list(PROGRAMS), choices=PROGRAMS)
    p.add_argument("--flags", action="append", default=None, metavar="XLA_FLAGS",
                   help="one XLA flag set per --flags (repeat it); a set that starts with '--' is given as "
                        "--flags=--xla_...; default: XLA's defaults only")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--cpu", type=int, default=0, help="the core each measurement is pinned to")
    p.add_argument("--max-load", type=float, default=1.5)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compile_time"))
    p.add_argument("--base", metavar="REV", help="also measure with this earlier commit's code, in the same run")
    p.add_argument("--one", metavar="PROGRAM", help=argparse.SUPPRESS)
    p.add_argument("--tree", help=argparse.SUPPRESS)  # with --one: import diffprior from this source tree
    args = p.parse_args(argv)
    args.flags = args.flags or [""]
    if args.one:
        if args.tree:
            sys.path.insert(0, args.tree)
            import diffprior

            assert diffprior.__file__.startswith(args.tree), diffprior.__file__
        print(json.dumps(measure(args.one, args.steps, args.images)))
        return
    trees = {"this checkout": None}
    if args.base:
        trees = {args.base: str(source_tree(ROOT, args.base, "compile-time-")), **trees}
    before = load_average()
    if before[0] > args.max_load:
        raise SystemExit(f"compile_time: load average {before} above --max-load {args.max_load}: another job is "
                         "running, and its timings would not be results")
    rows = []
    for flags in args.flags:
        for prog in args.programs:
            for code, tree in trees.items():
                env = dict(os.environ, XLA_FLAGS=flags, JAX_ENABLE_COMPILATION_CACHE="false")
                env.pop("DIFFPRIOR_CACHE", None)
                cmd = ["taskset", "-c", str(args.cpu), sys.executable, __file__, "--one", prog,  # flags: in env
                       "--steps", str(args.steps), "--images", str(args.images)] + (["--tree", tree] if tree else [])
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"{prog} ({code}) with XLA_FLAGS={flags!r} failed:\n{proc.stderr[-3000:]}")
                row = {"program": prog, "code": code, "flags": flags,
                       **json.loads(proc.stdout.strip().splitlines()[-1])}
                rows.append(row)
                print(f"{prog:9s} {code:14s} {flags or '(defaults)':40s} lower {row['lower_s']:6.1f} s  compile "
                      f"{row['compile_s']:6.1f} s  solve {row['solve_s']:6.1f} s  PSNR {row['psnr']:.2f}", flush=True)
    after = load_average()
    head = checkout_label(ROOT)
    record = {"rows": rows, "steps": args.steps, "images": args.images, "load_before": before, "load_after": after,
              "head": head, "base": args.base}
    lines = ["# Compilation time of the solver programs (the demo's setting)", "",
             f"Produced by `python benchmarks/compile_time.py`: the bundled prior, {args.images} demo images, sr4, "
             f"{args.steps} DDIM steps, each program in a fresh process pinned to one core, no compilation cache. "
             f"`lower`: tracing and lowering to StableHLO; `compile`: XLA; `solve`: the first run after it (which also compiles the small start and end programs); PSNR: mean over "
             f"the images (the same for every flag set if the flags do not change the arithmetic). Load average "
             f"{before} before, {after} after. Code: `this checkout` is {head}"
             + (f"; `{args.base}` the earlier commit, measured alternately in the same run." if args.base else "."), "",
             "| program | code | XLA_FLAGS | lower (s) | compile (s) | solve (s) | PSNR | HLO (k chars) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['program']} | {r['code']} | {r['flags'] or '(defaults)'} | {r['lower_s']:.1f} | "
              f"{r['compile_s']:.1f} | {r['solve_s']:.1f} | {r['psnr']:.2f} | {r['hlo_chars'] / 1000:.0f} |"
              for r in rows]
    if args.base:
        lines += ["", f"Lower + compile, this checkout / {args.base}:"]
        for prog in args.programs:
            for flags in args.flags:
                a, b = ([r for r in rows if r["program"] == prog and r["flags"] == flags and r["code"] == c][0]
                        for c in (args.base, "this checkout"))
                lines.append(f"- {prog} ({flags or 'defaults'}): "
                             f"{(b['lower_s'] + b['compile_s']) / (a['lower_s'] + a['compile_s']):.2f}")
    write_record(args.out, record, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
