"""A convolution whose input gradient stays fast inside ``lax.scan`` on XLA's CPU backend.

Every guidance step of a latent solver differentiates the UNet and the decoder with respect to
their *input*. For a convolution :math:`y = x \\star w` (stride :math:`s`, padding
:math:`(p_l, p_h)`, kernel size :math:`k`) that gradient is again a convolution,

.. math::
    \\nabla_x = (\\bar g \\uparrow s) \\star \\operatorname{flip}(w)^{T_{io}},
    \\qquad \\text{padding } (k - 1 - p_l,\\; k - 1 - p_h + r),\\quad
    r = (n + p_l + p_h - k) \\bmod s,

with :math:`\\bar g \\uparrow s` the cotangent dilated by the stride, :math:`\\operatorname{flip}`
the spatial reversal and :math:`T_{io}` the swap of the kernel's input and output channels.
JAX's own transpose rule writes the same convolution with the reversal and the swap folded into
the convolution's dimension numbers. Measured on this project's CPU machine (jax 0.8.1), that
form runs 20-30 times slower when it sits in the body of a ``lax.scan`` (the solvers' chunked
loop) than the same program unrolled; the form above, with the flipped and transposed kernel
materialised as an ordinary ``HWIO`` array, runs at the unrolled speed in both
(``benchmarks/scan_conv.py`` measures it). The forward pass is ``lax.conv_general_dilated``
unchanged, so outputs are bit-identical; only the input gradient's program differs.

Two refinements keep that gradient cheap in time and memory at Stable Diffusion size
(``benchmarks/sd_step.py``):

* **Small images, large kernels: one matrix product, no kernel copy.** Where the output has few
  pixels for its channel count (:math:`4 N H_o W_o \\le C_{out}`: the UNet's 8x8 and 16x16
  levels at 256 px), transposing and flipping the kernel costs more than the convolution itself
  (a 56 MB copy for each 1280-channel 3x3 kernel). There the gradient is computed as

  .. math::
      Y = \\bar g\\, W^T \\in \\mathbb{R}^{N H_o W_o \\times k_h k_w C_{in}},\\qquad
      \\nabla_x[n, s_h i + a - p_l, s_w j + b - p_l', :] \\mathrel{+}= Y[n, i, j, a, b, :],

  a product with the kernel reshaped (a free view) to :math:`(k_h k_w C_{in}) \\times C_{out}`
  and contracted on its last axis, followed by a "col2im" sum of :math:`k_h k_w` shifted,
  stride-dilated slices of :math:`Y` (:func:`input_gradient_gemm`).
* **Flip late.** Elsewhere the flipped kernel is made to depend on the cotangent by an exact
  zero (:func:`_after`), so that XLA computes each copy just before its convolution instead of
  all of them at the start of the program, where they would all be live at once (2.2 GB for SD
  v1.4's UNet and decoder).

:func:`conv_general_dilated` is a drop-in for ``flax.linen.Conv(conv_general_dilated=...)``;
it takes the fast path for 2-D ``NHWC``/``HWIO`` convolutions without dilation or feature
groups and explicit padding (all of this package's convolutions) and hands anything else to
``lax`` as is. Setting the environment variable ``DIFFPRIOR_CONV_GRAD=lax`` before a program is
traced gives every convolution JAX's own gradient again (for comparisons, or a backend where
that form is the faster one). The custom rule is reverse-mode only (``jax.custom_vjp``): forward-mode
differentiation (``jax.jvp``, ``jax.jacfwd``) through a model is not supported.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def _plain(x, w, strides, padding, precision):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x, w, strides: tuple, padding: tuple, precision=None):
    """2-D convolution ``(N, H, W, C_in) x (kh, kw, C_in, C_out)``, explicit padding pairs."""
    return _plain(x, w, strides, padding, precision)


def _fwd(x, w, strides, padding, precision):
    return _plain(x, w, strides, padding, precision), (x, w)


def input_gradient(g, w, in_hw, strides, padding, precision=None):
    """:math:`\\nabla_x` of ``conv2d`` for the cotangent ``g`` (the formula of the module docstring)."""
    pads = []
    for n, k, s, (lo, hi) in zip(in_hw, w.shape[:2], strides, padding):
        r = (n + lo + hi - k) % s
        pads.append((k - 1 - lo, k - 1 - hi + r))
    wt = jnp.swapaxes(jnp.flip(w, (0, 1)), 2, 3)
    return lax.conv_general_dilated(g, wt, (1, 1), pads, lhs_dilation=strides, dimension_numbers=_NHWC,
                                    precision=precision)


def input_gradient_gemm(g, w, in_hw, strides, padding, precision=None):
    """:math:`\\nabla_x` of ``conv2d`` as one matrix product and a col2im sum (module docstring).

    Same value as :func:`input_gradient` (to rounding), without copying the kernel; the
    intermediate :math:`Y` holds :math:`k_h k_w` values per input channel and output pixel, so
    this form suits outputs with few pixels.
    """
    kh, kw, ci, co = w.shape
    n, ho, wo, _ = g.shape
    y = lax.dot_general(g.reshape(n * ho * wo, co), w.reshape(kh * kw * ci, co), (((1,), (1,)), ((), ())),
                        precision=precision).reshape(n, ho, wo, kh, kw, ci)
    zero = jnp.zeros((), y.dtype)
    out = None
    for a in range(kh):
        for b in range(kw):
            cfg = [(0, 0, 0)]
            for tap, size, n_out, s, (lo, _) in ((a, in_hw[0], ho, strides[0], padding[0]),
                                                 (b, in_hw[1], wo, strides[1], padding[1])):
                first = tap - lo  # input row of output row 0 for this tap (may be < 0: cropped)
                cfg.append((first, size - (first + (n_out - 1) * s + 1), s - 1))
            part = lax.pad(y[:, :, :, a, b, :], zero, [*cfg, (0, 0, 0)])
            out = part if out is None else out + part
    return out


def _use_gemm(g_shape) -> bool:
    """Few output pixels for the channel count: the kernel copy would cost more than the product."""
    n, ho, wo, co = g_shape
    return 4 * n * ho * wo <= co


def _after(w, g):
    """``w`` unchanged, but computed after ``g`` exists: ``w + 0`` with the zero read from ``g``.

    ``(v != v) * 0`` is exactly zero for any ``v`` (NaN and infinity included), so a bad
    cotangent in one sample cannot leak into another through the kernel. XLA does not fold
    ``x * 0`` for floats, so the dependence survives and the scheduler places the kernel flip
    next to the convolution that reads it.
    """
    v = g.reshape(-1)[0]
    return w + (v != v).astype(w.dtype) * jnp.zeros((), w.dtype)


def _bwd(strides, padding, precision, res, g):
    x, w = res
    if _use_gemm(g.shape):
        gx = input_gradient_gemm(g, w, x.shape[1:3], strides, padding, precision).astype(x.dtype)
    else:
        gx = input_gradient(g, _after(w, g), x.shape[1:3], strides, padding, precision).astype(x.dtype)
    _, pull = jax.vjp(lambda w: _plain(x, w, strides, padding, precision), w)
    return gx, pull(g)[0]


conv2d.defvjp(_fwd, _bwd)


def _is_nhwc(dn, ndim: int) -> bool:
    if ndim != 4:
        return False
    if isinstance(dn, lax.ConvDimensionNumbers):
        return tuple(dn) == tuple(_NHWC)
    return tuple(dn or ()) == ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
    """``lax.conv_general_dilated`` with :func:`conv2d`'s input gradient where it applies."""
    fast = (os.environ.get("DIFFPRIOR_CONV_GRAD", "explicit") != "lax"
            and _is_nhwc(dimension_numbers, lhs.ndim) and feature_group_count == 1 and batch_group_count == 1
            and preferred_element_type is None and not isinstance(padding, str)
            and all(d == 1 for d in (lhs_dilation or (1, 1))) and all(d == 1 for d in (rhs_dilation or (1, 1))))
    if not fast:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, batch_group_count, precision,
                                        preferred_element_type)
    pad = tuple((int(lo), int(hi)) for lo, hi in padding)
    return conv2d(lhs, rhs, tuple(int(s) for s in window_strides), pad, precision)
