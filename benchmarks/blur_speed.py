"""Zero-boundary blur by FFTs against the direct convolution (:class:`operators.Blur`).

Times the Gram map ``A^T A`` (what CG and every guidance gradient apply) of ``boundary="same"``
blurs for a batch of 4 RGB images, kernels of the ``motion-deblur`` task's side at each size
(:func:`operators.motion_kernel`, :func:`diffprior.tasks.kernel_side`), once by the FFT path and
once with the direct convolution forced, in one process, jitted, the mean of 20 calls after
one warm-up; also the largest difference of the two results. Writes
``results/blur_speed/blur_speed.{md,json}`` with the load average.

Usage::

    taskset -c 0 python benchmarks/blur_speed.py
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import operators as op
from _common import RESULTS
from diffprior.tasks import kernel_side
from operators import blur

SIZES = (32, 48, 96, 256)


def _time(fn, x, reps: int = 20) -> float:
    fn(x).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(reps):
        r = fn(x)
    r.block_until_ready()
    return (time.perf_counter() - t0) / reps


def measure(size: int) -> dict:
    side = kernel_side(size)
    k = op.motion_kernel(jax.random.PRNGKey(0), side, 0.5)
    x = jnp.asarray(np.random.default_rng(0).random((4, size, size, 3), dtype=np.float32))
    limit = blur.DIRECT_MAX_TAPS
    try:
        A = op.Blur(x.shape, k, "same")
        fast = jax.jit(lambda v: A.adj(A(v)))
        t_default = _time(fast, x)
        blur.DIRECT_MAX_TAPS = 10 ** 9  # force the direct convolution
        D = op.Blur(x.shape, k, "same")
        direct = jax.jit(lambda v: D.adj(D(v)))
        t_direct = _time(direct, x)
        diff = float(jnp.max(jnp.abs(fast(x) - direct(x))))
    finally:
        blur.DIRECT_MAX_TAPS = limit
    return {"size": size, "kernel": side, "fft": side * side > limit, "default_ms": 1e3 * t_default,
            "direct_ms": 1e3 * t_direct, "speedup": t_direct / t_default, "max_abs_diff": diff}


def main() -> None:
    rows = [measure(s) for s in SIZES]
    load = os.getloadavg()
    out = RESULTS / "blur_speed"
    out.mkdir(parents=True, exist_ok=True)
    (out / "blur_speed.json").write_text(json.dumps({"rows": rows, "load": load,
                                                      "cores": len(os.sched_getaffinity(0))}, indent=1) + "\n")
    lines = ["# Zero-boundary blur: A^T A by the default path against the direct convolution", "",
             f"Produced by `python benchmarks/blur_speed.py`: batch 4 x S x S x 3, motion kernels of the "
             f"task's side, jitted, mean of 20 calls; {len(os.sched_getaffinity(0))} core(s), load average "
             f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end. The default path is FFTs above "
             f"{blur.DIRECT_MAX_TAPS} taps, direct at or below.", "",
             "| size | kernel | default path | default (ms) | direct (ms) | speed-up | max abs diff |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['kernel']}x{r['kernel']} | {'FFT' if r['fft'] else 'direct'} | "
                     f"{r['default_ms']:.2f} | {r['direct_ms']:.2f} | {r['speedup']:.1f}x | {r['max_abs_diff']:.1e} |")
    (out / "blur_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
