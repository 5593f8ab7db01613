"""Operators as data: one compiled solver for batches whose motion kernels differ.

The paper (and DPS) draw a new motion kernel for every test image. With the kernels as
traced data, a batch of 8 images with 8 kernels is one operator and one compiled program,
and a second batch with 8 new kernels of the same shapes runs without compiling. This script
measures it on the bundled prior (LDPS, the bundled prior's motion-deblurring preset, 25 DDIM
steps, 32 x 32 CIFAR-10 validation images, sigma = 0.005):

1. batch 1: 8 images, 8 kernels drawn per image (``TASKS["motion-deblur"].build_batch``): wall
   time, compilation included (a fresh, empty JAX compilation cache);
2. batch 2: 8 other images with 8 new kernels: wall time, and whether anything compiled;
3. the same second batch with its operator wrapped in a plain Python callable, which the
   solver must treat as static (compared by identity), as every operator was before: the
   recompilation a new operator used to cost;
4. each sample of batch 2 solved alone (its own kernel, its own key) against its result in
   the batch: the largest absolute difference. XLA's convolutions sum in another order for
   another batch size, so the two agree to float precision per operation, amplified over the
   steps; the criterion is a quarter of one 8-bit grey level (1e-3 on [0, 1] images).

Run on a quiet machine: ``python benchmarks/operators_as_data.py`` (about 4 minutes on one
core); writes ``benchmarks/results/operators_as_data.{json,md}`` with the load average.
Exit status 1 if batch 2 takes half or more of batch 1's time, anything compiled for it, or a
sample differs by more than 1e-3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10" / "train.tar.gz"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="CIFAR-10 archive (validation files are used)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--out", default=str(RESULTS / "operators_as_data"))
    args = ap.parse_args(argv)
    # a fresh persistent cache: the first batch must pay its compilation, as on a new machine
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="ops-as-data-cache-")

    import jax
    import numpy as np

    from diffprior.data import read_dataset, split
    from diffprior.priors import load, preset_table
    from diffprior.solvers import LDPS, LDPSConfig, Task, sample_keys
    from diffprior.solvers.core import run_chunk
    from diffprior.tasks import TASKS

    if not Path(args.data).exists():
        raise SystemExit(f"dataset not found: {args.data} (pass --data)")
    _, val = split(read_dataset(args.data))
    order = np.argsort(np.asarray(val.names))
    images = val.as_float()[order][: 2 * args.batch]
    prior = load()
    cfg = LDPSConfig.for_task(Task.DEBLUR_MOTION, preset_table(prior))
    task, B, shape = TASKS["motion-deblur"], args.batch, images.shape[1:]
    keys = sample_keys(jax.random.PRNGKey(0), np.arange(B))

    def problem(i):
        A = task.build_batch(shape, jax.random.PRNGKey(100 + i), B)
        x = images[i * B:(i + 1) * B]
        y = A(x) + 0.005 * jax.random.normal(jax.random.PRNGKey(200 + i), A.output_shape)
        return A, np.asarray(y)

    def solve(A, y, k, **kw):
        t0 = time.perf_counter()
        x = np.asarray(LDPS(y=y, A=A, prior=prior, key=k, num_steps=args.steps, config=cfg, **kw).solve())
        return x, time.perf_counter() - t0

    A1, y1 = problem(0)
    _, t1 = solve(A1, y1, keys)
    programs = run_chunk._cache_size()
    A2, y2 = problem(1)
    x2, t2 = solve(A2, y2, keys)
    recompiled = run_chunk._cache_size() - programs
    n_kernels = len({np.asarray(A).tobytes() for A in np.asarray(A2.kernel)})

    # the same operator behind a plain callable, which the solver can only compare by identity
    _, t_opaque = solve(lambda x: A2(x), y2, keys, image_shape=shape)

    diffs, mean_diffs = [], []
    for i in range(B):
        xi, _ = solve(A2.take([i]), y2[i:i + 1], keys[i:i + 1])
        diffs.append(float(np.max(np.abs(xi[0] - x2[i]))))
        mean_diffs.append(float(np.mean(np.abs(xi[0] - x2[i]))))

    load1, _, _ = os.getloadavg()
    res = {
        "solver": "LDPS", "steps": args.steps, "batch": B, "image_shape": list(shape),
        "distinct_kernels_in_batch": n_kernels,
        "batch1_seconds_with_compilation": t1, "batch2_seconds": t2, "ratio_batch2_over_batch1": t2 / t1,
        "programs_compiled_for_batch2": int(recompiled),
        "batch2_as_opaque_callable_seconds": t_opaque,
        "max_abs_diff_alone_vs_batch": max(diffs), "mean_abs_diff_alone_vs_batch": float(np.mean(mean_diffs)),
        "load_average_1min": load1, "cpu_count": os.cpu_count(),
        "jax": jax.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    ok = t2 < 0.5 * t1 and recompiled == 0 and max(diffs) < 1e-3
    md = [
        "# Operators as data: per-image motion kernels, one compiled program",
        "",
        f"LDPS, {args.steps} DDIM steps, bundled prior, motion-deblur preset, {B} CIFAR-10 validation images "
        f"of {shape[0]}x{shape[1]} per batch, {n_kernels} distinct kernels per batch. "
        f"Load average {load1:.2f} on {os.cpu_count()} cores; written by `python benchmarks/operators_as_data.py`.",
        "",
        "| | seconds |",
        "|---|---|",
        f"| batch 1 (8 kernels), compilation included | {t1:.1f} |",
        f"| batch 2 (8 new kernels), operator as data | {t2:.1f} ({t2 / t1:.2f} x batch 1; "
        f"{recompiled} programs compiled) |",
        f"| batch 2 with its operator as an opaque callable (recompiles, as every operator did before) | "
        f"{t_opaque:.1f} |",
        "",
        f"Each sample of batch 2 solved alone against its result in the batch (images in [0, 1]): largest "
        f"absolute difference {max(diffs):.2e}, mean {np.mean(mean_diffs):.1e} (float summation order of "
        f"batched convolutions; criterion 1e-3, a quarter of an 8-bit grey level).",
        "",
        f"Target (batch 2 < half of batch 1, no recompilation, samples equal to 1e-3): {'met' if ok else 'MISSED'}.",
    ]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
