"""Building blocks shared by the UNet and the VAE (channel-last, ``flax.linen``).

Module and attribute names follow diffusers' PyTorch module tree (``resnets_0``,
``to_out_0``, ...) so that :mod:`diffprior.models.convert` can map a diffusers state dict
onto our parameters by renaming alone.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import flax.linen as nn
from jax import lax

from .fastconv import conv_general_dilated
from .upsample import UpsampleConv


def silu(x):
    """SiLU / swish activation."""
    return x * jax.nn.sigmoid(x)


def conv(features, kernel=3, stride=1, padding=1, name=None):
    """Return an ``nn.Conv`` with explicit PyTorch-style padding.

    Its input gradient is :func:`diffprior.models.fastconv.conv2d`'s (fast inside ``lax.scan``
    on CPU; outputs unchanged).
    """
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=padding, name=name,
                   conv_general_dilated=conv_general_dilated)


class ResnetBlock2D(nn.Module):
    """Residual block: GN-SiLU-conv, (+ time embedding), GN-SiLU-conv, skip.

    .. math::
        h = \\mathrm{conv}_2(\\sigma(\\mathrm{GN}_2(\\mathrm{conv}_1(\\sigma(\\mathrm{GN}_1(x)))
            + W_t\\,\\sigma(t_{emb})))), \\quad y = (\\mathrm{skip}(x) + h) / s
    """

    out_channels: int
    groups: int = 32
    eps: float = 1e-5
    output_scale_factor: float = 1.0

    @nn.compact
    def __call__(self, x, temb=None):
        h = nn.GroupNorm(self.groups, epsilon=self.eps, name="norm1")(x)
        h = silu(h)
        h = conv(self.out_channels, name="conv1")(h)
        if temb is not None:
            t = nn.Dense(self.out_channels, name="time_emb_proj")(silu(temb))
            h = h + t[:, None, None, :]
        h = nn.GroupNorm(self.groups, epsilon=self.eps, name="norm2")(h)
        h = silu(h)
        h = conv(self.out_channels, name="conv2")(h)
        if x.shape[-1] != self.out_channels:
            x = conv(self.out_channels, kernel=1, padding=0, name="conv_shortcut")(x)
        return (x + h) / self.output_scale_factor


class Downsample2D(nn.Module):
    """Stride-2 3x3 convolution; ``padding=0`` pads (0, 1) bottom/right as SD's VAE does."""

    out_channels: int
    padding: int = 1

    @nn.compact
    def __call__(self, x):
        if self.padding == 0:
            x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
            return conv(self.out_channels, stride=2, padding=0, name="conv")(x)
        return conv(self.out_channels, stride=2, padding=self.padding, name="conv")(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution (computed on the
    low-resolution map, :mod:`diffprior.models.upsample`)."""

    out_channels: int

    @nn.compact
    def __call__(self, x):
        return UpsampleConv(self.out_channels, name="conv")(x)


def _attend(q, k, v, scale: float, mask=None):
    """Softmax attention on head-major ``(N, h, L, d)`` tensors (probabilities in float32),
    with an optional additive mask on the scores."""
    scores = jnp.einsum("nhqd,nhkd->nhqk", q, k) * scale
    if mask is not None:
        scores = scores + mask
    probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("nhqk,nhkd->nhqd", probs, v), probs


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def attend(q, k, v, scale: float):
    """:math:`\\mathrm{softmax}(s\\,QK^T)\\,V` per head, with a hand-written gradient.

    With :math:`P` the probabilities and :math:`G` the output's cotangent,

    .. math::
        \\nabla_V = P^T G,\\quad \\nabla_S = P \\odot (G V^T - \\mathrm{rowsum}(P \\odot G V^T)),
        \\quad \\nabla_Q = s\\,\\nabla_S K,\\quad \\nabla_K = s\\,\\nabla_S^T Q.

    The two transposed products are written as :math:`(G^T P)^T` and :math:`(Q^T \\nabla_S)^T`,
    so that the large :math:`L_q \\times L_k` matrices are read in their own layout and only the
    small :math:`L \\times d` results are transposed; JAX's own derivative transposes
    :math:`P` and :math:`\\nabla_S` (two copies of every score matrix per attention layer: 1.2x
    slower for the UNet's 1024-token self-attention on CPU, ``benchmarks/sd_layers.py``).
    """
    return _attend(q, k, v, scale)[0]


def _attend_fwd(q, k, v, scale):
    out, probs = _attend(q, k, v, scale)
    return out, (q, k, v, probs)


def _attend_bwd(scale, res, g):
    q, k, v, probs = res
    p = probs.astype(jnp.float32)
    dp = jnp.einsum("nhqd,nhkd->nhqk", g, v).astype(jnp.float32)
    ds = (p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True)) * scale).astype(q.dtype)
    batch_heads = ((0, 1), (0, 1))

    def transposed_product(a, b):  # a^T b over the query axis, then swapped back: (N, h, L_k, d)
        return jnp.swapaxes(lax.dot_general(a, b, (((2,), (2,)), batch_heads)), 2, 3)

    dv = transposed_product(g, probs).astype(v.dtype)
    dk = transposed_product(q, ds).astype(k.dtype)
    dq = jnp.einsum("nhqk,nhkd->nhqd", ds, k).astype(q.dtype)
    return dq, dk, dv


attend.defvjp(_attend_fwd, _attend_bwd)


def scaled_dot_product(q, k, v, heads: int, mask=None, upcast: bool = False):
    """Multi-head attention core on ``(N, L, heads*d)`` tensors.

    .. math:: \\mathrm{softmax}(QK^T/\\sqrt{d} + M)\\,V

    Without a mask this is :func:`attend` (its own gradient); with one (the text encoder's
    causal mask) JAX differentiates the einsums.

    Args:
        q, k, v: queries ``(N, Lq, heads*d)``, keys/values ``(N, Lk, heads*d)``.
        heads: number of heads.
        mask: optional additive mask broadcastable to ``(N, heads, Lq, Lk)``.
        upcast: compute the scores and softmax in float32 (SD 2.x ``upcast_attention``).
    """
    n, lq, inner = q.shape
    d = inner // heads
    dtype = q.dtype
    if upcast:
        q, k = q.astype(jnp.float32), k.astype(jnp.float32)

    def split(t):
        return t.reshape(n, t.shape[1], heads, d).transpose(0, 2, 1, 3)

    scale = 1.0 / math.sqrt(d)
    if mask is None:
        out = attend(split(q), split(k), split(v), scale)
    else:
        out = _attend(split(q), split(k), split(v), scale, mask)[0]
    return out.transpose(0, 2, 1, 3).reshape(n, lq, inner).astype(dtype)


class Attention(nn.Module):
    """diffusers ``Attention`` (``to_q``, ``to_k``, ``to_v``, ``to_out_0``)."""

    heads: int
    dim_head: int
    query_dim: int
    qkv_bias: bool = False
    upcast: bool = False

    @nn.compact
    def __call__(self, x, context=None):
        inner = self.heads * self.dim_head
        context = x if context is None else context
        q = nn.Dense(inner, use_bias=self.qkv_bias, name="to_q")(x)
        k = nn.Dense(inner, use_bias=self.qkv_bias, name="to_k")(context)
        v = nn.Dense(inner, use_bias=self.qkv_bias, name="to_v")(context)
        out = scaled_dot_product(q, k, v, self.heads, upcast=self.upcast)
        return nn.Dense(self.query_dim, name="to_out_0")(out)


class GEGLU(nn.Module):
    """Gated GELU projection: ``a * gelu(b)`` with ``[a, b] = W x``."""

    dim_out: int

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(2 * self.dim_out, name="proj")(x)
        a, gate = jnp.split(h, 2, axis=-1)
        return a * jax.nn.gelu(gate, approximate=False)


class FeedForward(nn.Module):
    """GEGLU feed-forward of width ``4 * dim`` (diffusers ``FeedForward``)."""

    dim: int
    mult: int = 4

    @nn.compact
    def __call__(self, x):
        h = GEGLU(self.dim * self.mult, name="net_0")(x)
        return nn.Dense(self.dim, name="net_2")(h)


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention and GEGLU MLP, each pre-LayerNorm and residual."""

    dim: int
    heads: int
    dim_head: int
    only_cross_attention: bool = False
    upcast: bool = False

    @nn.compact
    def __call__(self, x, context):
        h = nn.LayerNorm(epsilon=1e-5, name="norm1")(x)
        attn1 = Attention(self.heads, self.dim_head, self.dim, upcast=self.upcast, name="attn1")
        x = x + attn1(h, context if self.only_cross_attention else None)
        h = nn.LayerNorm(epsilon=1e-5, name="norm2")(x)
        x = x + Attention(self.heads, self.dim_head, self.dim, upcast=self.upcast, name="attn2")(h, context)
        h = nn.LayerNorm(epsilon=1e-5, name="norm3")(x)
        return x + FeedForward(self.dim, name="ff")(h)


class Transformer2DModel(nn.Module):
    """Spatial transformer: GN, project in, transformer blocks over ``H*W`` tokens, project out.

    ``use_linear_projection`` selects a Dense (SD 2.x) rather than a 1x1 convolution (SD 1.x)
    for ``proj_in`` / ``proj_out``; both act per pixel, so only the parameter layout differs.
    """

    heads: int
    dim_head: int
    num_layers: int = 1
    groups: int = 32
    use_linear_projection: bool = False
    only_cross_attention: bool = False
    upcast: bool = False
    remat: bool = False

    @nn.compact
    def __call__(self, x, context):
        n, hh, ww, c = x.shape
        inner = self.heads * self.dim_head
        residual = x
        h = nn.GroupNorm(self.groups, epsilon=1e-6, name="norm")(x)
        if self.use_linear_projection:
            h = nn.Dense(inner, name="proj_in")(h.reshape(n, hh * ww, c))
        else:
            h = conv(inner, kernel=1, padding=0, name="proj_in")(h).reshape(n, hh * ww, inner)
        block_cls = nn.remat(BasicTransformerBlock) if self.remat else BasicTransformerBlock
        for i in range(self.num_layers):
            h = block_cls(
                inner, self.heads, self.dim_head, self.only_cross_attention, self.upcast,
                name=f"transformer_blocks_{i}",
            )(h, context)
        if self.use_linear_projection:
            h = nn.Dense(c, name="proj_out")(h).reshape(n, hh, ww, c)
        else:
            h = conv(c, kernel=1, padding=0, name="proj_out")(h.reshape(n, hh, ww, inner))
        return h + residual


class SpatialSelfAttention(nn.Module):
    """Self-attention over the pixels of a feature map: GroupNorm, q/k/v, residual.

    diffusers' ``Attention`` as built by the VAE mid block (one head) and by the
    ``UNet2DModel`` blocks (``AttnDownBlock2D``, ``AttnUpBlock2D``, ``UNetMidBlock2D``):

    .. math:: y = \\bigl(x + W_o\\,\\mathrm{MHA}(W_q h, W_k h, W_v h)\\bigr) / s,
              \\quad h = \\mathrm{GN}(x)

    Attributes:
        channels: the feature map's channels (also the output's).
        groups, eps: the GroupNorm's groups and epsilon.
        heads: attention heads.
        dim_head: channels per head (``None``: ``channels // heads``); the projections map
            ``channels`` to ``heads * dim_head`` and back.
        rescale_output_factor: :math:`s`, dividing the residual sum (diffusers'
            ``rescale_output_factor``; the mid block's ``output_scale_factor``).
    """

    channels: int
    groups: int = 32
    eps: float = 1e-6
    heads: int = 1
    dim_head: int | None = None
    rescale_output_factor: float = 1.0

    @nn.compact
    def __call__(self, x):
        n, hh, ww, c = x.shape
        inner = self.heads * (self.dim_head if self.dim_head is not None else c // self.heads)
        h = nn.GroupNorm(self.groups, epsilon=self.eps, name="group_norm")(x).reshape(n, hh * ww, c)
        q = nn.Dense(inner, name="to_q")(h)
        k = nn.Dense(inner, name="to_k")(h)
        v = nn.Dense(inner, name="to_v")(h)
        out = scaled_dot_product(q, k, v, heads=self.heads, upcast=True)
        out = nn.Dense(c, name="to_out_0")(out).reshape(n, hh, ww, c)
        out = out + x
        return out if self.rescale_output_factor == 1.0 else out / self.rescale_output_factor


def timestep_embedding(t, dim: int, flip_sin_to_cos: bool = True, freq_shift: float = 0.0,
                       max_period: float = 10000.0):
    """Sinusoidal timestep features (diffusers ``get_timestep_embedding``).

    .. math:: e_j = \\exp(-\\log(P)\\, j / (d/2 - s)), \\quad
              \\mathrm{emb}(t) = [\\cos(t e), \\sin(t e)] \\text{ (flipped) or } [\\sin, \\cos]
    """
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
    args = jnp.asarray(t, jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if flip_sin_to_cos:
        emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    if dim % 2 == 1:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def optional_remat(cls, remat: bool):
    """Wrap a module class in ``nn.remat`` (activation checkpointing) when asked."""
    return nn.remat(cls) if remat else cls


__all__ = [
    "silu", "conv", "ResnetBlock2D", "Downsample2D", "Upsample2D", "Attention",
    "BasicTransformerBlock", "Transformer2DModel", "SpatialSelfAttention",
    "timestep_embedding", "scaled_dot_product", "optional_remat",
]
