"""Layer by layer: the forms behind the SD-size gradient's speed-up, each against the form it replaced.

For SD v1.4's shapes at 256 px, in one process, alternating the two forms (minimum of
``--reps`` calls after a warm-up, so that a busy moment cannot favour either):

* the input gradient of a 3x3 convolution on an 8x8x1280 map: flipped, transposed kernel
  (:func:`diffprior.models.fastconv.input_gradient`) against one matrix product and a col2im sum
  (:func:`~diffprior.models.fastconv.input_gradient_gemm`);
* nearest 2x upsampling then a 3x3 convolution, forward and input gradient: on the upsampled map
  against four 2x2 convolutions of the small one (:func:`diffprior.models.upsample.upsample_conv`);
* a 1024-token, 8-head self-attention, forward and backward: JAX's derivative of the einsums
  against :func:`diffprior.models.layers.attend`.

Usage: ``python benchmarks/sd_layers.py`` (about two minutes on 2 cores); writes
``benchmarks/results/sd_layers.json`` and ``.md`` with the load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from diffprior.models import fastconv
from diffprior.models.layers import attend
from diffprior.models.upsample import upsample_conv

HERE = Path(__file__).parent
PAD = ((1, 1), (1, 1))


def _min_time(f, args, reps):
    jax.block_until_ready(f(*args))
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def _pair(name, before, after, args, reps):
    """Time ``before`` and ``after`` (jitted) alternately; the minimum of each."""
    fb, fa = jax.jit(before), jax.jit(after)
    tb = ta = math.inf
    for _ in range(2):
        tb = min(tb, _min_time(fb, args, reps))
        ta = min(ta, _min_time(fa, args, reps))
    print(f"  {name}: {tb * 1e3:.1f} ms -> {ta * 1e3:.1f} ms", flush=True)
    return {"layer": name, "before_ms": tb * 1e3, "after_ms": ta * 1e3}


def _direct_upsample(x, w):
    u = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return fastconv.conv2d(u, w, (1, 1), PAD)


def _einsum_attention(q, k, v):
    s = jnp.einsum("nhqd,nhkd->nhqk", q, k) / math.sqrt(q.shape[-1])
    return jnp.einsum("nhqk,nhkd->nhqd", jax.nn.softmax(s, axis=-1), v)


def _grad_x(f):
    return lambda x, g, *rest: jax.vjp(lambda x: f(x, *rest), x)[1](g)[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sd_layers.json")
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 32))
    rows = []

    def normal(shape, scale=1.0):
        return scale * jax.random.normal(next(keys), shape)

    print("layer: before -> after (min of alternating runs)", flush=True)
    w = normal((3, 3, 1280, 1280), 0.01)
    g = normal((1, 8, 8, 1280))
    rows.append(_pair("conv input gradient, 8x8x1280",
                      lambda g, w: fastconv.input_gradient(g, w, (8, 8), (1, 1), PAD),
                      lambda g, w: fastconv.input_gradient_gemm(g, w, (8, 8), (1, 1), PAD), (g, w), args.reps))
    for s, c in ((128, 256), (64, 512)):
        x, w, g = normal((1, s, s, c)), normal((3, 3, c, c), 0.01), normal((1, 2 * s, 2 * s, c))
        rows.append(_pair(f"upsample + conv forward, {s}x{s}x{c}", _direct_upsample, upsample_conv, (x, w), args.reps))
        rows.append(_pair(f"upsample + conv input gradient, {s}x{s}x{c}", _grad_x(_direct_upsample),
                          _grad_x(upsample_conv), (x, g, w), args.reps))
    q, k, v, g = (normal((1, 8, 1024, 40)) for _ in range(4))
    scale = 1 / math.sqrt(40)
    rows.append(_pair("self-attention 8 x 1024 tokens, forward + backward",
                      lambda q, k, v, g: jax.vjp(_einsum_attention, q, k, v)[1](g),
                      lambda q, k, v, g: jax.vjp(lambda *a: attend(*a, scale), q, k, v)[1](g), (q, k, v, g),
                      args.reps))

    report = {"benchmark": "sd_layers", "jax": jax.__version__, "cores": os.cpu_count(), "reps": args.reps,
              "load_average_at_start": list(load_start), "load_average_at_end": list(os.getloadavg()), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    lines = ["# SD v1.4 layers at 256 px: the replaced form against the new one", "",
             f"jax {jax.__version__}, {os.cpu_count()} cores, float32, batch 1; minimum of 2 x {args.reps} calls, "
             "the two forms alternating. 1/5/15-min load average at the start "
             f"{', '.join(f'{v:.2f}' for v in load_start)}, at the end "
             f"{', '.join(f'{v:.2f}' for v in report['load_average_at_end'])}.", "",
             "| layer | before (ms) | after (ms) | speed-up |", "|---|---:|---:|---:|"]
    lines += [f"| {r['layer']} | {r['before_ms']:.1f} | {r['after_ms']:.1f} | {r['before_ms'] / r['after_ms']:.2f}x |"
              for r in rows]
    lines += ["", "Regenerate: `python benchmarks/sd_layers.py`.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
