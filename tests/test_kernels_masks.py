"""Blur kernel and inpainting mask makers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

import jax

import operators as op

KEYS = [jax.random.PRNGKey(i) for i in range(4)]


# ------------------------------------------------------------------ kernels


def test_gaussian_kernel():
    k = op.gaussian_kernel(61, 3.0)
    assert k.shape == (61, 61) and k.dtype == np.float32
    assert abs(float(k.sum(dtype=np.float64)) - 1) < 1e-6
    np.testing.assert_allclose(k, k.T)
    np.testing.assert_allclose(k, k[::-1, ::-1])
    assert np.unravel_index(np.argmax(k), k.shape) == (30, 30)
    # Ratio to the centre follows exp(-r^2 / (2 sigma^2)).
    np.testing.assert_allclose(k[30, 33] / k[30, 30], np.exp(-9 / 18), rtol=1e-5)
    np.testing.assert_allclose(k[27, 34] / k[30, 30], np.exp(-25 / 18), rtol=1e-5)
    with pytest.raises(ValueError, match="odd"):
        op.gaussian_kernel(60, 3.0)
    with pytest.raises(ValueError, match="sigma"):
        op.gaussian_kernel(61, 0.0)


def test_motion_kernel_properties_and_determinism():
    ks = [op.motion_kernel(key, 61, 0.5) for key in KEYS]
    for k in ks:
        assert k.shape == (61, 61) and k.dtype == np.float32
        assert k.min() >= 0
        assert abs(float(k.sum(dtype=np.float64)) - 1) < 1e-6
        # A trajectory, not a point: mass spread over many pixels, well inside the support.
        assert np.count_nonzero(k) > 20
        rows, cols = np.nonzero(k)
        assert rows.min() >= 1 and cols.min() >= 1 and rows.max() <= 59 and cols.max() <= 59
    # Same key, same kernel (bit for bit); different keys, different kernels.
    np.testing.assert_array_equal(op.motion_kernel(KEYS[0], 61, 0.5), ks[0])
    for i in range(len(ks)):
        for j in range(i):
            assert not np.allclose(ks[i], ks[j])


def test_motion_kernel_intensity_controls_extent():
    def extent(k):
        rows, cols = np.nonzero(k > 1e-4)
        return max(np.ptp(rows), np.ptp(cols))

    weak = np.mean([extent(op.motion_kernel(key, 61, 0.0)) for key in KEYS])
    strong = np.mean([extent(op.motion_kernel(key, 61, 1.0)) for key in KEYS])
    assert strong > weak + 5
    with pytest.raises(ValueError, match=r"intensity must be in \[0, 1\]"):
        op.motion_kernel(KEYS[0], 61, 1.5)
    with pytest.raises(ValueError, match="odd"):
        op.motion_kernel(KEYS[0], 60, 0.5)


def test_load_kernel_formats(tmp_path):
    rng = np.random.default_rng(0)
    k = rng.random((7, 5)).astype(np.float64)
    expected = (k / k.sum()).astype(np.float32)

    np.save(tmp_path / "k.npy", k)
    np.testing.assert_allclose(op.load_kernel(tmp_path / "k.npy"), expected, rtol=1e-6)

    scipy.io.savemat(tmp_path / "one.mat", {"psf": k})
    np.testing.assert_allclose(op.load_kernel(tmp_path / "one.mat"), expected, rtol=1e-6)
    scipy.io.savemat(tmp_path / "two.mat", {"psf": k, "other": 2 * k[:5, :5]})
    with pytest.raises(ValueError, match=r"exactly one 2-D array.*\['other', 'psf'\]"):
        op.load_kernel(tmp_path / "two.mat")
    np.testing.assert_allclose(
        op.load_kernel(tmp_path / "two.mat", name="psf"), expected, rtol=1e-6
    )
    with pytest.raises(KeyError, match="missing"):
        op.load_kernel(tmp_path / "two.mat", name="missing")

    with h5py.File(tmp_path / "k.h5", "w") as f:
        f.create_dataset("group/kernel", data=k)
        f.create_dataset("scalar", data=1.0)
    np.testing.assert_allclose(op.load_kernel(tmp_path / "k.h5"), expected, rtol=1e-6)
    np.testing.assert_allclose(
        op.load_kernel(tmp_path / "k.h5", name="group/kernel"), expected, rtol=1e-6
    )


@pytest.mark.parametrize(
    "kernel, match",
    [
        (np.ones((4, 5)), "odd side lengths"),
        (np.ones((3, 3, 3)), "2-D"),
        (np.array([[0.0, np.nan, 0.0]] * 3), "non-finite"),
        (np.array([[0.0, -1.0, 2.0]] * 3), "negative"),
        (np.zeros((3, 3)), "positive sum"),
    ],
)
def test_load_kernel_rejects_invalid(tmp_path, kernel, match):
    np.save(tmp_path / "bad.npy", kernel)
    with pytest.raises(ValueError, match=match):
        op.load_kernel(tmp_path / "bad.npy")


def test_load_kernel_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        op.load_kernel(tmp_path / "none.npy")
    (tmp_path / "k.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="unsupported kernel file type"):
        op.load_kernel(tmp_path / "k.txt")


# ------------------------------------------------------------------ masks


def test_random_mask():
    m = op.random_mask(KEYS[0], (40, 30), drop=0.8)
    assert m.shape == (40, 30) and m.dtype == np.float32
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert np.count_nonzero(m == 0) == round(0.8 * 1200)
    np.testing.assert_array_equal(op.random_mask(KEYS[0], (40, 30), 0.8), m)
    assert not np.array_equal(op.random_mask(KEYS[1], (40, 30), 0.8), m)
    with pytest.raises(ValueError, match="drop"):
        op.random_mask(KEYS[0], (4, 4), 1.5)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        op.random_mask(KEYS[0], (4, 4, 3), 0.5)


def test_box_mask():
    masks = [op.box_mask(key, (64, 48), (20, 10), margin=4) for key in KEYS]
    for m in masks:
        rows, cols = np.nonzero(m == 0)
        assert (
            np.ptp(rows) + 1 == 20 and np.ptp(cols) + 1 == 10 and len(rows) == 200
        )  # one solid box
        assert rows.min() >= 4 and cols.min() >= 4 and rows.max() < 60 and cols.max() < 44
    assert len({m.tobytes() for m in masks}) > 1  # position is random
    np.testing.assert_array_equal(op.box_mask(KEYS[0], (64, 48), (20, 10), margin=4), masks[0])
    with pytest.raises(ValueError, match="does not fit"):
        op.box_mask(KEYS[0], (16, 16), 10, margin=4)


@pytest.mark.parametrize("hole_range", [(0.1, 0.2), (0.3, 0.4)])
def test_freeform_mask_fraction_and_determinism(hole_range):
    lo, hi = hole_range
    masks = [op.freeform_mask(key, (48, 64), hole_range) for key in KEYS]
    for m in masks:
        assert m.shape == (48, 64) and m.dtype == np.float32
        assert set(np.unique(m)) <= {0.0, 1.0}
        assert lo <= op.hole_fraction(m) <= hi
    np.testing.assert_array_equal(op.freeform_mask(KEYS[0], (48, 64), hole_range), masks[0])
    assert len({m.tobytes() for m in masks}) == len(masks)


def test_freeform_mask_holes_are_strokes_not_noise():
    m = op.freeform_mask(KEYS[2], (48, 64), (0.1, 0.2))
    hole = m == 0
    # Brush strokes are thick: most hole pixels have a hole neighbour on both sides of an
    # axis (isolated-pixel noise would not).
    inner = hole[1:-1, 1:-1] & (
        (hole[:-2, 1:-1] & hole[2:, 1:-1]) | (hole[1:-1, :-2] & hole[1:-1, 2:])
    )
    assert inner.sum() > 0.5 * hole.sum()


def test_freeform_mask_bad_range():
    with pytest.raises(ValueError, match="hole_range"):
        op.freeform_mask(KEYS[0], (16, 16), (0.5, 0.2))
    with pytest.raises(RuntimeError, match="widen hole_range"):
        op.freeform_mask(KEYS[0], (48, 64), (0.3, 0.3), max_attempts=2)  # 921.6 px: impossible
