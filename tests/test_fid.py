"""FID: parity of our Flax FID Inception-v3 and Fréchet distance with pytorch-fid; weight files;
``diffprior report --fid-weights``.

``tests/fixtures/fid/reference.npz`` holds pytorch-fid's outputs with random weights that
``tests/fixtures/make_fid_fixtures.py`` draws from a numpy seed; this test draws the same
weights again (numpy only, no torch) instead of storing ~95 MB. The network compiles once
for the module (batch 4, 299 x 299); the Fréchet distance of 2048-d features is a
``scipy.linalg.sqrtm`` of a 2048 x 2048 matrix, run once (the report test).

Tolerances: features max absolute error at most ``1e-4`` times ``max |ref|``; Fréchet
distances ``1e-3`` relative.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from diffprior import inception
from diffprior.cli import main
from diffprior.fid import feature_statistics, fid, frechet_distance, inception_features
from diffprior.inception import InceptionWeightsError, load_weights, variables_from_state_dict, weight_layout

FIXTURES = Path(__file__).parent / "fixtures"
BATCH = 4  # every network call of this module uses this batch: one compilation


@pytest.fixture(scope="module")
def maker():
    """``make_fid_fixtures`` (its recipes are numpy only; torch is imported in its main)."""
    spec = importlib.util.spec_from_file_location("make_fid_fixtures", FIXTURES / "make_fid_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURES / "fid" / "reference.npz"))


@pytest.fixture(scope="module")
def state(maker, ref):
    """The fixture's random weights as a torch-named numpy state dict."""
    return maker.random_state_dict(weight_layout(), int(ref["weight_seed"]))


@pytest.fixture(scope="module")
def variables(state):
    return variables_from_state_dict(state)


@pytest.fixture(scope="module")
def weights_file(state, tmp_path_factory):
    """The random weights as a safetensors file with pytorch-fid's names (as `convert` writes)."""
    from safetensors.numpy import save_file

    path = tmp_path_factory.mktemp("fid") / "fid_inception.safetensors"
    save_file(state, str(path))
    return path


