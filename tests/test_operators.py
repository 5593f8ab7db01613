"""Forward operators: adjoint/shape/batch/jit checks over every task of the task registry
(plus the variants no task uses), reference evaluations, serialisation and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.signal

import jax
import jax.numpy as jnp
from scico.linop import valid_adjoint

import operators as op
from diffprior.tasks import TASKS

C = 2  # channels in the registry test
N = 2  # batch size in the registry test


def _from_task(task):
    return task.size_multiple, lambda shape, key: task.build(shape, key)


#: Every operator variant the test runs through: the task registry's operators (one line
#: per task in :data:`diffprior.tasks.TASKS`) and the variants no task uses.
VARIANTS = {
    **{f"task:{name}": _from_task(t) for name, t in TASKS.items()},
    "blur_circular": (1, lambda s, k: op.Blur(s, op.gaussian_kernel(7, 1.0), "circular")),
    "sr_average_x2": (2, lambda s, k: op.Downsample(s, 2, "average")),
    "sr_bicubic_x2": (2, lambda s, k: op.Downsample(s, 2, "bicubic")),
}


def _batched(A1, n):
    """The single-image operator A1 on a batch of n (one shared parameter set)."""
    return op.from_description({**op.describe(A1), "input_shape": [n, *A1.input_shape]})


def _shapes(m: int):
    """Odd and even image sizes (H, W) that are multiples of m."""
    return {"odd": (7 * m, 5 * m), "even": (6 * m, 8 * m)}


def _rand(shape, seed=0):
    # numpy, not jax.random: threefry compiles anew for every shape (~1 s each on CPU)
    return jnp.asarray(np.random.default_rng(seed).random(shape, dtype=np.float32))


def _adjoint_error(A, x, y) -> float:
    """Relative error of <y, A x> = <A^T y, x>, computed in float64 on the host."""
    Ax, ATy = (np.asarray(v, np.float64) for v in jax.jit(lambda a, b: (A(a), A.adj(b)))(x, y))
    yAx, ATyx = np.sum(np.asarray(y, np.float64) * Ax), np.sum(ATy * np.asarray(x, np.float64))
    return abs(yAx - ATyx) / max(abs(yAx), abs(ATyx))


@pytest.mark.parametrize("size", ["odd", "even"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_registry_operator(name, size):
    """Adjoint, shape/dtype inference, batch independence and jit for every operator.

    The unbatched operator goes through scico's ``valid_adjoint`` and eager-vs-jit
    comparison; the batched one (same key, hence same kernel/mask) must equal the
    per-sample stack of the unbatched results, forward and adjoint. Eager evaluation of the
    batched operator is skipped only to save per-primitive compile time on CPU.
    """
    multiple, build = VARIANTS[name]
    H, W = _shapes(multiple)[size]
    key = jax.random.PRNGKey(3)
    A1 = build((H, W, C), key)
    AN = _batched(A1, N)
    assert AN.input_shape == (N, H, W, C)
    assert AN.output_shape == (N,) + A1.output_shape

    # Exact adjoint, scico's check: <y, A x> = <A^T y, x> to float32 precision.
    x0, y0 = _rand(A1.input_shape, 5) - 0.5, _rand(A1.output_shape, 6) - 0.5
    err = valid_adjoint(A1, A1.T, eps=None, x=x0, y=y0)
    assert float(err) < 1e-5, f"{name}: adjoint relative error {float(err):.2e}"

    # Shape / dtype inference, eager.
    x1 = _rand(A1.input_shape, 1)
    y1 = A1(x1)
    assert y1.shape == A1.output_shape and y1.dtype == A1.output_dtype
    z1 = A1.adj(y1)
    assert z1.shape == A1.input_shape and z1.dtype == A1.input_dtype
    # jit equals eager.
    yj, zj = jax.jit(lambda a, b: (A1(a), A1.adj(b)))(x1, y1)
    np.testing.assert_allclose(yj, y1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(zj, z1, rtol=1e-5, atol=1e-5)

    # Batched operator: shapes, adjoint, and independence of samples.
    xN = _rand(AN.input_shape, 2)
    vN = _rand(AN.output_shape, 3) - 0.5
    fwd_adj = jax.jit(lambda a, b: (AN(a), AN.adj(b)))
    yN, zN = fwd_adj(xN, vN)
    assert yN.shape == AN.output_shape and yN.dtype == AN.output_dtype
    assert zN.shape == AN.input_shape and zN.dtype == AN.input_dtype
    assert _adjoint_error(AN, xN, vN) < 1e-5
    np.testing.assert_allclose(yN, jnp.stack([A1(xN[i]) for i in range(N)]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        zN, jnp.stack([A1.adj(vN[i]) for i in range(N)]), rtol=1e-5, atol=1e-5
    )
    # Changing one sample leaves the other's measurement unchanged.
    yN2, _ = fwd_adj(xN.at[0].set(0.0), vN)
    np.testing.assert_array_equal(np.asarray(yN2[1]), np.asarray(yN[1]))
    assert not np.array_equal(np.asarray(yN2[0]), np.asarray(yN[0]))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_describe_roundtrip(name):
    multiple, build = VARIANTS[name]
    H, W = _shapes(multiple)["even"]
    A = _batched(build((H, W, C), jax.random.PRNGKey(5)), N)
    d = op.describe(A)
    assert d["class"] == type(A).__name__ and d["input_shape"] == [N, H, W, C]
    scalars = {k: v for k, v in d.items() if not isinstance(v, np.ndarray)}
    json.dumps(scalars)  # JSON-able
    B = op.from_description(d)
    assert type(B) is type(A) and B.shape == A.shape
    x = _rand(A.input_shape, 4)
    np.testing.assert_array_equal(np.asarray(B(x)), np.asarray(A(x)))


# ------------------------------------------------------------------ reference evaluations


def test_average_downsample_matches_block_mean():
    x = np.asarray(_rand((2, 12, 8, 3)))
    y = op.Downsample(x.shape, 4, "average")(jnp.asarray(x))
    ref = x.reshape(2, 3, 4, 2, 4, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-7)
    # A A^T = I / f^2 (the adjoint spreads each pixel uniformly over its block).
    A = op.Downsample((12, 8, 3), 4)
    v = _rand(A.output_shape, 9)
    np.testing.assert_allclose(A(A.adj(v)), v / 16, rtol=1e-6)


def test_bicubic_downsample_matches_pil_interior():
    from PIL import Image

    f, H, W = 2, 32, 24
    x = np.asarray(_rand((H, W)))
    y = op.Downsample((H, W, 1), f, op.DownsampleMethod.BICUBIC)(jnp.asarray(x[..., None]))[..., 0]
    ref = np.asarray(Image.fromarray(x, mode="F").resize((W // f, H // f), Image.BICUBIC))
    b = 2  # output pixels within 2f input pixels of the border differ (PIL truncates)
    np.testing.assert_allclose(np.asarray(y)[b:-b, b:-b], ref[b:-b, b:-b], atol=2e-6)


def test_bicubic_downsample_preserves_constants_and_enum_equals_string():
    A = op.Downsample((2, 16, 8, 3), 4, "bicubic")
    np.testing.assert_allclose(A(jnp.full(A.input_shape, 0.3)), 0.3, rtol=1e-6)
    B = op.Downsample((2, 16, 8, 3), 4, op.DownsampleMethod.BICUBIC)
    x = _rand(A.input_shape)
    np.testing.assert_array_equal(np.asarray(A(x)), np.asarray(B(x)))
    assert B.method is op.DownsampleMethod.BICUBIC


@pytest.mark.parametrize("ksize", [(5, 3), (11, 9), (13, 15)])  # direct; FFT (> 81 taps), larger than the image
def test_blur_same_matches_scipy(ksize):
    k = np.asarray(_rand(ksize, 11))
    x = np.asarray(_rand((9, 7, 2), 12))
    A = op.Blur(x.shape, k, "same")
    y = A(jnp.asarray(x))
    ref = np.stack([scipy.signal.convolve2d(x[..., c], k, mode="same") for c in range(2)], -1)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    # the adjoint is correlation with the same kernel (convolution with the flipped one)
    adj = np.stack([scipy.signal.correlate2d(x[..., c], k, mode="same") for c in range(2)], -1)
    np.testing.assert_allclose(A.adj(jnp.asarray(x)), adj, rtol=1e-5, atol=1e-5)


def test_blur_same_per_sample_large_kernels_match_scipy():
    ks = np.asarray(_rand((2, 11, 9), 21))  # > 81 taps: the FFT path, one kernel per image
    x = np.asarray(_rand((2, 10, 8, 3), 22))
    y = op.Blur(x.shape, ks, "same")(jnp.asarray(x))
    ref = np.stack([np.stack([scipy.signal.convolve2d(x[i, ..., c], ks[i], mode="same") for c in range(3)], -1)
                    for i in range(2)])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ksize", [(3, 5), (11, 13)])  # smaller and larger than the image
def test_blur_circular_matches_bruteforce(ksize):
    kh, kw = ksize
    k = np.asarray(_rand(ksize, 13))
    x = np.asarray(_rand((7, 9, 2), 14)).astype(np.float64)
    ref = np.zeros_like(x)
    for p in range(kh):
        for q in range(kw):
            ref += k[p, q] * np.roll(x, (p - kh // 2, q - kw // 2), axis=(0, 1))
    y = op.Blur(x.shape, k, op.BlurBoundary.CIRCULAR)(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_inpaint_is_mask_product_and_gram_is_consistent():
    mask = op.random_mask(jax.random.PRNGKey(0), (6, 5), 0.5)
    A = op.Inpaint((3, 6, 5, 2), mask)
    x = _rand(A.input_shape)
    np.testing.assert_array_equal(np.asarray(A(x)), np.asarray(x) * mask[None, :, :, None])
    G = A.gram_op
    assert G.shape == A.shape
    np.testing.assert_allclose(G(x), A.adj(A(x)))


def test_ct_matches_scico_xray_per_channel_and_conserves_mass():
    from scico.linop.xray import XRayTransform2D

    A = op.CT((2, 12, 10, 2), n_angles=8)
    x = _rand(A.input_shape, 6)
    y = A(x)
    ref = XRayTransform2D((12, 10), A.angles, det_count=A.det_count)
    np.testing.assert_allclose(y[1, :, :, 0], ref(x[1, :, :, 0]), rtol=1e-5, atol=1e-6)
    # Each pixel's unit mass is split between detector bins: every view sums to the image sum.
    np.testing.assert_allclose(
        y.sum(axis=2), jnp.broadcast_to(x.sum(axis=(1, 2))[:, None, :], (2, 8, 2)), rtol=1e-4
    )


def test_noise_and_simulate():
    key = jax.random.PRNGKey(0)
    y = jnp.zeros((200, 200, 1))
    n1 = op.add_noise(key, y, 0.05)
    np.testing.assert_array_equal(np.asarray(n1), np.asarray(op.add_noise(key, y, 0.05)))
    assert not np.array_equal(
        np.asarray(n1), np.asarray(op.add_noise(jax.random.PRNGKey(1), y, 0.05))
    )
    assert abs(float(jnp.std(n1)) - 0.05) < 0.002
    np.testing.assert_array_equal(np.asarray(op.add_noise(key, y + 0.5, 0.0)), 0.5)
    A = op.Downsample((8, 8, 1), 2)
    x = _rand(A.input_shape)
    np.testing.assert_array_equal(
        np.asarray(op.simulate(A, x, 0.1, key)), np.asarray(op.add_noise(key, A(x), 0.1))
    )


# ------------------------------------------------------------------ bad input


def test_wrong_input_shape_and_dtype():
    A = op.Downsample((2, 8, 8, 3), 2, "bicubic")
    with pytest.raises(ValueError, match=r"expected shape \(2, 8, 8, 3\), got \(2, 8, 6, 3\)"):
        A(jnp.zeros((2, 8, 6, 3)))
    with pytest.raises(ValueError, match=r"expected shape \(8, 8, 3\), got \(2, 8, 8, 3\)"):
        op.Blur((8, 8, 3), op.gaussian_kernel(3, 1.0))(jnp.zeros((2, 8, 8, 3)))
    with pytest.raises(TypeError, match="floating-point.*got dtype int32"):
        A(jnp.zeros((2, 8, 8, 3), jnp.int32))
    with pytest.raises(TypeError, match="complex64"):
        A(jnp.zeros((2, 8, 8, 3), jnp.complex64))
    with pytest.raises(ValueError, match=r"adjoint input: expected shape \(2, 4, 4, 3\)"):
        A.adj(jnp.zeros((2, 8, 8, 3)))
    # float64 numpy input is accepted and cast to float32
    y = A(np.ones((2, 8, 8, 3)))
    assert y.dtype == jnp.float32
    with pytest.raises(ValueError, match=r"\(H, W, C\) or \(N, H, W, C\)"):
        op.Inpaint((8, 8), np.ones((8, 8)))


def test_bad_operator_parameters():
    with pytest.raises(ValueError, match=r"factor 3 must divide the image size; got H=8, W=9"):
        op.Downsample((8, 9, 1), 3)
    with pytest.raises(ValueError, match="factor must be >= 1"):
        op.Downsample((8, 8, 1), 0)
    with pytest.raises(TypeError, match="must be an int"):
        op.Downsample((8, 8, 1), 2.0)
    with pytest.raises(ValueError, match="Unknown downsample method 'nearest'"):
        op.Downsample((8, 8, 1), 2, "nearest")
    with pytest.raises(ValueError, match=r"odd side lengths.*\(4, 4\)"):
        op.Blur((8, 8, 1), np.ones((4, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        op.Blur((8, 8, 1), np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="leading sample axis"):
        op.Blur((8, 8, 1), np.ones((3, 3, 1)))
    with pytest.raises(ValueError, match="must be 2-D"):
        op.Blur((8, 8, 1), np.ones((1, 3, 3, 1)))
    with pytest.raises(ValueError, match="Unknown blur boundary"):
        op.Blur((8, 8, 1), np.ones((3, 3)), "reflect")
    with pytest.raises(ValueError, match=r"expected shape \(H, W\) = \(8, 8\), got \(8, 7\)"):
        op.Inpaint((8, 8, 3), np.ones((8, 7)))
    with pytest.raises(ValueError, match=r"values must be in \[0, 1\]"):
        op.Inpaint((8, 8, 3), np.full((8, 8), 2.0))
    with pytest.raises(ValueError, match="n_angles"):
        op.CT((8, 8, 1), 0)
    with pytest.raises(ValueError, match="sigma must be finite and >= 0; got -0.1"):
        op.add_noise(jax.random.PRNGKey(0), jnp.zeros(3), -0.1)
    with pytest.raises(ValueError, match="sigma"):
        op.simulate(
            op.Downsample((4, 4, 1), 2), jnp.zeros((4, 4, 1)), float("nan"), jax.random.PRNGKey(0)
        )
    with pytest.raises(ValueError, match="Unknown operator class 'Radon'"):
        op.from_description({"class": "Radon", "input_shape": [4, 4, 1]})
    with pytest.raises(TypeError):
        op.from_description(
            {"class": "Downsample", "input_shape": [4, 4, 1], "factor": 2, "bogus": 1}
        )
    with pytest.raises(KeyError, match="unknown task 'sr3'"):
        from diffprior.tasks import get_task

        get_task("sr3")


@pytest.mark.parametrize("name", [n for n, t in TASKS.items() if t.random])
def test_random_tasks_draw_one_operator_per_image(name):
    """``build_batch`` gives one operator whose image i uses the draw of fold_in(key, i)."""
    task, key, shape = TASKS[name], jax.random.PRNGKey(4), (16, 16, C)
    AN = task.build_batch(shape, key, 3)
    assert AN.input_shape == (3, *shape) and AN.per_sample
    x = _rand(AN.input_shape, 7)
    y = AN(x)
    for i in range(3):
        Ai = task.build(shape, jax.random.fold_in(key, i))
        np.testing.assert_allclose(y[i], Ai(x[i]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(y[0], task.build(shape, jax.random.fold_in(key, 1))(x[0]))
    shared = task.build_batch(shape, key, 3, shared=True)
    assert shared.input_shape == shape


def test_adjoint_first_used_inside_jit():
    """scico derives adjoints lazily; a first A.adj call inside jit must not leak tracers."""
    A = op.Downsample((6, 4, 1), 2, "bicubic")
    y = _rand(A.output_shape)
    z_jit = jax.jit(lambda v: A.adj(v))(y)
    np.testing.assert_allclose(A.adj(y), z_jit, rtol=1e-6)
