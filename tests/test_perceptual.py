import pickle

import numpy as np
import pytest

from diffprior import perceptual


def test_lpips_zero_for_identical_and_grows_with_distortion():
    rng = np.random.default_rng(0)
    x = rng.random((2, 32, 32, 3)).astype(np.float32)
    small = np.clip(x + 0.03 * rng.standard_normal(x.shape), 0, 1)
    large = np.clip(x + 0.3 * rng.standard_normal(x.shape), 0, 1)
    d0, d1, d2 = perceptual.lpips(x, x), perceptual.lpips(x, small), perceptual.lpips(x, large)
    assert d0.shape == (2,)
    np.testing.assert_allclose(d0, 0.0, atol=1e-6)
    assert np.all(d1 > 1e-4) and np.all(d2 > d1)


def test_lpips_unbatched_and_shape_errors():
    x = np.full((32, 32, 3), 0.5, np.float32)
    assert np.ndim(perceptual.lpips(x, x)) == 0
    with pytest.raises(ValueError, match="equal shape"):
        perceptual.lpips(x, x[:16])


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_weight_reader_refuses_code(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"a": _Evil()}))
    with open(path, "rb") as f, pytest.raises(pickle.UnpicklingError, match="refusing"):
        perceptual._ArraysOnly(f).load()
    arrays = {"w": np.arange(3.0)}
    path.write_bytes(pickle.dumps(arrays))
    with open(path, "rb") as f:
        np.testing.assert_array_equal(perceptual._ArraysOnly(f).load()["w"], arrays["w"])