def rel_err(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


# ----------------------------------------------------------------------------- layout
def test_layout_is_pytorch_fids_state_dict(ref):
    """Our tensor names and shapes are exactly those of pytorch-fid's network (its
    classifier, unused by the features, apart)."""
    theirs = {str(n): tuple(int(d) for d in s if d >= 0) for n, s in zip(ref["layout_names"], ref["layout_shapes"])}
    assert {k: v for k, v in theirs.items() if k.startswith("fc.")} == inception._OPTIONAL
    ours = weight_layout()
    assert ours == {k: v for k, v in theirs.items() if not k.startswith("fc.")}
    assert len(ours) == 94 * 5
    assert ours["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert ours["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)


# ----------------------------------------------------------------------------- parity
def test_features_match_pytorch_fid(maker, ref, variables):
    """Pool3 features of 32 x 32 (upsampled), 64 x 48 and 320 x 352 (downsampled) images."""
    feats = np.concatenate([inception_features(x, variables, batch_size=BATCH)
                            for x in maker.reference_images(int(ref["image_seed"]))])
    assert feats.dtype == np.float64 and feats.shape == (5, 2048)
    err = rel_err(feats, ref["features"])
    print(f"features: relative max error {err:.3g}")
    assert err <= 1e-4
    # the images' features differ by far more than the tolerance: the check has teeth
    assert np.abs(ref["features"][0] - ref["features"][1]).max() > 100 * 1e-4 * np.abs(ref["features"]).max()


@pytest.mark.parametrize("case", ["full", "rank_deficient"])
def test_frechet_distance_matches_pytorch_fid(maker, ref, case):
    a, b = maker.feature_sets(case, int(ref["feature_seed"]))
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    d = frechet_distance(mu1, s1, mu2, s2)
    err = abs(d - float(ref[f"fd_{case}"])) / abs(float(ref[f"fd_{case}"]))
    print(f"frechet distance {case}: {d!r} vs {float(ref[f'fd_{case}'])!r}, relative error {err:.3g}")
    assert err <= 1e-3
    assert abs(frechet_distance(mu1, s1, mu1, s1)) <= 1e-6 * np.trace(s1)  # rounding of the root only


def test_singular_product_falls_back_to_an_epsilon_offset(maker, monkeypatch):
    """A non-finite root of the product is retried with eps * I added to both covariances."""
    from scipy import linalg

    a, b = maker.feature_sets("full")
    (mu1, s1), (mu2, s2) = feature_statistics(a), feature_statistics(b)
    real_sqrtm, calls = linalg.sqrtm, []

    def sqrtm(m):
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(linalg, "sqrtm", sqrtm)
    with pytest.warns(RuntimeWarning, match="singular covariance product; adding 1e-06"):
        d = frechet_distance(mu1, s1, mu2, s2)
    eye = 1e-6 * np.eye(64)
    np.testing.assert_array_equal(calls[1], (s1 + eye) @ (s2 + eye))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(real_sqrtm(calls[1]).real)
    assert d == pytest.approx(expected, rel=1e-12)


def test_imaginary_part_of_the_root(monkeypatch):
    """A small imaginary part is dropped; one above 1e-3 on the diagonal is an error."""
    from scipy import linalg

    s = np.diag([1.0, 4.0])
    for imag, ok in ((1e-5, True), (0.1, False)):
        monkeypatch.setattr(linalg, "sqrtm", lambda m, imag=imag: np.diag([1.0, 2.0]) + 1j * imag * np.eye(2))
        if ok:
            assert frechet_distance([0, 0], s, [1, 0], s) == pytest.approx(1.0 + 10.0 - 2 * 3.0)
        else:
            with pytest.raises(ValueError, match="imaginary component of 0.1"):
                frechet_distance([0, 0], s, [1, 0], s)


def test_grayscale_images_are_replicated(maker, variables):
    gray = maker.reference_images()[0][..., :1]
    np.testing.assert_array_equal(inception_features(gray, variables, batch_size=BATCH),
                                  inception_features(np.repeat(gray, 3, axis=-1), variables, batch_size=BATCH))


def test_fid_chains_the_pieces(maker, weights_file, variables, monkeypatch):
    """``fid`` = Fréchet distance of the float64 statistics of both sets' features (the
    2048 x 2048 matrix root itself is left to the report test)."""
    import diffprior.fid as fid_module

    real, fake = maker.reference_images()[0], maker.reference_images(99)[0]
    seen = {}

    def fake_distance(mu1, s1, mu2, s2):
        seen.update(mu1=mu1, s1=s1, mu2=mu2, s2=s2)
        return 12.5

    monkeypatch.setattr(fid_module, "frechet_distance", fake_distance)
    assert fid(real, fake, weights_file, batch_size=BATCH) == 12.5
    for x, k in ((real, "1"), (fake, "2")):
        mu, s = feature_statistics(inception_features(x, variables, batch_size=BATCH))
        assert seen["mu" + k].dtype == np.float64 and seen["s" + k].shape == (2048, 2048)
        np.testing.assert_allclose(seen["mu" + k], mu, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(seen["s" + k], s, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("images, error, match", [
    (np.zeros((2, 8, 8)), ValueError, r"expected images \(N, H, W, 3\)"),
    (np.zeros((2, 8, 8, 2), np.float32), ValueError, r"grayscale \(N, H, W, 1\)"),
    (np.zeros((2, 8, 8, 3), np.uint8), TypeError, "divide 8-bit images by 255"),
    (np.full((2, 8, 8, 3), 1.5, np.float32), ValueError, r"expected values in \[0, 1\]"),
    (np.full((2, 8, 8, 3), np.nan, np.float32), ValueError, "NaN"),
])
def test_bad_images(images, error, match, variables):
    with pytest.raises(error, match=match):
        inception_features(images, variables)


def test_fid_needs_two_images_per_set(variables):
    with pytest.raises(ValueError, match="fake_images: at least two images"):
        fid(np.zeros((3, 8, 8, 3), np.float32), np.zeros((1, 8, 8, 3), np.float32), variables)


# ----------------------------------------------------------------------------- weight files
def test_weights_file_round_trip(weights_file, variables):
    loaded = load_weights(weights_file)
    assert loaded["params"]["Mixed_5b"]["branch_pool"]["conv"]["kernel"].shape == (1, 1, 192, 32)
    np.testing.assert_array_equal(loaded["batch_stats"]["Mixed_7c"]["branch1x1"]["bn"]["var"],
                                  variables["batch_stats"]["Mixed_7c"]["branch1x1"]["bn"]["var"])


def test_wrong_layouts_are_refused_naming_the_tensor(state):
    first = next(iter(weight_layout()))
    bad = dict(state)
    del bad["Mixed_6c.branch7x7dbl_3.bn.running_var"]
    with pytest.raises(InceptionWeightsError, match=r"missing tensor Mixed_6c\.branch7x7dbl_3\.bn\.running_var "
                                                    r"of shape \(160,\)"):
        variables_from_state_dict(bad)
    bad = dict(state, **{"Mixed_5d.branch5x5_2.conv.weight": np.zeros((64, 48, 3, 3), np.float32)})
    with pytest.raises(InceptionWeightsError, match=r"tensor Mixed_5d\.branch5x5_2\.conv\.weight has shape "
                                                    r"\(64, 48, 3, 3\), expected \(64, 48, 5, 5\)"):
        variables_from_state_dict(bad)
    with pytest.raises(InceptionWeightsError, match=r"unexpected tensor AuxLogits\.fc\.weight"):
        variables_from_state_dict(dict(state, **{"AuxLogits.fc.weight": np.zeros((1008, 768), np.float32)}))
    with pytest.raises(InceptionWeightsError, match=r"tensor fc\.weight has shape \(1000, 2048\)"):
        variables_from_state_dict(dict(state, **{"fc.weight": np.zeros((1000, 2048), np.float32)}))
    with pytest.raises(InceptionWeightsError, match=f"tensor {first} has dtype int64"):
        variables_from_state_dict(dict(state, **{first: state[first].astype(np.int64)}))
    # pytorch-fid's own extras are accepted: the classifier and the batch norm counters
    extras = {"fc.weight": np.zeros((1008, 2048), np.float32), "fc.bias": np.zeros(1008, np.float32),
              "Conv2d_1a_3x3.bn.num_batches_tracked": np.zeros((), np.int64)}
    variables_from_state_dict(dict(state, **extras))


def test_bad_weight_files(tmp_path):
    from safetensors.numpy import save_file

    with pytest.raises(InceptionWeightsError, match="FID Inception weights not found"):
        load_weights(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(InceptionWeightsError, match="is not a readable safetensors file"):
        load_weights(junk)
    small = tmp_path / "small.safetensors"
    save_file({"Conv2d_1a_3x3.conv.weight": np.zeros((32, 3, 3, 3), np.float32)}, str(small))
    with pytest.raises(InceptionWeightsError, match=r"small\.safetensors: missing tensor Conv2d_1a_3x3\.bn\.weight"):
        load_weights(small)
    pth = tmp_path / "pt_inception.pth"
    pth.write_bytes(b"x")
    with pytest.raises(InceptionWeightsError, match="python -m diffprior.inception convert"):
        load_weights(pth)


class _StubTensor:
    """Just what ``convert`` calls on a torch tensor."""

    def __init__(self, a):
        self.a = a

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.a


def test_convert_command(state, tmp_path, monkeypatch, capsys):
    """``python -m diffprior.inception convert`` with a stand-in for torch (no torch here):
    pytorch-fid's state dict (counters, classifier) -> our safetensors file."""
    sd = {k: _StubTensor(v) for k, v in state.items()}
    sd["fc.weight"] = _StubTensor(np.zeros((1008, 2048), np.float32))
    sd["Mixed_5b.branch1x1.bn.num_batches_tracked"] = _StubTensor(np.zeros((), np.int64))
    loads = []
    torch = types.SimpleNamespace(Tensor=_StubTensor,
                                  load=lambda path, **kw: loads.append(kw) or sd)
    monkeypatch.setitem(sys.modules, "torch", torch)
    src = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    src.write_bytes(b"stand-in")
    out = tmp_path / "w.safetensors"
    assert inception.main(["convert", str(src), str(out)]) == 0
    assert loads == [{"map_location": "cpu", "weights_only": True}]
    printed = capsys.readouterr().out
    assert f"wrote {out} (470 tensors)" in printed and "not pytorch-fid's" in printed  # other sha256
    from safetensors.numpy import load_file

    written = load_file(str(out))
    assert set(written) == set(weight_layout())
    np.testing.assert_array_equal(written["Mixed_6e.branch7x7_2.conv.weight"], state["Mixed_6e.branch7x7_2.conv.weight"])
    # a file of another layout: one line, exit 2, nothing written
    del sd["Conv2d_4a_3x3.conv.weight"]
    assert inception.main(["convert", str(src), str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing tensor Conv2d_4a_3x3.conv.weight" in err
    assert not (tmp_path / "x.safetensors").exists()


# ----------------------------------------------------------------------------- report
@pytest.fixture(scope="module")
def result_file(maker, tmp_path_factory):
    """A 4-sample 32 x 32 problem with ground truth and a finished result file solving it."""
    from diffprior.io import ResultWriter, write_problem

    root = tmp_path_factory.mktemp("report")
    x = maker.reference_images()[0]
    x = np.concatenate([x, maker.reference_images(5)[0][:1]])
    y = x.reshape(4, 8, 4, 8, 4, 3).mean(axis=(2, 4))
    desc = {"class": "Downsample", "input_shape": [32, 32, 3], "factor": 4, "method": "average"}
    write_problem(root / "problems.h5", y, desc, 0.005, ground_truth=x)
    rec = np.clip(x + 0.1 * np.random.default_rng(0).standard_normal(x.shape), -0.05, 1.05).astype(np.float32)
    with ResultWriter(root / "results.h5", 4, (32, 32, 3), "LDPS", seed=0, problem=root / "problems.h5") as w:
        for n in range(4):
            w.append(n, rec[n], wall_time=1.0)
    return root / "results.h5", x, rec


def run_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_report_without_weights_says_fid_is_unavailable(result_file, capsys):
    rc, out, _ = run_cli(capsys, "report", result_file[0], "--no-lpips")
    assert rc == 0
    lines = [line for line in out.splitlines() if "FID" in line]
    assert lines == ["  FID: unavailable (no Inception weights: pass --fid-weights PATH)"]


@pytest.mark.parametrize("content, message", [
    (None, "FID Inception weights not found"),
    (b"garbage", "is not a readable safetensors file"),
])
def test_report_with_a_bad_weights_file_is_one_line(result_file, tmp_path, capsys, content, message):
    path = tmp_path / "w.safetensors"
    if content is not None:
        path.write_bytes(content)
    rc, out, err = run_cli(capsys, "report", result_file[0], "--no-lpips", "--fid-weights", path)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in err
    assert "PSNR" not in out  # refused before any metric is computed


def _closed_form_fid(f1, f2):
    """FID via tr (S1 S2)^(1/2) = nuclear norm of X1c X2c^T / sqrt((n1-1)(n2-1)) for centred
    features X: exact for low-rank covariances, and independent of scipy's sqrtm."""
    c1, c2 = f1 - f1.mean(0), f2 - f2.mean(0)
    tr_root = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / np.sqrt((len(f1) - 1) * (len(f2) - 1))
    d = f1.mean(0) - f2.mean(0)
    return d @ d + np.trace(np.cov(f1, rowvar=False)) + np.trace(np.cov(f2, rowvar=False)) - 2 * tr_root


def test_report_prints_fid_and_the_number_of_images(result_file, weights_file, variables, capsys, monkeypatch):
    """The line, with the Fréchet distance stubbed (its 2048 x 2048 root is the slow test's)."""
    import diffprior.fid as fid_module

    seen = []
    monkeypatch.setattr(fid_module, "frechet_distance", lambda *a: seen.append(a) or 3.25)
    rc, out, err = run_cli(capsys, "report", result_file[0], "--no-lpips", "--fid-weights", weights_file)
    assert rc == 0 and len(seen) == 1 and not err
    line = next(line for line in out.splitlines() if "FID" in line)
    assert line == ("  FID 3.2500 over N = 4 images: reconstructions vs ground truth (a weak statistic on fewer "
                    "than 2048 images: biased upwards, compare only at equal N)")


@pytest.mark.slow
def test_report_fid_value(result_file, weights_file, variables, capsys):
    """The FID that the report prints, against a closed form that needs no matrix root."""
    path, gt, rec = result_file
    rc, out, err = run_cli(capsys, "report", path, "--no-lpips", "--fid-weights", weights_file)
    assert rc == 0 and not err  # scipy's warning about the singular product is not shown
    line = next(line for line in out.splitlines() if "FID" in line)
    assert line.startswith("  FID ") and "over N = 4 images" in line
    value = float(line.split()[1])
    expected = _closed_form_fid(inception_features(gt, variables, batch_size=BATCH),
                                inception_features(np.clip(rec, 0, 1), variables, batch_size=BATCH))
    print(f"report FID {value} vs closed form {expected}")
    assert value == pytest.approx(expected, rel=1e-3, abs=1e-3)
    assert value > 0.01
