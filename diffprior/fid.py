r"""Fréchet Inception Distance :cite:`heusel2017fid`, computed as pytorch-fid does.

Both image sets go through the FID Inception-v3 (:class:`diffprior.inception.FIDInceptionV3`,
with weights the user supplies: :func:`diffprior.inception.load_weights`) to 2048-d pool3
features; each set is summarised by its mean :math:`\mu` and covariance :math:`\Sigma`
(float64, unbiased, as ``np.cov``), and

.. math::
   \mathrm{FID} = \|\mu_1 - \mu_2\|_2^2 + \operatorname{tr}\bigl(\Sigma_1 + \Sigma_2
       - 2\,(\Sigma_1 \Sigma_2)^{1/2}\bigr) \;.

The pieces are public: :func:`inception_features`, :func:`feature_statistics`,
:func:`frechet_distance`; :func:`fid` chains them.

FID is a statistic of sets: with fewer images than feature dimensions (2048) the
covariances are rank-deficient and the value is biased upwards and noisy. Compare FIDs only
between sets of the same size, and report the size beside the number.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Mapping, Tuple, Union

import numpy as np

__all__ = ["inception_features", "feature_statistics", "frechet_distance", "fid", "DEFAULT_BATCH_SIZE"]

#: Images per network call (pytorch-fid's default).
DEFAULT_BATCH_SIZE = 50

WeightsLike = Union[str, os.PathLike, Mapping]


@functools.lru_cache(maxsize=1)
def _network():
    """The jitted pool3 network on 299 x 299 inputs (one compilation per batch size)."""
    import jax

    from .inception import FIDInceptionV3

    module = FIDInceptionV3(resize_input=False, normalize_input=True)
    return jax.jit(module.apply)


@functools.lru_cache(maxsize=1)
def _resizer():
    """The jitted resize to 299 x 299 (one compilation per input shape)."""
    import jax

    from .inception import INPUT_SIZE, resize_bilinear

    return jax.jit(lambda x: resize_bilinear(x, (INPUT_SIZE, INPUT_SIZE)))


def _check_images(images, name: str) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: expected images (N, H, W, 3) or grayscale (N, H, W, 1); got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name}: expected floating-point images in [0, 1]; got dtype {x.dtype} "
                        "(divide 8-bit images by 255)")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: no images")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: images contain NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{name}: expected values in [0, 1]; got [{lo:.4g}, {hi:.4g}] (clip or rescale first)")
    return x


def _variables(weights: WeightsLike):
    from .inception import load_weights

    return weights if isinstance(weights, Mapping) else load_weights(weights)


def inception_features(images, weights: WeightsLike, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Pool3 features of the FID Inception-v3 for ``[0, 1]`` images.

    Images are resized to 299 x 299 (bilinear, no antialiasing, as pytorch-fid does),
    mapped to ``[-1, 1]`` and run through the network in float32, `batch_size` at a time
    (the last batch padded, so one compilation serves every call with the same batch).

    Args:
        images: float ``(N, H, W, 3)`` in ``[0, 1]``; grayscale ``(N, H, W, 1)`` is
            replicated to three channels first.
        weights: Path of the safetensors weights file, or the variables that
            :func:`diffprior.inception.load_weights` returned (to read the file once).
        batch_size: Images per network call (at most `N` are used).

    Returns:
        float64 ``(N, 2048)``.

    Raises:
        ValueError, TypeError: For images of another shape, dtype or range.
        diffprior.inception.InceptionWeightsError: For a missing or malformed weights file.
    """
    import jax
    import jax.numpy as jnp

    x = _check_images(images, "inception_features")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    variables = jax.device_put(_variables(weights))  # once, not with every batch
    N = x.shape[0]
    B = min(int(batch_size), N)
    net, resize = _network(), _resizer()
    out = np.empty((N, 2048), np.float64)
    for s in range(0, N, B):
        chunk = x[s:s + B].astype(np.float32)
        n = chunk.shape[0]
        if n < B:
            chunk = np.concatenate([chunk, np.zeros((B - n,) + chunk.shape[1:], np.float32)])
        if chunk.shape[-1] == 1:
            chunk = np.repeat(chunk, 3, axis=-1)
        feats = net(variables, resize(jnp.asarray(chunk)))
        out[s:s + n] = np.asarray(feats, np.float64)[:n]
    return out


def feature_statistics(features) -> Tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of ``(N, D)`` features, in float64.

    Raises:
        ValueError: For fewer than two feature vectors or a non-2-D array.
    """
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"feature_statistics: expected (N, D) features with N >= 2; got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    r"""Fréchet distance between the Gaussians :math:`\mathcal N(\mu_1, \Sigma_1)` and
    :math:`\mathcal N(\mu_2, \Sigma_2)`, with pytorch-fid's numerics.

    :math:`(\Sigma_1\Sigma_2)^{1/2}` is ``scipy.linalg.sqrtm`` of the product. If that has
    non-finite entries (a singular product), :math:`\epsilon I` is added to both
    covariances and the root taken again (with a warning). A complex root whose diagonal has
    an imaginary part above ``1e-3`` is an error; a smaller one is numerical noise and only
    the real part is kept.

    Args:
        mu1, mu2: Means ``(D,)``.
        sigma1, sigma2: Covariances ``(D, D)``.
        eps: Diagonal offset of the singular-product fallback.

    Returns:
        The squared distance (a float; may be slightly negative from rounding for
        identical sets).

    Raises:
        ValueError: For mismatched shapes, or a root with a large imaginary part.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"frechet_distance: means of different shapes {mu1.shape} and {mu2.shape}")
    D = mu1.shape[0]
    if sigma1.shape != (D, D) or sigma2.shape != (D, D):
        raise ValueError(f"frechet_distance: covariances {sigma1.shape} and {sigma2.shape} do not match means ({D},)")
    root = linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(root)):
        warnings.warn(f"frechet_distance: singular covariance product; adding {eps:g} to the diagonals",
                      RuntimeWarning, stacklevel=2)
        offset = eps * np.eye(D)
        root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0.0, atol=1e-3):
            raise ValueError(f"frechet_distance: the matrix square root has an imaginary component of "
                             f"{np.max(np.abs(root.imag)):.3g}")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


def fid(real_images, fake_images, weights_path: WeightsLike, *, batch_size: int = DEFAULT_BATCH_SIZE) -> float:
    """Fréchet Inception Distance between two image sets (lower is closer).

    Args:
        real_images: float ``(N, H, W, 3)`` in ``[0, 1]`` (grayscale ``(N, H, W, 1)`` is
            replicated to three channels), ``N >= 2``.
        fake_images: The same for the other set (its own count and size).
        weights_path: The safetensors file of pytorch-fid's Inception weights (see
            :mod:`diffprior.inception` for the one-time conversion), or variables that
            :func:`diffprior.inception.load_weights` returned.
        batch_size: Images per network call.

    Returns:
        The FID (float). With few images (below the 2048 feature dimensions) it is biased
        upwards: state the number of images beside it.

    Raises:
        ValueError, TypeError: For bad images or fewer than two per set.
        diffprior.inception.InceptionWeightsError: For a missing or malformed weights file.
    """
    for x, name in ((real_images, "real_images"), (fake_images, "fake_images")):
        if _check_images(x, f"fid: {name}").shape[0] < 2:
            raise ValueError(f"fid: {name}: at least two images are needed for a covariance")
    variables = _variables(weights_path)
    stats = [feature_statistics(inception_features(x, variables, batch_size=batch_size))
             for x in (real_images, fake_images)]
    return frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
