"""Text-to-image sampling with a :class:`~diffprior.prior.LatentDiffusionPrior` (no measurement),
and unconditional sampling from a pixel prior (:func:`sample_unconditional`).

Classifier-free guided DDIM (Song et al. 2021; Ho & Salimans 2022): at each step the network
runs on the unconditional and the conditional embedding and the two predictions are mixed,

.. math:: \\hat\\epsilon = \\epsilon_\\theta(z_t, t, \\varnothing)
          + w\\,(\\epsilon_\\theta(z_t, t, c) - \\epsilon_\\theta(z_t, t, \\varnothing)),

then :func:`~diffprior.schedule.ddim_step` moves from :math:`t` to the next timestep. The
whole reverse loop is one ``jax.jit``-compiled ``lax.scan``. With the same initial latents
this reproduces diffusers' ``StableDiffusionPipeline`` with a ``DDIMScheduler``
(``tests/test_sampling.py`` checks it on a tiny model). An unconditional prior (metadata
``conditioning=False``, e.g. a DDPM pixel prior) runs the same loop without text, one network
call per step.

Example::

    prior = LatentDiffusionPrior.from_pretrained("/models/stable-diffusion-v1-4")
    images = sample(prior, ["a photo of an astronaut riding a horse"], jax.random.PRNGKey(0),
                    num_steps=50, guidance_scale=7.5)      # (1, 512, 512, 3) in [0, 1]
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .schedule import ddim_step, ddim_timesteps, model_output_to_eps, tweedie


def _conditional(prior) -> bool:
    """Whether the prior takes text (an unconditional pixel prior's metadata says it does not)."""
    meta = getattr(prior, "metadata", None)
    return meta is None or bool(meta.conditioning)


def _image_hw(prior, image_size) -> tuple[int, int]:
    if image_size is None:
        s = prior.unet.config.sample_size
        if s is None:
            raise ValueError("the prior's UNet gives no sample_size: pass image_size")
        if isinstance(s, (tuple, list)):  # UNet2DModel configurations hold (H, W)
            return int(s[0]) * prior.downsample_factor, int(s[1]) * prior.downsample_factor
        s = s * prior.downsample_factor
        return s, s
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


@partial(jax.jit, static_argnames=("num_steps", "use_cfg"))
def _ddim_loop(prior, z, ids, neg_ids, guidance_scale, eta, key, *, num_steps: int, use_cfg: bool):
    sched = prior.schedule
    cond = None if ids is None else prior.encode_tokens(ids)  # None: an unconditional prior
    uncond = prior.encode_tokens(neg_ids) if use_cfg else cond
    ts = ddim_timesteps(num_steps, sched.num_train_timesteps, sched.steps_offset)
    t_prev = np.concatenate([ts[1:], [-1]]).astype(np.int32)
    keys = jax.random.split(key, num_steps)

    def step(z, xs):
        t, tp, k = xs
        if use_cfg:
            out = prior.model_output(jnp.concatenate([z, z]), t, jnp.concatenate([uncond, cond]))
            out_u, out_c = jnp.split(out, 2)
            out = out_u + guidance_scale * (out_c - out_u)
        else:
            out = prior.model_output(z, t, cond)
        eps = model_output_to_eps(sched, out, z, t)
        z0 = tweedie(sched, z, eps, t)
        # eta is traced (no recompilation per value): the noise is drawn always, scaled by sigma(eta).
        noise = jax.random.normal(k, z.shape, z.dtype)
        return ddim_step(sched, z0, eps, t, tp, eta, noise), None

    z, _ = jax.lax.scan(step, z, (jnp.asarray(ts), jnp.asarray(t_prev), keys))
    return prior.decode(z, clip=True)


def sample(prior, prompt: str | Sequence[str], key, *, num_steps: int = 50, guidance_scale: float = 7.5,
           eta: float = 0.0, image_size: int | tuple[int, int] | None = None,
           negative_prompt: str | Sequence[str] = "", latents=None):
    """Generate images from text prompts with classifier-free-guided DDIM.

    Args:
        prior: a :class:`~diffprior.prior.LatentDiffusionPrior`, or an unconditional prior
            (metadata ``conditioning=False``, e.g. a
            :class:`~diffprior.priors.pixel.PixelDiffusionPrior`: see
            :func:`sample_unconditional`), for which prompts only count the images and
            guidance has no effect.
        prompt: one prompt or a list of ``N`` prompts (one image each).
        key: ``jax.random`` key for the initial latents and, when ``eta > 0``, the step noise.
            The same key gives the same images.
        num_steps: number of DDIM steps (diffusers' "leading" timestep spacing).
        guidance_scale: classifier-free guidance weight :math:`w`; ``1`` disables guidance
            (one network call per step instead of two), ``0`` samples unconditionally.
        eta: DDIM stochasticity, 0 (deterministic) to 1 (DDPM-like).
        image_size: output ``H`` (= ``W``) or ``(H, W)`` in pixels; defaults to the UNet's
            ``sample_size`` times the VAE factor (512 for SD v1.x; the UNet's own size for a
            pixel prior). Must give latents divisible
            by the UNet's total downsampling.
        negative_prompt: prompt(s) for the unconditional branch (``""`` as in SD).
        latents: optional initial latents ``(N, h, w, C)`` replacing the ones drawn from ``key``
            (e.g. to reproduce a diffusers run).

    Returns:
        Images ``(N, H, W, 3)``, float32 in ``[0, 1]``.

    Raises:
        ValueError: bad ``num_steps``, ``eta``, ``image_size`` or ``latents`` shape.
    """
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    n = len(prompts)
    negs = [negative_prompt] * n if isinstance(negative_prompt, str) else list(negative_prompt)
    if len(negs) != n:
        raise ValueError(f"got {len(negs)} negative prompts for {n} prompts")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if not 1 <= num_steps <= prior.schedule.num_train_timesteps:
        raise ValueError(f"num_steps must be in [1, {prior.schedule.num_train_timesteps}], got {num_steps}")
    h, w = _image_hw(prior, image_size)
    shape = prior.latent_shape((n, h, w, 3))
    down = 2 ** (len(prior.unet.config.block_out_channels) - 1)
    if shape[1] % down or shape[2] % down:
        raise ValueError(f"image size {h}x{w} gives latents {shape[1]}x{shape[2]}, not divisible by the "
                         f"UNet's downsampling factor {down}")
    key_init, key_steps = jax.random.split(key)
    if latents is None:
        z = jax.random.normal(key_init, shape, jnp.float32)
    else:
        z = jnp.asarray(latents, jnp.float32)
        if z.shape != shape:
            raise ValueError(f"latents have shape {z.shape}, expected {shape}")
    if _conditional(prior):
        use_cfg = float(guidance_scale) != 1.0
        ids = prior.tokenize(prompts)  # host side; the text encoder runs inside the compiled loop
        neg_ids = prior.tokenize(negs) if use_cfg else ids
    else:  # both branches of the guidance would be the same prediction: one network call
        use_cfg, ids, neg_ids = False, None, None
    return _ddim_loop(prior, z, ids, neg_ids, jnp.float32(guidance_scale), jnp.float32(eta), key_steps,
                      num_steps=int(num_steps), use_cfg=use_cfg)


def sample_unconditional(prior, num_images: int, key, *, num_steps: int = 50, eta: float = 0.0,
                         image_size: int | tuple[int, int] | None = None, latents=None):
    """Generate ``num_images`` images from an unconditional prior with DDIM.

    Same loop, arguments and determinism as :func:`sample` without the text: for a
    :class:`~diffprior.priors.pixel.PixelDiffusionPrior` (DDPM) the initial noise is drawn in
    pixel space and the images are the final :math:`(z_0 + 1) / 2`, clipped to ``[0, 1]``.

    Returns:
        Images ``(num_images, H, W, C)``, float32 in ``[0, 1]``.

    Raises:
        ValueError: ``num_images < 1``, a text-conditioned prior (use :func:`sample`), or an
            argument :func:`sample` refuses.
    """
    if int(num_images) < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    if _conditional(prior):
        raise ValueError(f"{type(prior).__name__} is text-conditioned: use diffprior.sampling.sample with prompts")
    return sample(prior, [""] * int(num_images), key, num_steps=num_steps, guidance_scale=1.0, eta=eta,
                  image_size=image_size, latents=latents)


__all__ = ["sample", "sample_unconditional"]
