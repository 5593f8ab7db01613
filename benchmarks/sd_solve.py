"""One P2L solve at Stable Diffusion size, timed: compilation, the solve, and the device's peak memory.

SD v1.4's architecture with random weights (``--prior PATH`` loads a diffusers folder instead),
one synthetic image (smooth random colour fields) of ``--size`` pixels, 4x average-pooling
super-resolution at sigma = 0.005, P2L with its SR preset (prompt tuning K = 3, projection every
4 steps) for ``--steps`` DDIM steps, the text embedding started at zeros (a random prior has no
tokenizer). The reconstruction of random weights is noise: this measures cost, not quality.

Prints and writes (``--out``, JSON) the JAX backend and device, the compile and solve seconds,
seconds per step and, on a GPU, the device's peak bytes in use (``memory_stats``).

Usage (what ``benchmarks/gpu_check.sh`` runs)::

    python benchmarks/sd_solve.py --size 512 --steps 50 --dtype float32 --out sd_solve.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """``(size, size, 3)`` in [0, 1]: random colour fields blurred to a few large blobs."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(size=(8, 8, 3)).astype(np.float32)
    x = jax.image.resize(jnp.asarray(coarse), (size, size, 3), "cubic")
    return np.clip(np.asarray(x), 0, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--prior", default=None, help="a diffusers folder (default: SD v1.4 architecture, random)")
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args(argv)

    import operators

    from diffprior.models.presets import sd_v1_configs
    from diffprior.prior import LatentDiffusionPrior
    from diffprior.solvers import P2L, Task

    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    t0 = time.perf_counter()
    if args.prior:
        prior = LatentDiffusionPrior.from_pretrained(args.prior, dtype=dtype)
    else:
        u, v, c = sd_v1_configs()
        prior = LatentDiffusionPrior.random(jax.random.PRNGKey(0), u, v, c, tokenizer=None, dtype=dtype)
    jax.block_until_ready(prior.unet_params)
    load_s = time.perf_counter() - t0
    x = synthetic_image(args.size)
    A = operators.Downsample(x.shape, 4, "average")
    y = operators.simulate(A, x, sigma=0.005, key=jax.random.PRNGKey(1))
    shape = prior.null_embedding.shape[1:] if prior.tokenizer is not None else (
        prior.text_encoder.config.max_position_embeddings, prior.unet.config.cross_attention_dim)
    emb = jnp.zeros((1, *shape), jnp.float32)
    solver = P2L(y=y, A=A, prior=prior, key=jax.random.PRNGKey(2), num_steps=args.steps, config=Task.SR,
                 prompt=emb, progress=False)
    compile_s = solver.compile()
    t0 = time.perf_counter()
    xhat = np.asarray(solver.solve())
    solve_s = time.perf_counter() - t0
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    rec = {"backend": jax.default_backend(), "device": str(dev), "jax": jax.__version__, "size": args.size,
           "steps": args.steps, "dtype": args.dtype, "prior": args.prior or "SD v1.4 architecture, random weights",
           "load_seconds": load_s, "compile_seconds": compile_s, "solve_seconds": solve_s,
           "seconds_per_step": solve_s / args.steps, "output_shape": list(xhat.shape),
           "output_finite": bool(np.isfinite(xhat).all()),
           "device_peak_bytes": (stats or {}).get("peak_bytes_in_use")}
    print(json.dumps(rec, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
