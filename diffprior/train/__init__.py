"""Training of the small bundled latent diffusion prior (autoencoder, then UNet + text encoder).

Stages, each resumable from its run folder:

1. :func:`diffprior.train.vae.run_vae` -- the KL autoencoder (``diffprior train vae``);
2. :func:`diffprior.train.ldm.run_ldm` -- UNet and text encoder on the latents (``diffprior train ldm``);
3. :func:`diffprior.train.export.export_prior` -- the diffusers-layout folder (``diffprior train export``).

A pixel-space DDPM trains on the same data in one stage, with the same loop
(:mod:`diffprior.train.common`): :func:`diffprior.train.pixel.run_pixel` (``diffprior train pixel``),
exported by :func:`diffprior.train.export.export_pixel_prior` (``diffprior train export-pixel``).
"""
