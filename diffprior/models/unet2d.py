"""The unconditional pixel-space UNet of the DDPM checkpoints (diffusers ``UNet2DModel``), channel-last.

The network predicts :math:`\\epsilon_\\theta(x_t, t)` (or :math:`v`) from a noisy image
``(N, H, W, C)`` and integer or float timesteps ``(N,)``; it takes no conditioning. It is the
architecture of Ho et al.'s DDPM :cite:`ho2020ddpm` as ported to diffusers
(``google/ddpm-cifar10-32``, ``google/ddpm-celebahq-256``, ``google/ddpm-church-256``, ...):

.. math::
    \\epsilon_\\theta(x_t, t) = \\mathrm{conv_{out}}\\Bigl(\\sigma\\bigl(\\mathrm{GN}\\bigl(
        U\\bigl(M(D(\\mathrm{conv_{in}}(x_t), e), e), \\text{skips}, e\\bigr)\\bigr)\\bigr)\\Bigr),
    \\qquad e = \\mathrm{MLP}(\\mathrm{PE}(t)),

where :math:`D`, :math:`M` and :math:`U` are the down, mid and up blocks, :math:`\\mathrm{PE}`
is the sinusoidal position encoding (:func:`~diffprior.models.layers.timestep_embedding`),
every residual block adds a projection of :math:`e`, the ``Attn*`` blocks follow each
residual block with a self-attention over the pixels
(:class:`~diffprior.models.layers.SpatialSelfAttention`), and each up block concatenates the
matching down-block activations (one skip per layer).

Module names follow diffusers' PyTorch module tree, so
:func:`~diffprior.models.convert.state_dict_to_params` maps a ``diffusion_pytorch_model``
state dict onto the parameters by renaming alone; :func:`load_unet2d` reads a folder.
Input heights and widths must be multiples of :attr:`UNet2DConfig.size_multiple
<diffprior.models.UNet2DConfig.size_multiple>` (diffusers' model has the same limit).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import flax.linen as nn

from .config import UNet2DConfig, UnsupportedConfigError
from .layers import (
    Downsample2D, ResnetBlock2D, SpatialSelfAttention, Upsample2D, conv, optional_remat, silu,
    timestep_embedding,
)
from .unet import TimestepEmbedding

#: The weight file of a diffusers model folder.
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def _attention(cfg: UNet2DConfig, channels: int, name: str, groups: int | None = None, scale: float = 1.0):
    heads, dim_head = cfg.heads(channels)
    return SpatialSelfAttention(channels, groups or cfg.norm_num_groups, cfg.norm_eps, heads, dim_head, scale,
                                name=name)


class DownBlock2D(nn.Module):
    """``DownBlock2D`` (``attention=False``) or ``AttnDownBlock2D``; returns the skips too.

    ``layers_per_block`` residual blocks (each followed by a self-attention in the ``Attn``
    variant), then, except in the last block, a stride-2 convolution; every layer's output is
    a skip.
    """

    cfg: UNet2DConfig
    out_channels: int
    attention: bool
    add_downsample: bool
    remat: bool = False

    @nn.compact
    def __call__(self, x, temb):
        c = self.cfg
        res_cls = optional_remat(ResnetBlock2D, self.remat)
        skips = []
        for j in range(c.layers_per_block):
            x = res_cls(self.out_channels, c.norm_num_groups, c.norm_eps, 1.0, name=f"resnets_{j}")(x, temb)
            if self.attention:
                x = _attention(c, self.out_channels, f"attentions_{j}")(x)
            skips.append(x)
        if self.add_downsample:
            x = Downsample2D(self.out_channels, c.downsample_padding, name="downsamplers_0")(x)
            skips.append(x)
        return x, skips


class UpBlock2D(nn.Module):
    """``UpBlock2D`` (``attention=False``) or ``AttnUpBlock2D``: ``layers_per_block + 1``
    residual blocks, each on the running features concatenated (channels) with the last
    remaining skip, optionally followed by self-attention; then, except in the last block,
    2x nearest-neighbour upsampling and a convolution."""

    cfg: UNet2DConfig
    out_channels: int
    attention: bool
    add_upsample: bool
    remat: bool = False

    @nn.compact
    def __call__(self, x, skips, temb):
        c = self.cfg
        res_cls = optional_remat(ResnetBlock2D, self.remat)
        skips = list(skips)
        for j in range(c.layers_per_block + 1):
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = res_cls(self.out_channels, c.norm_num_groups, c.norm_eps, 1.0, name=f"resnets_{j}")(x, temb)
            if self.attention:
                x = _attention(c, self.out_channels, f"attentions_{j}")(x)
        if self.add_upsample:
            x = Upsample2D(self.out_channels, name="upsamplers_0")(x)
        return x


class UNetMidBlock2D(nn.Module):
    """``UNetMidBlock2D``: residual block, self-attention (unless ``add_attention`` is off),
    residual block; all three divide their output by ``mid_block_scale_factor``."""

    cfg: UNet2DConfig
    remat: bool = False

    @nn.compact
    def __call__(self, x, temb):
        c = self.cfg
        ch = c.block_out_channels[-1]
        s = c.mid_block_scale_factor
        res_cls = optional_remat(ResnetBlock2D, self.remat)
        x = res_cls(ch, c.norm_num_groups, c.norm_eps, s, name="resnets_0")(x, temb)
        if c.add_attention:
            x = _attention(c, ch, "attentions_0", c.attn_norm_num_groups, s)(x)
        return res_cls(ch, c.norm_num_groups, c.norm_eps, s, name="resnets_1")(x, temb)


class UNet2DModel(nn.Module):
    """diffusers' unconditional ``UNet2DModel`` (the DDPM pixel-space denoiser).

    Attributes:
        config: the :class:`~diffprior.models.UNet2DConfig`.
        remat: recompute the residual blocks' activations in the backward pass
            (``jax.checkpoint``), trading compute for memory under ``jax.grad``.
    """

    config: UNet2DConfig
    remat: bool = False

    @nn.compact
    def __call__(self, sample, timesteps):
        """Return the network output ``(N, H, W, out_channels)`` for ``sample`` ``(N, H, W, in_channels)``.

        Args:
            sample: noisy images (in the model's range, ``[-1, 1]`` for DDPM), channel-last.
            timesteps: a scalar or ``(N,)`` timesteps (integers or floats).

        Raises:
            ValueError: ``sample`` is not 4-D with ``in_channels`` channels, or its height or
                width is not a multiple of ``config.size_multiple``.
        """
        c = self.config
        if sample.ndim != 4 or sample.shape[-1] != c.in_channels:
            raise ValueError(f"UNet2DModel expects (N, H, W, {c.in_channels}) channel-last input, "
                             f"got shape {tuple(sample.shape)}")
        m = c.size_multiple
        if sample.shape[1] % m or sample.shape[2] % m:
            raise ValueError(f"UNet2DModel with {c.num_levels} levels needs heights and widths that are "
                             f"multiples of {m}, got {sample.shape[1]} x {sample.shape[2]}")
        if c.center_input_sample:
            sample = 2 * sample - 1.0
        timesteps = jnp.broadcast_to(jnp.asarray(timesteps), (sample.shape[0],))
        t = timestep_embedding(timesteps, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift)
        temb = TimestepEmbedding(c.time_embedding_dim or 4 * c.block_out_channels[0],
                                 name="time_embedding")(t.astype(sample.dtype))
        x = conv(c.block_out_channels[0], name="conv_in")(sample)
        skips = [x]
        n = c.num_levels
        for i, kind in enumerate(c.down_block_types):
            x, s = DownBlock2D(c, c.block_out_channels[i], kind == "AttnDownBlock2D", i < n - 1, self.remat,
                               name=f"down_blocks_{i}")(x, temb)
            skips.extend(s)
        if c.mid_block_type is not None:
            x = UNetMidBlock2D(c, self.remat, name="mid_block")(x, temb)
        rev = list(reversed(c.block_out_channels))
        k = c.layers_per_block + 1
        for i, kind in enumerate(c.up_block_types):
            block_skips, skips = tuple(skips[-k:]), skips[:-k]
            x = UpBlock2D(c, rev[i], kind == "AttnUpBlock2D", i < n - 1, self.remat,
                          name=f"up_blocks_{i}")(x, block_skips, temb)
        x = nn.GroupNorm(c.norm_num_groups, epsilon=c.norm_eps, name="conv_norm_out")(x)
        return conv(c.out_channels, name="conv_out")(silu(x))


def param_shapes(model: UNet2DModel):
    """The parameter tree of ``model`` as ``jax.ShapeDtypeStruct`` leaves (``jax.eval_shape``:
    nothing is computed or allocated)."""
    c = model.config
    s = c.size_multiple
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, s, s, c.in_channels)),
                                             jnp.zeros((1,))))["params"]


def _model_folder_problems(folder: Path) -> list[str]:
    problems = []
    if not (folder / "config.json").is_file():
        problems.append(f"missing {folder / 'config.json'}")
    if not list(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.ckpt"))
        extra = (f" (found only PyTorch pickles: {', '.join(pickles)}; they are never unpickled: convert them "
                 "to safetensors, see the docs page on loading Stable Diffusion)") if pickles else ""
        problems.append(f"missing {folder / WEIGHTS_NAME}{extra}")
    return problems


def load_unet2d(folder: str | os.PathLike, dtype=jnp.float32, remat: bool = False):
    """Read a diffusers ``UNet2DModel`` folder (``config.json`` and
    ``diffusion_pytorch_model.safetensors``) into our module and its parameters.

    Weights are read with ``safetensors.numpy`` (no torch); PyTorch ``.bin`` pickles are
    refused, never unpickled. Attention tensors under the names of old diffusers releases
    (``query``, ``key``, ``value``, ``proj_attn``) load too.

    Args:
        folder: the model folder (``<pipeline>/unet`` or a bare model folder).
        dtype: parameter dtype.
        remat: activation checkpointing in the residual blocks.

    Returns:
        ``(model, params)``: the :class:`UNet2DModel` and its parameter tree.

    Raises:
        PriorLoadError: the folder, ``config.json`` or the weights file is missing (every
            missing file is named), or a file is unreadable.
        UnsupportedConfigError: the configuration selects an unimplemented feature.
        WeightLoadError: tensors do not match the configuration (all mismatches listed).
    """
    from ..prior import PriorLoadError, _read_json, _read_state
    from .convert import state_dict_to_params

    folder = Path(folder)
    if not folder.is_dir():
        raise PriorLoadError(f"{folder} is not a directory")
    problems = _model_folder_problems(folder)
    if problems:
        raise PriorLoadError(f"{folder} is not a complete diffusers UNet2DModel folder: " + "; ".join(problems))
    raw = _read_json(folder / "config.json")
    name = raw.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise UnsupportedConfigError(f"{folder / 'config.json'}: _class_name is {name!r}, not 'UNet2DModel'")
    model = UNet2DModel(UNet2DConfig.from_dict(raw), remat)
    params = state_dict_to_params(_read_state(folder), param_shapes(model), str(folder))
    return model, jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)


__all__ = ["UNet2DModel", "DownBlock2D", "UpBlock2D", "UNetMidBlock2D", "load_unet2d",
           "param_shapes", "WEIGHTS_NAME"]
