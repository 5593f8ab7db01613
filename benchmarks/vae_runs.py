"""Autoencoder reconstruction PSNR of training run folders on the 1000 validation images.

The same figure as ``prior_quality.py``'s (posterior-mean round trip, clipped to [0, 1]),
computed from ``diffprior train vae`` run folders before they are exported, e.g. to compare a
fine-tuned autoencoder with the bundled one::

    python benchmarks/vae_runs.py /work/runs/vae_ft /work/runs/vae2
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from _common import load_validation, se


def main(runs) -> None:
    from diffprior.metrics import psnr
    from diffprior.models.vae import AutoencoderKL
    from diffprior.train.ldm import load_vae

    val = load_validation()
    for run in runs:
        cfg, params, meta = load_vae(run)
        model = AutoencoderKL(cfg)
        rec = jax.jit(lambda x: jnp.clip(model.apply({"params": params}, x * 2 - 1) * 0.5 + 0.5, 0, 1))
        p = np.concatenate([np.asarray(psnr(rec(jnp.asarray(val.images[i:i + 100])), jnp.asarray(val.images[i:i + 100])))
                            for i in range(0, len(val.images), 100)])
        print(f"{run}: step {meta['step']}, {len(p)} images, PSNR {p.mean():.2f} ± {se(p):.2f} dB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
