"""PSNR and SSIM."""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from diffprior.metrics import psnr, ssim


def _pattern(H=24, W=19, C=3):
    """Deterministic smooth test image and a perturbed copy (no RNG: fixed reference)."""
    i, j, c = np.meshgrid(np.arange(H), np.arange(W), np.arange(C), indexing="ij")
    x = (0.5 + 0.4 * np.sin(0.37 * i + 0.11 * j * (c + 1)) * np.cos(0.23 * j - 0.5 * c)).astype(
        np.float32
    )
    y = np.clip(x + 0.1 * np.sin(1.7 * i * j + c), 0, 1).astype(np.float32)
    return x, y


def test_psnr_values():
    x = np.zeros((8, 8, 3), np.float32)
    assert float(psnr(x, x + 0.1)) == pytest.approx(20.0, abs=1e-4)  # mse 0.01
    assert float(psnr(x, x + 0.1, data_range=2.0)) == pytest.approx(
        20.0 + 20 * np.log10(2), abs=1e-4
    )
    assert np.isinf(float(psnr(x, x)))
    xp, yp = _pattern()
    mse = np.mean((xp.astype(np.float64) - yp) ** 2)
    assert float(psnr(xp, yp)) == pytest.approx(10 * np.log10(1 / mse), abs=1e-4)


def test_psnr_batched_per_sample():
    x = np.zeros((3, 8, 8, 1), np.float32)
    y = x + np.array([0.1, 0.01, 0.0], np.float32)[:, None, None, None]
    p = psnr(x, y)
    assert p.shape == (3,)
    np.testing.assert_allclose(np.asarray(p)[:2], [20.0, 40.0], atol=1e-3)
    assert np.isinf(np.asarray(p)[2])


def test_ssim_identical_is_one():
    x, _ = _pattern()
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_constant_images_hand_computed():
    # Constant images: zero variances and covariance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.2, 0.7
    c1 = 0.01**2
    x = np.full((16, 13, 2), a, np.float32)
    y = np.full((16, 13, 2), b, np.float32)
    assert float(ssim(x, y)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-5)


def test_ssim_matches_skimage_reference_value():
    # skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    # use_sample_covariance=False, data_range=1, channel_axis=-1) = 0.8316174 (v0.26).
    x, y = _pattern()
    assert float(ssim(x, y)) == pytest.approx(0.8316174, abs=1e-6)
    assert float(ssim(y, x)) == pytest.approx(float(ssim(x, y)), abs=1e-7)  # symmetric


def test_ssim_batched_and_jit():
    x, y = _pattern()
    xb = np.stack([x, y, x])
    yb = np.stack([y, y, np.clip(x + 0.05, 0, 1)])
    s = ssim(xb, yb)
    assert s.shape == (3,)
    np.testing.assert_allclose(s[0], ssim(x, y), atol=1e-7)
    np.testing.assert_allclose(s[1], 1.0, atol=1e-6)
    np.testing.assert_allclose(jax.jit(ssim)(xb, yb), s, atol=1e-6)
    np.testing.assert_allclose(jax.jit(psnr)(xb, yb), psnr(xb, yb), atol=1e-5)
    # data_range scales the stabilising constants only: SSIM of images in [0, 255]
    # with data_range=255 equals SSIM of the [0, 1] images.
    np.testing.assert_allclose(ssim(255 * xb, 255 * yb, data_range=255.0), s, rtol=1e-5)


def test_metric_errors():
    x = jnp.zeros((16, 16, 3))
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, jnp.zeros((16, 15, 3)))
    with pytest.raises(ValueError, match=r"\(H, W, C\) or \(N, H, W, C\)"):
        ssim(jnp.zeros((16, 16)), jnp.zeros((16, 16)))
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim(jnp.zeros((8, 16, 1)), jnp.zeros((8, 16, 1)))
    with pytest.raises(TypeError, match="floating-point"):
        psnr(np.zeros((4, 4, 1), np.uint8), np.zeros((4, 4, 1), np.uint8))
