"""KL-regularised autoencoder of Stable Diffusion (diffusers ``AutoencoderKL``), channel-last.

The encoder maps an image in ``[-1, 1]`` to the moments of a diagonal Gaussian posterior
:math:`q(z|x) = \\mathcal{N}(\\mu(x), \\mathrm{diag}\\,\\sigma^2(x))`; the decoder maps a latent back
to ``[-1, 1]``. Scaling by ``scaling_factor`` happens in :class:`~diffprior.prior.LatentDiffusionPrior`,
not here, exactly as diffusers leaves it to the pipeline.
"""

from __future__ import annotations

import jax.numpy as jnp
import flax.linen as nn

from .config import VAEConfig
from .layers import Downsample2D, ResnetBlock2D, SpatialSelfAttention, Upsample2D, conv, optional_remat, silu

_VAE_EPS = 1e-6


class MidBlock(nn.Module):
    """``UNetMidBlock2D`` without time embedding: resnet, single-head attention, resnet."""

    channels: int
    groups: int
    add_attention: bool = True
    remat: bool = False

    @nn.compact
    def __call__(self, x):
        res_cls = optional_remat(ResnetBlock2D, self.remat)
        x = res_cls(self.channels, self.groups, _VAE_EPS, name="resnets_0")(x)
        if self.add_attention:
            x = SpatialSelfAttention(self.channels, self.groups, _VAE_EPS, name="attentions_0")(x)
        return res_cls(self.channels, self.groups, _VAE_EPS, name="resnets_1")(x)


class VAEBlock(nn.Module):
    """``DownEncoderBlock2D`` (``resample="down"``: resnets, then an asymmetric-padding
    stride-2 convolution) or ``UpDecoderBlock2D`` (``resample="up"``: resnets, then nearest 2x
    upsampling + convolution); ``None`` for the last block, which keeps the resolution."""

    out_channels: int
    num_layers: int
    groups: int
    resample: str | None
    remat: bool = False

    @nn.compact
    def __call__(self, x):
        res_cls = optional_remat(ResnetBlock2D, self.remat)
        for j in range(self.num_layers):
            x = res_cls(self.out_channels, self.groups, _VAE_EPS, name=f"resnets_{j}")(x)
        if self.resample == "down":
            x = Downsample2D(self.out_channels, padding=0, name="downsamplers_0")(x)
        elif self.resample == "up":
            x = Upsample2D(self.out_channels, name="upsamplers_0")(x)
        return x


class Encoder(nn.Module):
    """Image ``(N, H, W, 3)`` in ``[-1, 1]`` -> moments ``(N, H/f, W/f, 2*latent)``."""

    config: VAEConfig
    remat: bool = False

    @nn.compact
    def __call__(self, x):
        c = self.config
        ch = c.block_out_channels
        x = conv(ch[0], name="conv_in")(x)
        for i, out in enumerate(ch):
            x = VAEBlock(out, c.layers_per_block, c.norm_num_groups, "down" if i < len(ch) - 1 else None,
                         self.remat, name=f"down_blocks_{i}")(x)
        x = MidBlock(ch[-1], c.norm_num_groups, c.mid_block_add_attention, self.remat, name="mid_block")(x)
        x = silu(nn.GroupNorm(c.norm_num_groups, epsilon=_VAE_EPS, name="conv_norm_out")(x))
        return conv(2 * c.latent_channels, name="conv_out")(x)


class Decoder(nn.Module):
    """Latent ``(N, h, w, latent)`` -> image ``(N, h*f, w*f, 3)`` in about ``[-1, 1]``."""

    config: VAEConfig
    remat: bool = False

    @nn.compact
    def __call__(self, z):
        c = self.config
        rev = list(reversed(c.block_out_channels))
        x = conv(rev[0], name="conv_in")(z)
        x = MidBlock(rev[0], c.norm_num_groups, c.mid_block_add_attention, self.remat, name="mid_block")(x)
        for i, out in enumerate(rev):
            x = VAEBlock(out, c.layers_per_block + 1, c.norm_num_groups, "up" if i < len(rev) - 1 else None,
                         self.remat, name=f"up_blocks_{i}")(x)
        x = silu(nn.GroupNorm(c.norm_num_groups, epsilon=_VAE_EPS, name="conv_norm_out")(x))
        return conv(c.out_channels, name="conv_out")(x)


class AutoencoderKL(nn.Module):
    """SD's VAE. ``encode`` returns ``(mean, logvar)``; ``decode`` returns the image.

    The log-variance is clipped to ``[-30, 20]`` as in diffusers'
    ``DiagonalGaussianDistribution``.
    """

    config: VAEConfig
    remat: bool = False

    def setup(self):
        c = self.config
        self.encoder = Encoder(c, self.remat)
        self.decoder = Decoder(c, self.remat)
        if c.use_quant_conv:
            self.quant_conv = conv(2 * c.latent_channels, kernel=1, padding=0)
        if c.use_post_quant_conv:
            self.post_quant_conv = conv(c.latent_channels, kernel=1, padding=0)

    def encode(self, x):
        """Return posterior ``(mean, logvar)``, each ``(N, h, w, latent_channels)``."""
        h = self.encoder(x)
        if self.config.use_quant_conv:
            h = self.quant_conv(h)
        mean, logvar = jnp.split(h, 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def decode(self, z):
        """Return the decoded image for (unscaled) latents ``z``."""
        if self.config.use_post_quant_conv:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    def __call__(self, x):
        mean, _ = self.encode(x)
        return self.decode(mean)
