"""How close can a latent method get on box inpainting? The autoencoder's round trip against
TV-ADMM and LDPS, on 25 tuning images (every other one of files 4995-4999 of each class).

Prints mean PSNR / SSIM / LPIPS of: the bundled autoencoder's round trip D(E(x)) (a ceiling for
every latent method's known pixels), TV-ADMM (lambda 0.03, 50 iterations) and LDPS (25 and
100 DDIM steps, static steps 0.3, 1 and 3) on a 16 x 16 box, sigma = 0.005::

    python benchmarks/box_ceiling.py
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from _common import image_keys, load_validation, measure, run_latent, scores, tuning_set


def _means(sc) -> str:
    return ", ".join(f"{k} {np.mean(v):.4f}" for k, v in sc.items())


def main() -> None:
    import operators
    from diffprior import LatentDiffusionPrior
    from diffprior.solvers import LDPS, Dataset, LDPSConfig, Task
    from diffprior.solvers.tv_admm import TVADMM

    val = tuning_set(load_validation()).subset(np.arange(0, 50, 2))
    prior = LatentDiffusionPrior.bundled()
    rec = np.asarray(jax.jit(lambda x: prior.decode(prior.encode(x), clip=True))(jnp.asarray(val.images)))
    print("autoencoder round trip:", _means(scores(rec, val.images)), flush=True)
    shape = val.images.shape[1:]
    A = operators.Inpaint(shape, operators.box_mask(jax.random.PRNGKey(3), shape[:2], 16, margin=2))
    y = measure(A, val.images, val.names)
    print("TV-ADMM:", _means(scores(np.asarray(TVADMM(y=y, A=A, maxiter=50, lmbda=0.03).solve()), val.images)),
          flush=True)
    for steps in (25, 100):
        for rho in (0.3, 1.0, 3.0):
            t0 = time.time()
            x, _ = run_latent(LDPS, LDPSConfig.for_task(Task.INPAINT, Dataset.CIFAR10, step_size=rho), y, A, prior,
                              image_keys(val.names), steps)
            print(f"LDPS {steps} steps, rho {rho}:", _means(scores(x, val.images)), f"({time.time() - t0:.0f} s)",
                  flush=True)


if __name__ == "__main__":
    main()
