"""Nearest-neighbour 2x upsampling followed by a 3x3 convolution, without the upsampled map.

With :math:`u[Y, X] = x[\\lfloor Y/2 \\rfloor, \\lfloor X/2 \\rfloor]` and a 3x3 kernel
:math:`w` (padding 1), the output pixel :math:`(2i + a, 2j + b)` only ever reads two rows and
two columns of :math:`x`:

.. math::
    \\text{row phase } a = 0:\\; x[i-1] \\cdot w_0 + x[i] \\cdot (w_1 + w_2), \\qquad
    a = 1:\\; x[i] \\cdot (w_0 + w_1) + x[i+1] \\cdot w_2,

and likewise for the columns. So the upsampled convolution equals four 2x2 convolutions of the
*low-resolution* map, one per output phase :math:`(a, b)`, with kernels made of sums of
:math:`w`'s taps and paddings :math:`(1, 0)` for phase 0 and :math:`(0, 1)` for phase 1,
interleaved into the output. That is 16 instead of 36 multiply-adds per output pixel and input
channel, no :math:`4\\times` upsampled map, and input gradients of the same smaller size; SD's
decoder upsamples 128x128x256 and 64x64x512 maps this way at 256 px, its two most expensive
convolutions (``benchmarks/sd_step.py``). Outputs equal the direct form to rounding (tests).

Where the map is small for its channel count (:math:`4 N H W \\le C_{out}`: the UNet's 4x4 and
8x8 levels), the four combined kernels would cost more to form than the convolution saves, and
the direct form is used.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from .fastconv import conv_general_dilated

_PAD = {0: (1, 0), 1: (0, 1)}
_DN = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, padding, precision):
    """Stride-1 convolution through :func:`~diffprior.models.fastconv.conv_general_dilated`
    (its input gradient, or JAX's under ``DIFFPRIOR_CONV_GRAD=lax``)."""
    return conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN, precision=precision)


def _taps(w, phase: int, axis: int):
    """The two taps along ``axis`` of the 3-tap kernel ``w`` for one output phase."""
    t = [jnp.take(w, i, axis=axis) for i in range(3)]
    pair = (t[0], t[1] + t[2]) if phase == 0 else (t[0] + t[1], t[2])
    return jnp.stack(pair, axis=axis)


def use_phases(x_shape, c_out: int) -> bool:
    """Whether :func:`upsample_conv` takes the four-phase form for an input of ``x_shape``."""
    n, h, w, _ = x_shape
    return 4 * n * h * w > c_out


def upsample_conv(x, w, precision=None):
    """``conv(repeat(repeat(x, 2, 1), 2, 2), w)`` (3x3, padding 1, no bias) for ``x`` ``(N, H, W, C)``."""
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"upsample_conv needs a 3x3 kernel, got {kh}x{kw}")
    if not use_phases(x.shape, co):
        u = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return _conv(u, w, ((1, 1), (1, 1)), precision)
    rows = []
    for a in (0, 1):
        wa = _taps(w, a, 0)
        cols = [_conv(x, _taps(wa, b, 1), (_PAD[a], _PAD[b]), precision) for b in (0, 1)]
        rows.append(jnp.stack(cols, axis=3))  # (N, H, W, 2, C): column phase next to the column
    return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * wd, co)  # (N, H, 2, W, 2, C) -> (N, 2H, 2W, C)


class UpsampleConv(nn.Module):
    """The ``conv`` of :class:`~diffprior.models.layers.Upsample2D`: same parameters as
    ``nn.Conv(features, (3, 3))`` (``kernel``, ``bias``), applied by :func:`upsample_conv`."""

    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        dtype = jnp.result_type(x, kernel, bias)
        y = upsample_conv(x.astype(dtype), kernel.astype(dtype))
        return y + bias.astype(dtype)
