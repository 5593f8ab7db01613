"""Text-conditioned UNet of Stable Diffusion (diffusers ``UNet2DConditionModel``), channel-last.

The network predicts :math:`\\epsilon_\\theta(z_t, t, c)` (or :math:`v`) from a noisy latent
``(N, h, w, C)``, integer or float timesteps ``(N,)`` and a text embedding ``(N, L, D)`` used
as keys/values of every cross-attention layer.
"""

from __future__ import annotations

import jax.numpy as jnp
import flax.linen as nn

from .config import UNetConfig
from .layers import (
    Downsample2D, ResnetBlock2D, Transformer2DModel, Upsample2D, conv, optional_remat, silu,
    timestep_embedding,
)


def _depth(spec, j: int) -> int:
    """Transformer depth of layer ``j``: ``spec`` is one int per block or a tuple per layer."""
    return spec[j] if isinstance(spec, tuple) else spec


class TimestepEmbedding(nn.Module):
    """Two-layer MLP on the sinusoidal features (``linear_1``, SiLU, ``linear_2``)."""

    dim: int

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.dim, name="linear_1")(x)
        return nn.Dense(self.dim, name="linear_2")(silu(x))


class DownBlock(nn.Module):
    """``CrossAttnDownBlock2D`` (``cross=True``) or ``DownBlock2D``; returns skips too."""

    cfg: UNetConfig
    index: int
    out_channels: int
    cross: bool
    add_downsample: bool
    remat: bool = False

    @nn.compact
    def __call__(self, x, temb, context):
        c = self.cfg
        i = self.index
        heads = c.num_attention_heads[i]
        res_cls = optional_remat(ResnetBlock2D, self.remat)
        skips = []
        for j in range(c.layers_per_block[i]):
            # diffusers passes ``resnet_out_scale_factor`` only to the Simple/Resnet* block
            # types, never to (CrossAttn)DownBlock2D / (CrossAttn)UpBlock2D: their scale is 1.
            x = res_cls(self.out_channels, c.norm_num_groups, c.norm_eps, 1.0, name=f"resnets_{j}")(x, temb)
            if self.cross:
                x = Transformer2DModel(
                    heads, self.out_channels // heads, _depth(c.transformer_layers_per_block[i], j),
                    c.norm_num_groups, c.use_linear_projection, c.only_cross_attention[i],
                    c.upcast_attention, self.remat, name=f"attentions_{j}",
                )(x, context)
            skips.append(x)
        if self.add_downsample:
            x = Downsample2D(self.out_channels, c.downsample_padding, name="downsamplers_0")(x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """``CrossAttnUpBlock2D`` (``cross=True``) or ``UpBlock2D``; consumes skips."""

    cfg: UNetConfig
    index: int  # index into the reversed per-block lists
    out_channels: int
    cross: bool
    add_upsample: bool
    remat: bool = False

    @nn.compact
    def __call__(self, x, skips, temb, context):
        c = self.cfg
        n = len(c.block_out_channels)
        i = n - 1 - self.index  # the matching down-block index
        heads = c.num_attention_heads[i]
        depths = (c.transformer_layers_per_block[i] if c.reverse_transformer_layers_per_block is None
                  else c.reverse_transformer_layers_per_block[self.index])
        res_cls = optional_remat(ResnetBlock2D, self.remat)
        skips = list(skips)
        for j in range(c.layers_per_block[i] + 1):
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            # diffusers passes ``resnet_out_scale_factor`` only to the Simple/Resnet* block
            # types, never to (CrossAttn)DownBlock2D / (CrossAttn)UpBlock2D: their scale is 1.
            x = res_cls(self.out_channels, c.norm_num_groups, c.norm_eps, 1.0, name=f"resnets_{j}")(x, temb)
            if self.cross:
                x = Transformer2DModel(
                    heads, self.out_channels // heads, _depth(depths, j),
                    c.norm_num_groups, c.use_linear_projection, c.only_cross_attention[i],
                    c.upcast_attention, self.remat, name=f"attentions_{j}",
                )(x, context)
        if self.add_upsample:
            x = Upsample2D(self.out_channels, name="upsamplers_0")(x)
        return x


class MidBlockCrossAttn(nn.Module):
    """``UNetMidBlock2DCrossAttn``: resnet, spatial transformer(s), resnet."""

    cfg: UNetConfig
    remat: bool = False

    @nn.compact
    def __call__(self, x, temb, context):
        c = self.cfg
        ch = c.block_out_channels[-1]
        heads = c.num_attention_heads[-1]
        res_cls = optional_remat(ResnetBlock2D, self.remat)
        x = res_cls(ch, c.norm_num_groups, c.norm_eps, c.mid_block_scale_factor, name="resnets_0")(x, temb)
        x = Transformer2DModel(heads, ch // heads, _depth(c.transformer_layers_per_block[-1], 0),
                               c.norm_num_groups, c.use_linear_projection, False, c.upcast_attention,
                               self.remat, name="attentions_0")(x, context)
        return res_cls(ch, c.norm_num_groups, c.norm_eps, c.mid_block_scale_factor, name="resnets_1")(x, temb)


class UNet2DConditionModel(nn.Module):
    """Stable Diffusion's conditional UNet.

    Attributes:
        config: the :class:`UNetConfig`.
        remat: recompute block activations in the backward pass (``jax.checkpoint``), trading
            compute for memory so that full-size P2L gradients fit on a 40 GB accelerator.
    """

    config: UNetConfig
    remat: bool = False

    @nn.compact
    def __call__(self, sample, timesteps, encoder_hidden_states):
        """Return the network output, same shape as ``sample`` ``(N, h, w, C)``."""
        c = self.config
        if c.center_input_sample:
            sample = 2 * sample - 1.0
        timesteps = jnp.broadcast_to(jnp.asarray(timesteps), (sample.shape[0],))
        t = timestep_embedding(timesteps, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
        temb = TimestepEmbedding(c.time_embedding_dim or 4 * c.block_out_channels[0],
                                 name="time_embedding")(t.astype(sample.dtype))
        context = encoder_hidden_states
        x = conv(c.block_out_channels[0], kernel=c.conv_in_kernel, padding=(c.conv_in_kernel - 1) // 2,
                 name="conv_in")(sample)
        skips = [x]
        n = len(c.block_out_channels)
        for i, kind in enumerate(c.down_block_types):
            x, s = DownBlock(c, i, c.block_out_channels[i], kind == "CrossAttnDownBlock2D", i < n - 1,
                             self.remat, name=f"down_blocks_{i}")(x, temb, context)
            skips.extend(s)
        if c.mid_block_type is not None:
            x = MidBlockCrossAttn(c, self.remat, name="mid_block")(x, temb, context)
        rev = list(reversed(c.block_out_channels))
        for i, kind in enumerate(c.up_block_types):
            k = c.layers_per_block[n - 1 - i] + 1
            block_skips, skips = tuple(skips[-k:]), skips[:-k]
            x = UpBlock(c, i, rev[i], kind == "CrossAttnUpBlock2D", i < n - 1, self.remat,
                        name=f"up_blocks_{i}")(x, block_skips, temb, context)
        x = nn.GroupNorm(c.norm_num_groups, epsilon=c.norm_eps, name="conv_norm_out")(x)
        x = silu(x)
        return conv(c.out_channels, kernel=c.conv_out_kernel, padding=(c.conv_out_kernel - 1) // 2,
                    name="conv_out")(x)
