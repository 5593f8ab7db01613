"""Linear-Gaussian stand-ins for a latent and a pixel-space diffusion prior, with exact Tweedie denoisers.

Latent: latents ``z0 ~ N(mu + w * c, s^2 I)`` (``c``: the first token of the text embedding,
one value per latent channel), an affine invertible "autoencoder" ``D(z) = z Q^T q + b`` per
pixel (Q orthogonal, so ``D D^T = q^2 I``) and ``E = D^{-1}``. Pixel (:class:`GaussianPixelPrior`):
``x0 ~ N(mu, s^2 I)`` directly in the ``[-1, 1]`` diffusion space, with the pixel prior's maps
``E(x) = 2x - 1``, ``D(z) = (z + 1)/2``, no text conditioning, and metadata saying so. The
diffused marginal is Gaussian, so the noise prediction from the exact score makes Tweedie's
estimate the exact posterior mean, and every posterior the solvers approximate is known in
closed form (:func:`posterior_mean`, for either prior).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scico.linop
from flax import struct

from diffprior.priors.metadata import PriorMetadata
from diffprior.schedule import Schedule, tweedie


@struct.dataclass
class GaussianLatentPrior:
    mu: jax.Array  # (h, w, c)
    std: jax.Array  # scalar s
    Q: jax.Array  # (c, c) orthogonal
    scale: jax.Array  # scalar q
    offset: jax.Array  # (c,)
    cond_weight: jax.Array  # scalar w
    schedule: Schedule

    @classmethod
    def create(cls, key, latent_shape=(4, 4, 3), std=0.5, scale=0.3, cond_weight=0.5):
        k1, k2, k3 = jax.random.split(key, 3)
        c = latent_shape[-1]
        q, _ = jnp.linalg.qr(jax.random.normal(k2, (c, c)))
        return cls(0.3 * jax.random.normal(k1, latent_shape), jnp.float32(std), q, jnp.float32(scale),
                   0.5 + 0.05 * jax.random.normal(k3, (c,)), jnp.float32(cond_weight), Schedule.create())

    # the LatentPrior protocol ------------------------------------------------
    def mean(self, emb):
        return self.mu + self.cond_weight * emb[:, 0, None, None, : self.mu.shape[-1]]

    def eps_and_x0(self, z, t, emb):
        a = self.schedule.abar(t)
        var = a * self.std ** 2 + 1 - a
        eps = jnp.sqrt(1 - a) * (z - jnp.sqrt(a) * self.mean(emb)) / var
        return eps, tweedie(self.schedule, z, eps, t)

    def eps(self, z, t, emb):
        return self.eps_and_x0(z, t, emb)[0]

    def x0(self, z, t, emb):
        return self.eps_and_x0(z, t, emb)[1]

    def decode(self, z):
        return self.scale * z @ self.Q.T + self.offset

    def encode(self, x):
        return (x - self.offset) @ self.Q / self.scale

    def embed(self, prompts):
        return jnp.zeros((len(prompts), 1, self.mu.shape[-1]), jnp.float32)


#: What a pixel-space prior says about itself (the contract of diffprior.priors.pixel).
PIXEL_METADATA = PriorMetadata(name="gaussian-pixel", latent=False, conditioning=False)


@struct.dataclass
class GaussianPixelPrior:
    """``x0 ~ N(mu, s^2 I)`` in the ``[-1, 1]`` diffusion space of a pixel prior (see module doc)."""

    mu: jax.Array  # (H, W, C), diffusion ([-1, 1]) units
    std: jax.Array  # scalar s, diffusion units
    schedule: Schedule
    metadata: PriorMetadata = struct.field(pytree_node=False, default=PIXEL_METADATA)

    @classmethod
    def create(cls, key, image_shape=(4, 4, 3), std=0.5, metadata=PIXEL_METADATA):
        # a DDPM-style pixel schedule: linear betas, alpha_bar = 1 after the last step
        schedule = Schedule.create("linear", 1000, 1e-4, 0.02, set_alpha_to_one=True, steps_offset=0)
        return cls(0.3 * jax.random.normal(key, image_shape), jnp.float32(std), schedule, metadata)

    def eps_and_x0(self, z, t, emb):
        a = self.schedule.abar(t)
        var = a * self.std ** 2 + 1 - a
        eps = jnp.sqrt(1 - a) * (z - jnp.sqrt(a) * self.mu) / var
        return eps, tweedie(self.schedule, z, eps, t)

    def decode(self, z):
        return (z + 1.0) / 2.0

    def encode(self, x):
        return 2.0 * x - 1.0

    def embed(self, prompts):
        return jnp.zeros((len(prompts), 1, 1), jnp.float32)

    def latent_shape(self, image_shape):
        return tuple(image_shape)


def pixel_problem(seed=0, m=20, sigma=0.05, n=2, std=0.5):
    """Pixel prior, a dense operator with ``m`` rows on 4x4x3 images, true ``[-1, 1]`` images and
    measurements ``y = A x + sigma * noise`` of the ``[0, 1]`` images ``x = D(z)``."""
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(seed), 4)
    prior = GaussianPixelPrior.create(k1, std=std)
    d = int(np.prod(prior.mu.shape))
    A = Dense(jax.random.normal(k2, (m, d)) / np.sqrt(d), prior.mu.shape)
    z_true = prior.mu + prior.std * jax.random.normal(k3, (n, *prior.mu.shape))
    y = jax.vmap(A)(prior.decode(z_true)) + sigma * jax.random.normal(k4, (n, m))
    return prior, A, z_true, y


class Dense(scico.linop.LinearOperator):
    """``x (H, W, C) -> M @ x.ravel()``: a dense matrix on images (exact adjoint by transpose)."""

    def __init__(self, M, input_shape):
        self.M = jnp.asarray(M, jnp.float32)
        super().__init__(input_shape=tuple(input_shape), output_shape=(self.M.shape[0],), input_dtype=jnp.float32)

    def _eval(self, x):
        return self.M @ x.ravel()


def gaussian_problem(seed=0, m=20, sigma=0.01, n=2):
    """Prior, a dense operator with ``m`` rows on 4x4x3 images, true latents and measurements."""
    key = jax.random.PRNGKey(seed)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    prior = GaussianLatentPrior.create(k1)
    d = int(np.prod(prior.mu.shape))
    A = Dense(jax.random.normal(k2, (m, d)) / np.sqrt(d), prior.mu.shape)
    z_true = prior.mu + prior.std * jax.random.normal(k3, (n, *prior.mu.shape))
    y = jax.vmap(A)(prior.decode(z_true)) + sigma * jax.random.normal(k4, (n, m))
    return prior, A, z_true, y


def posterior_mean(prior, A, y, sigma, m0=None, v0=None):
    """``E[z0 | y]`` for ``z0 ~ N(m0, v0 I)`` (default: the prior with c = 0), ``y = A D z0 + n``."""
    m0 = jnp.broadcast_to(prior.mu, (y.shape[0], *prior.mu.shape)) if m0 is None else m0
    v0 = prior.std ** 2 if v0 is None else v0
    d = int(np.prod(prior.mu.shape))
    G = jax.jacfwd(lambda z: A(prior.decode(z.reshape(prior.mu.shape))))(jnp.zeros(d))  # A D (linear part)
    G, c = np.asarray(G, np.float64), np.asarray(A(prior.decode(jnp.zeros(prior.mu.shape))), np.float64)
    out = []
    for yn, mn in zip(np.asarray(y, np.float64), np.asarray(m0, np.float64).reshape(y.shape[0], d)):
        gain = v0 * G.T @ np.linalg.solve(v0 * G @ G.T + sigma ** 2 * np.eye(G.shape[0]), yn - G @ mn - c)
        out.append((mn + gain).reshape(prior.mu.shape))
    return np.stack(out)
