"""The prior protocol: what every diffusion prior in diffprior implements.

This module is the reference for implementers. :class:`DiffusionPrior` is the one protocol;
it is implemented by :class:`~diffprior.prior.LatentDiffusionPrior` (Stable Diffusion and the
bundled CIFAR-10 model, loaded from a diffusers folder), by
:class:`~diffprior.priors.pixel.PixelDiffusionPrior` (a diffusers ``UNet2DModel`` folder:
diffusion runs on the images themselves, no autoencoder, no text) and by the tiled wrapper
:class:`~diffprior.priors.tiled.TiledPrior` (runs an inner prior on overlapping tiles of an
image larger than its native size), so the solvers, the command line and the presets need
no special cases.

Units and shapes
----------------
* **Images** are float32 ``(N, H, W, C)`` with values in ``[0, 1]`` at every boundary of
  the protocol (``C = 3`` for the priors we ship).
* **Diffusion space** (called "latents" below, written ``z``) is whatever space the forward
  and reverse diffusion run in, channel-last ``(N, h, w, c)``: for a latent prior, the
  autoencoder's posterior mean multiplied by its ``scaling_factor`` (0.18215 for SD v1.x),
  so that latents have roughly unit variance; for a pixel prior, the images mapped affinely
  to ``[-1, 1]`` (``z = 2 x - 1``). :meth:`DiffusionPrior.latent_shape` gives ``(N, h, w, c)``.
* **Time** ``t`` is the training timestep of :attr:`DiffusionPrior.schedule` (integer-valued,
  ``0 <= t < num_train_timesteps``), a scalar or one value per sample.
* **Conditioning** ``emb`` is an array ``(N or 1, L, D)`` produced by
  :meth:`DiffusionPrior.embed`. An unconditional prior (``metadata.conditioning`` False)
  returns zeros of shape ``(N, 1, 1)`` from ``embed`` and ignores ``emb`` in
  :meth:`DiffusionPrior.eps_and_x0`; solvers that optimise the prompt embedding (P2L's
  prompt tuning) have nothing to tune on such a prior and should check
  ``metadata.conditioning``.

Requirements on the object
--------------------------
* It must be a **JAX pytree** (e.g. a ``flax.struct.dataclass``): the solvers pass it
  through ``jax.jit``. Arrays (parameters, schedule arrays) are leaves; modules,
  configurations, tokenizers and :class:`~diffprior.priors.metadata.PriorMetadata` are static
  (``flax.struct.field(pytree_node=False)``), and static fields must be hashable and
  comparable so that compiled programs are reused.
* ``encode``, ``decode`` and ``eps_and_x0`` must be **pure** JAX functions of their inputs
  and the prior's leaves, differentiable with ``jax.grad`` (solvers differentiate through
  ``decode`` and ``eps_and_x0``) and usable under ``jax.jit`` / ``lax.scan``. ``embed`` may
  run host code (a tokenizer) and need not be jittable.

The solvers (:mod:`diffprior.solvers`) use only ``schedule``, ``encode``, ``decode``,
``eps_and_x0`` and ``embed`` (checked by :func:`diffprior.solvers.common.check_prior`, so
minimal stand-ins such as the linear-Gaussian prior of the test suite work);
``metadata`` and ``latent_shape`` serve the loaders, the command line and the presets
(:func:`diffprior.priors.preset_table`). ``isinstance(obj, DiffusionPrior)`` checks that
all members are present (not their signatures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from .metadata import PriorMetadata

#: The members the solvers need (a subset of :class:`DiffusionPrior`).
SOLVER_MEMBERS = ("schedule", "encode", "decode", "eps_and_x0", "embed")


@runtime_checkable
class DiffusionPrior(Protocol):
    """A diffusion prior usable by every solver of :mod:`diffprior.solvers` (see the module
    documentation for units, shapes and the pytree requirement).

    Attributes:
        schedule: the training noise schedule, a :class:`~diffprior.schedule.Schedule` (a
            pytree: ``abar(t)`` and friends), which the samplers and the Tweedie estimate use.
        metadata: a :class:`~diffprior.priors.metadata.PriorMetadata` (static, hashable):
            the prior's name, which solver preset table applies, its native image size and
            whether it is a latent and/or text-conditioned prior. Loaders read it from the
            prior folder's ``diffprior.json``.
    """

    schedule: Any
    metadata: "PriorMetadata"

    def encode(self, x):
        """Images ``(N, H, W, C)`` in ``[0, 1]`` -> diffusion-space ``z`` of shape
        :meth:`latent_shape` ``(x.shape)``: scaled latents (the posterior mean times the
        scaling factor) for a latent prior, ``2 x - 1`` for a pixel prior. Pure, float32."""
        ...

    def decode(self, z):
        """Diffusion-space ``z`` ``(N, h, w, c)`` -> images ``(N, H, W, C)`` nominally in
        ``[0, 1]`` (values may overshoot; callers clip when they need to). The inverse of
        :meth:`encode` up to the autoencoder's error. Pure and differentiable in ``z``."""
        ...

    def eps_and_x0(self, z, t, emb):
        """Noise prediction and Tweedie estimate from one network evaluation.

        Args:
            z: noisy diffusion-space sample ``z_t``, ``(N, h, w, c)``.
            t: timestep(s), a scalar or ``(N,)``, in the units of :attr:`schedule`.
            emb: conditioning ``(N or 1, L, D)`` from :meth:`embed` (ignored by an
                unconditional prior).

        Returns:
            ``(eps, z0)``: the noise estimate :math:`\\epsilon_\\theta(z_t, t, c)` (a
            v-prediction network converts to it) and Tweedie's estimate
            :math:`\\hat z_0 = (z_t - \\sqrt{1 - \\bar\\alpha_t}\\,\\epsilon) / \\sqrt{\\bar\\alpha_t}`,
            both shaped like ``z``, float32. Pure and differentiable in ``z`` and ``emb``.
        """
        ...

    def embed(self, prompts):
        """Text prompts (a string or a sequence of ``N`` strings) -> conditioning ``(N, L, D)``
        float32 (``L = 77, D = 768`` for SD v1.x). An unconditional prior returns zeros of
        shape ``(N, 1, 1)``. May run host code (a tokenizer)."""
        ...

    def latent_shape(self, image_shape: Sequence[int]) -> tuple:
        """The diffusion-space shape ``(N, h, w, c)`` for an image shape ``(N, H, W, C)``;
        raises ``ValueError`` for a size the prior cannot handle (e.g. not divisible by the
        autoencoder's downsampling factor). For a pixel prior, ``image_shape`` itself."""
        ...


__all__ = ["DiffusionPrior", "SOLVER_MEMBERS"]
