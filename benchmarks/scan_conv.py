"""The convolution input gradient inside ``lax.scan``: JAX's transpose rule against the explicit one.

The solvers run their reverse steps in chunks of ``lax.scan``; each step differentiates the UNet
and the decoder with respect to their input. On XLA's CPU backend the convolution input
gradient that JAX's transpose rule emits (kernel reversal and channel swap folded into the
dimension numbers) runs many times slower in a ``scan`` body than unrolled;
:mod:`diffprior.models.fastconv` writes it with the flipped, transposed kernel as an ordinary
array instead. This script measures, in one run:

1. one 3 x 3 convolution (4 x 48 x 48 x 32): 10 input-gradient steps in a ``scan`` and
   unrolled, with each form (milliseconds);
2. whole solves (LDPS and P2L, bundled prior, ``sr4-avg`` presets, 25 DDIM steps, 4 images):
   32 x 32 CIFAR-10 validation images and 48 x 48 BSDS500 ``val`` crops, each form in its own
   process (``DIFFPRIOR_CONV_GRAD=lax`` or ``explicit``), pinned to the first CPU the process
   may use: seconds per image of the solve (compilation excluded), and the largest difference
   between the two forms' reconstructions.

Run on a quiet machine: ``python benchmarks/scan_conv.py`` (about 6 minutes on one core);
writes ``benchmarks/results/scan_conv.{json,md}`` with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _records import load_average, write_record  # noqa: E402
RESULTS = ROOT / "benchmarks" / "results"
FORMS = ("lax", "explicit")


def _timed(f, *args, reps: int = 3) -> float:
    import jax

    jax.block_until_ready(f(*args))
    t0 = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(f(*args))
    return (time.perf_counter() - t0) / reps


def layer_table() -> list:
    """Milliseconds of 10 input-gradient steps through one convolution, per form and loop."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from diffprior.models.fastconv import conv2d

    x = jax.random.normal(jax.random.PRNGKey(0), (4, 48, 48, 32))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 32, 32)) * 0.05
    pad = ((1, 1), (1, 1))
    convs = {"lax": lambda x, w: lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")),
             "explicit": lambda x, w: conv2d(x, w, (1, 1), pad)}
    rows = []
    for form, c in convs.items():
        def step(x, w, c=c):
            return x - 1e-3 * jax.grad(lambda x: jnp.sum(c(x, w) ** 2))(x)

        def scanned(w, x, step=step):
            return lax.scan(lambda x, _: (step(x, w), None), x, None, length=10)[0]

        def unrolled(w, x, step=step):
            for _ in range(10):
                x = step(x, w)
            return x

        rows.append({"form": form, "scan_ms": 1e3 * _timed(jax.jit(scanned), w, x),
                     "unrolled_ms": 1e3 * _timed(jax.jit(unrolled), w, x)})
    return rows


def solve_once(size: int, method: str, out: str) -> None:
    """(Child process) solve 4 images and write ``{"s_per_image": ..}`` and the images to ``out``."""
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import load_validation, solver_config
    from any_size import problem_for, read_bsds, square

    from diffprior.prior import LatentDiffusionPrior
    from diffprior.runner import problem_operator
    from diffprior.solvers import SOLVERS

    if size == 32:
        val = load_validation()
        images, names = val.images[:4], list(val.names[:4])
    else:
        photos = read_bsds("val", limit=4)
        images, names = np.stack([square(x, size) for x in photos.images]), photos.names
    problem = problem_for("sr4-avg", images, names)
    cls = SOLVERS[method]
    prior = LatentDiffusionPrior.bundled()  # one prior object: a second one would be traced anew
    s = cls(y=problem.measurement, A=problem_operator(problem), prior=prior,
            key=jax.random.split(jax.random.PRNGKey(0), 4), num_steps=25, config=solver_config(cls, "sr4-avg"),
            progress=False)
    compile_s = s.compile()
    s.advance(1)  # the first chunk call also loads what compile() prepared
    s2 = cls(y=problem.measurement, A=problem_operator(problem), prior=prior,
             key=jax.random.split(jax.random.PRNGKey(0), 4), num_steps=25, config=solver_config(cls, "sr4-avg"),
             progress=False)
    t0 = time.perf_counter()
    x = np.asarray(s2.solve())
    dt = (time.perf_counter() - t0) / 4
    np.save(out + ".npy", x)
    Path(out + ".json").write_text(json.dumps({"s_per_image": dt, "compile_s": compile_s}))


def solve_table(cpu: int) -> list:
    rows = []
    tmp = tempfile.mkdtemp(prefix="scan-conv-")
    import numpy as np

    for size in (32, 48):
        for method in ("ldps", "p2l"):
            got = {}
            for form in FORMS:
                out = os.path.join(tmp, f"{size}-{method}-{form}")
                env = dict(os.environ, DIFFPRIOR_CONV_GRAD=form)
                cmd = ["taskset", "-c", str(cpu), sys.executable, __file__, "--child", str(size), method, out]
                subprocess.run(cmd, env=env, check=True, cwd=ROOT)
                got[form] = (json.loads(Path(out + ".json").read_text()), np.load(out + ".npy"))
            diff = float(np.abs(got["lax"][1] - got["explicit"][1]).max())
            row = {"size": size, "method": method, **{f"{f}_s_per_image": got[f][0]["s_per_image"] for f in FORMS},
                   "max_abs_difference": diff}
            row["speedup"] = row["lax_s_per_image"] / row["explicit_s_per_image"]
            print(row, flush=True)
            rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=3, metavar=("SIZE", "METHOD", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "scan_conv"))
    args = ap.parse_args(argv)
    if args.child:
        solve_once(int(args.child[0]), args.child[1], args.child[2])
        return 0
    cpu = min(os.sched_getaffinity(0))
    load_before = load_average()
    layers = layer_table()
    for r in layers:
        print(r, flush=True)
    solves = solve_table(cpu)
    load_after = load_average()
    import jax

    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "jax": jax.__version__, "cpus": os.cpu_count(),
              "pinned_cpu": cpu, "loadavg_before": load_before, "loadavg_after": load_after,
              "layer": layers, "solves": solves}
    lines = ["# Convolution input gradients inside `lax.scan` (XLA CPU)", "",
             f"Produced by `python benchmarks/scan_conv.py` on {record['date']}, jax {record['jax']}, "
             f"{record['cpus']} CPUs (solves pinned to CPU {cpu}); 1/5/15-min load average "
             f"{load_before} before, {load_after} after.", "",
             "## One 3x3 convolution, 4 x 48 x 48 x 32, 10 input-gradient steps (ms)", "",
             "| form | in `lax.scan` | unrolled |", "|---|---|---|"]
    lines += [f"| {r['form']} | {r['scan_ms']:.1f} | {r['unrolled_ms']:.1f} |" for r in layers]
    lines += ["", "## Whole solves, bundled prior, sr4-avg, 25 steps, 4 images (s/image, compilation excluded)", "",
              "`lax`: JAX's transpose rule (`DIFFPRIOR_CONV_GRAD=lax`); `explicit`: "
              "`diffprior.models.fastconv` (the default). `max |dx|`: the largest difference between the two "
              "forms' reconstructions ([0, 1] images).", "",
              "| image | method | lax | explicit | speed-up | max \\|dx\\| |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['size']}x{r['size']} | {r['method']} | {r['lax_s_per_image']:.2f} | "
              f"{r['explicit_s_per_image']:.2f} | {r['speedup']:.1f}x | {r['max_abs_difference']:.1e} |" for r in solves]
    write_record(args.out, record, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
