"""operators.Select: each sample of one batch measured by an operator of its own choice."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import operators as op
from diffprior.tasks import TASKS

N, IMAGE = 6, (16, 16, 3)
SHAPE = (N,) + IMAGE
WHICH = np.array([0, 1, 2, 3, 0, 1])


def _ops(seed: int):
    """Per-image 4x bicubic SR, per-sample motion blur and free-form masks, per-image 2x average."""
    key = jax.random.PRNGKey(seed)
    return [
        TASKS["sr4"].build_batch(IMAGE, key, N),
        TASKS["motion-deblur"].build_batch(IMAGE, jax.random.fold_in(key, 1), N),
        TASKS["inpaint-freeform"].build_batch(IMAGE, jax.random.fold_in(key, 2), N),
        op.Downsample(IMAGE, 2),
    ]


@pytest.fixture(scope="module")
def ops():
    return _ops(0)


@pytest.fixture(scope="module")
def S(ops):
    return op.Select(SHAPE, ops, WHICH)


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _own(A, n):
    """Sample n's own single-image operator (A itself if it acts on one image)."""
    return A.sample(n) if A.batched else A


def test_ops_cover_both_kinds(ops, S):
    assert [A.batched for A in ops] == [False, True, True, False]
    assert S.output_shape == (N, 16 * 16 * 3)
    assert S.per_sample == ("which",)
    assert S.which.dtype == np.int32


def test_forward_is_the_chosen_operator_flattened_and_padded(ops, S):
    x = _rand(SHAPE, 1)
    y = np.asarray(S(x))
    P = S.output_shape[1]
    for n in range(N):
        ref = np.asarray(_own(ops[WHICH[n]], n)(x[n])).ravel()
        np.testing.assert_allclose(y[n, :ref.size], ref, rtol=1e-5, atol=1e-6)
        assert np.all(y[n, ref.size:] == 0) and ref.size <= P
    assert np.any(y[0, :48] != 0) and np.all(y[0, 48:] == 0)  # sr4: 4 * 4 * 3 values, then padding


def _dot_test(x, y, Ax, ATy):
    lhs = np.dot(np.asarray(y, np.float64).ravel(), np.asarray(Ax, np.float64).ravel())
    rhs = np.dot(np.asarray(ATy, np.float64).ravel(), np.asarray(x, np.float64).ravel())
    assert abs(lhs - rhs) <= 1e-5 * max(abs(lhs), abs(rhs))


def test_adjoint_is_exact_eager_and_jitted(S):
    x, y = _rand(S.input_shape, 2), _rand(S.output_shape, 3)
    _dot_test(x, y, S(x), S.adj(y))
    Ax, ATy = jax.jit(lambda A, x, y: (A(x), A.adj(y)))(S, x, y)
    _dot_test(x, y, Ax, ATy)


def test_adjoint_per_sample_is_the_chosen_adjoint_of_the_cropped_measurement(ops, S):
    y = _rand(S.output_shape, 4)
    x = np.asarray(S.adj(y))
    for n in range(N):
        A = _own(ops[WHICH[n]], n)
        yn = y[n, :int(np.prod(A.output_shape))].reshape(A.output_shape)
        np.testing.assert_allclose(x[n], np.asarray(A.adj(yn)), rtol=1e-5, atol=1e-6)


def test_pytree_jit_matches_eager_and_new_choices_reuse_the_program(S):
    traces = []

    @jax.jit
    def apply(A, x, y):
        traces.append(1)
        return A(x), A.adj(y)

    x, y = _rand(S.input_shape, 5), _rand(S.output_shape, 6)
    for A in (S, op.Select(SHAPE, _ops(7), np.array([3, 2, 1, 0, 3, 2]))):
        Ax, ATy = apply(A, x, y)
        np.testing.assert_allclose(np.asarray(Ax), np.asarray(A(x)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(ATy), np.asarray(A.adj(y)), rtol=1e-5, atol=1e-6)
    assert len(traces) == 1, "a Select with other which and masks of the same shapes recompiled"
    leaves, treedef = jax.tree_util.tree_flatten(S)
    assert any(leaf is S.which for leaf in leaves) and len(leaves) == 3  # which, kernels, masks
    R = jax.tree_util.tree_unflatten(treedef, leaves)
    assert R.output_shape == S.output_shape
    np.testing.assert_allclose(np.asarray(R(x)), np.asarray(S(x)), rtol=1e-6)


def test_take_and_sample(ops, S):
    x = _rand(SHAPE, 8)
    y = np.asarray(S(x))
    T = S.take([4, 1])
    assert T.input_shape == (2,) + IMAGE and T.output_shape == (2, S.output_shape[1])
    assert T.which.tolist() == [0, 1]
    assert T.ops[0] is ops[0] and T.ops[1].kernel.shape[0] == 2
    np.testing.assert_allclose(np.asarray(T(x[[4, 1]])), y[[4, 1]], rtol=1e-5, atol=1e-6)
    for i in (1, 2, 3):
        Si = S.sample(i)
        assert isinstance(Si, op.Select) and Si.input_shape == (1,) + IMAGE
        np.testing.assert_allclose(np.asarray(Si(x[i:i + 1]))[0], y[i], rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError, match="out of range"):
        S.take([N])


def test_bad_arguments(ops):
    with pytest.raises(ValueError, match=r"batched input_shape \(N, H, W, C\)"):
        op.Select(IMAGE, [ops[0]], [0])
    with pytest.raises(TypeError, match="non-empty sequence"):
        op.Select(SHAPE, [], WHICH)
    with pytest.raises(TypeError, match="non-empty sequence"):
        op.Select(SHAPE, ops[0], WHICH)
    with pytest.raises(TypeError, match=r"ops\[1\] must be an ImageOperator; got str"):
        op.Select(SHAPE, [ops[0], "blur"], WHICH)
    with pytest.raises(ValueError, match=r"ops\[1\] \(Downsample\) acts on \(8, 8, 3\)"):
        op.Select(SHAPE, [ops[0], op.Downsample((8, 8, 3), 2)], WHICH % 2)
    with pytest.raises(ValueError, match=r"ops\[0\] \(Inpaint\) acts on \(5, 16, 16, 3\)"):
        op.Select(SHAPE, [op.Inpaint((5,) + IMAGE, np.ones((5, 16, 16)))], np.zeros(N, int))
    with pytest.raises(ValueError, match=r"shape \(N,\) = \(6,\).*got \(5,\)"):
        op.Select(SHAPE, ops, WHICH[:5])
    with pytest.raises(ValueError, match=r"shape \(N,\) = \(6,\).*got \(6, 1\)"):
        op.Select(SHAPE, ops, WHICH[:, None])
    with pytest.raises(ValueError, match=r"in range \[0, 4\)"):
        op.Select(SHAPE, ops, [0, 1, 2, 3, 4, 0])
    with pytest.raises(ValueError, match=r"in range \[0, 4\)"):
        op.Select(SHAPE, ops, [0, 1, 2, 3, -1, 0])
    with pytest.raises(ValueError, match="integer array; got dtype float"):
        op.Select(SHAPE, ops, WHICH.astype(float))
    with pytest.raises(ValueError, match="integer array; got dtype bool"):
        op.Select(SHAPE, ops[:2], WHICH % 2 == 1)


def test_not_serialisable(S):
    assert "Select" not in op.OPERATOR_CLASSES
    with pytest.raises(TypeError, match="describe"):
        op.describe(S)
