"""Image quality metrics: PSNR and SSIM, per sample, pure ``jax.numpy`` and jittable.

Images are ``(H, W, C)`` or ``(N, H, W, C)`` with values in ``[0, data_range]`` (the
library's convention is ``[0, 1]``). Batched inputs give one value per sample, shape
``(N,)``; unbatched inputs give a scalar. LPIPS (a learned metric that needs network
weights) lives elsewhere.

The Fréchet Inception Distance, a statistic of image *sets* computed with Inception weights
the user supplies, is implemented in :mod:`diffprior.fid` and re-exported here: :func:`~diffprior.fid.fid`
and its pieces :func:`~diffprior.fid.inception_features`,
:func:`~diffprior.fid.feature_statistics` and :func:`~diffprior.fid.frechet_distance`.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

import jax
import jax.numpy as jnp

from .fid import feature_statistics, fid, frechet_distance, inception_features

__all__ = ["psnr", "ssim", "image_metrics", "gaussian_window", "measurement_residual", "noise_floor",
           "fid", "inception_features", "feature_statistics", "frechet_distance"]

_WIN_SIZE = 11
_WIN_SIGMA = 1.5
_K1 = 0.01
_K2 = 0.03


def _check_pair(x, y, name: str) -> Tuple[jax.Array, jax.Array, bool]:
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"{name}: images must have the same shape; got {x.shape} and {y.shape}.")
    if x.ndim not in (3, 4):
        raise ValueError(f"{name}: expected (H, W, C) or (N, H, W, C) images; got shape {x.shape}.")
    for a, label in ((x, "x"), (y, "y")):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"{name}: expected floating-point images; {label} has dtype {a.dtype}.")
    batched = x.ndim == 4
    if not batched:
        x, y = x[None], y[None]
    dtype = jnp.promote_types(jnp.promote_types(x.dtype, y.dtype), jnp.float32)
    return x.astype(dtype), y.astype(dtype), batched


def psnr(x, y, data_range: float = 1.0) -> jax.Array:
    r"""Peak signal-to-noise ratio in dB, per sample.

    .. math::
       \mathrm{PSNR}(x, y) = 10 \log_{10} \frac{R^2}{\frac{1}{HWC}\sum (x - y)^2} \;,

    with :math:`R` = `data_range`; ``inf`` for identical images.

    Args:
        x: Image(s), ``(H, W, C)`` or ``(N, H, W, C)``.
        y: Reference image(s), same shape.
        data_range: Dynamic range :math:`R` of the images (1 for ``[0, 1]``).

    Returns:
        Scalar (unbatched) or ``(N,)`` array.

    Raises:
        ValueError: If the shapes differ or are not 3-D/4-D.
        TypeError: If an input is not floating point.
    """
    x, y, batched = _check_pair(x, y, "psnr")
    mse = jnp.mean((x - y) ** 2, axis=(1, 2, 3))
    out = 10.0 * jnp.log10(jnp.asarray(data_range, x.dtype) ** 2 / mse)
    return out if batched else out[0]


def gaussian_window(size: int = _WIN_SIZE, sigma: float = _WIN_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian window (the separable factor of SSIM's 2-D window)."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def _filter_valid(z: jax.Array, g: jax.Array) -> jax.Array:
    """Separable 'valid' filtering of ``(B, H, W, K)`` over H and W (depthwise)."""
    K = z.shape[-1]
    hi = jax.lax.Precision.HIGHEST
    n = g.shape[0]
    kh = jnp.tile(g.reshape(n, 1, 1, 1), (1, 1, 1, K)).astype(z.dtype)
    kw = jnp.tile(g.reshape(1, n, 1, 1), (1, 1, 1, K)).astype(z.dtype)
    dn = ("NHWC", "HWIO", "NHWC")
    z = jax.lax.conv_general_dilated(
        z, kh, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=K, precision=hi
    )
    return jax.lax.conv_general_dilated(
        z, kw, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=K, precision=hi
    )


def ssim(x, y, data_range: float = 1.0) -> jax.Array:
    r"""Structural similarity index (Wang et al., IEEE TIP 2004), per sample.

    Local statistics use the standard 11 x 11 Gaussian window with :math:`\sigma = 1.5`
    and population (not sample) covariances; with :math:`C_1 = (0.01 R)^2`,
    :math:`C_2 = (0.03 R)^2`,

    .. math::
       \mathrm{SSIM}(x, y) = \frac{(2 \mu_x \mu_y + C_1)(2 \sigma_{xy} + C_2)}
          {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}

    is averaged over all window positions fully inside the image and then over channels.
    This equals ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=R, channel_axis=-1)`` (which crops
    the 5-pixel border where its window would leave the image).

    Args:
        x: Image(s), ``(H, W, C)`` or ``(N, H, W, C)``, with ``H, W >= 11``.
        y: Reference image(s), same shape.
        data_range: Dynamic range :math:`R`.

    Returns:
        Scalar (unbatched) or ``(N,)`` array; 1 for identical images.

    Raises:
        ValueError: If shapes differ, are not 3-D/4-D, or an image side is below 11.
        TypeError: If an input is not floating point.
    """
    x, y, batched = _check_pair(x, y, "ssim")
    if x.shape[1] < _WIN_SIZE or x.shape[2] < _WIN_SIZE:
        raise ValueError(
            f"ssim: images must be at least {_WIN_SIZE} x {_WIN_SIZE}; got {x.shape[1:3]}."
        )
    C = x.shape[-1]
    g = jnp.asarray(gaussian_window())
    # Variances as E[x^2] - E[x]^2 cancel badly in float32; subtracting each image's
    # per-channel mean first (statistics are shift-invariant) keeps the error at the scale
    # of the image's variance instead of its squared mean.
    mx = jnp.mean(x, axis=(1, 2), keepdims=True)
    my = jnp.mean(y, axis=(1, 2), keepdims=True)
    xs, ys = x - mx, y - my
    stats = _filter_valid(jnp.concatenate([xs, ys, xs * xs, ys * ys, xs * ys], axis=-1), g)
    uxs, uys, uxx, uyy, uxy = (stats[..., i * C : (i + 1) * C] for i in range(5))
    vx = uxx - uxs * uxs
    vy = uyy - uys * uys
    vxy = uxy - uxs * uys
    ux, uy = uxs + mx, uys + my
    R = jnp.asarray(data_range, x.dtype)
    c1 = (_K1 * R) ** 2
    c2 = (_K2 * R) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    out = jnp.mean(s, axis=(1, 2, 3))
    return out if batched else out[0]


def image_metrics(x, ground_truth, lpips: bool = False) -> dict:
    """Per-image PSNR, SSIM and, with ``lpips``, LPIPS (AlexNet; images below 64 px resized to
    64 first) of ``(N, H, W, C)`` images in ``[0, 1]``, as numpy arrays ``(N,)``.

    The metrics the runner appends to result files by default (without LPIPS); the demo and
    the benchmarks add LPIPS.
    """
    xj, gj = jnp.asarray(x), jnp.asarray(ground_truth)
    out = {"psnr": np.asarray(psnr(xj, gj)), "ssim": np.asarray(ssim(xj, gj))}
    if lpips:
        from .perceptual import lpips as lpips_fn

        out["lpips"] = np.asarray(lpips_fn(np.asarray(x), np.asarray(ground_truth)))
    return out



def measurement_residual(A, y, x) -> np.ndarray:
    """Per-sample data fit :math:`\\|y_n - A x_n\\|_2` (``[0, 1]`` image units), shape ``(N,)``.

    ``A`` acts on one image (``input_shape`` of rank 3) or on the batch (rank 4, per-sample
    operators); ``y`` is ``(N, ...)`` and ``x`` is ``(N, H, W, C)``. A sample whose ``x`` is not
    finite gets NaN. Compare with :func:`noise_floor`: a reconstruction that explains the
    measurement as well as the truth does has a residual near :math:`\\sigma\\sqrt{m}`.
    """
    from .solvers.common import make_forward

    x = np.asarray(x, np.float32)
    ok = np.all(np.isfinite(x.reshape(x.shape[0], -1)), axis=1)
    fwd, y, _ = make_forward(A, y)
    r = np.asarray(jnp.sqrt(jnp.sum(jnp.square(y - fwd(jnp.asarray(np.where(ok[:, None, None, None], x, 0.0))))
                                    .reshape(x.shape[0], -1), axis=1)), np.float64)
    return np.where(ok, r, np.nan)


def noise_floor(sigma: float, measurement_shape) -> float:
    """:math:`\\sigma\\sqrt{m}`, the expected residual norm of the ground truth itself
    (``m`` entries per measurement, ``measurement_shape`` without the sample axis), the
    level below which a lower residual only fits noise."""
    return float(sigma) * float(np.sqrt(np.prod(measurement_shape)))
