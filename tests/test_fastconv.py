"""The convolution with the scan-friendly input gradient equals lax's, value and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from diffprior.models import fastconv
from diffprior.models.fastconv import conv_general_dilated

DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("hw,k,stride,pad", [((9, 8), 3, 1, ((1, 1), (1, 1))), ((9, 8), 3, 2, ((1, 1), (1, 1))),
                                             ((8, 7), 3, 2, ((0, 1), (0, 1))), ((6, 6), 1, 1, ((0, 0), (0, 0))),
                                             ((7, 10), 4, 3, ((2, 0), (1, 2)))])
@pytest.mark.parametrize("c_out", [5, 600])  # 600 output channels: the matrix-product form
def test_value_and_both_gradients_equal_lax(hw, k, stride, pad, c_out):
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (2, *hw, 3))
    w = jax.random.normal(kw, (k, k, 3, c_out))

    def ours(x, w):
        return conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=lax.ConvDimensionNumbers(
            (0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2)))

    def ref(x, w):
        return lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=DN)

    y, y_ref = ours(x, w), ref(x, w)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
    g = jax.random.normal(kg, y.shape)
    gx, gw = jax.vjp(ours, x, w)[1](g)
    gx_ref, gw_ref = jax.vjp(ref, x, w)[1](g)
    for got, want in ((gx, gx_ref), (gw, gw_ref)):  # sums of 9 x 600 terms: rounding grows with the scale
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * float(np.abs(want).max()) + 1e-5)


def test_other_convolutions_are_handed_to_lax_unchanged():
    x = jax.random.normal(jax.random.PRNGKey(1), (1, 6, 6, 4))
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 3, 2, 4))
    got = conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
    want = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_second_order_reverse_gradient_matches():
    x = jax.random.normal(jax.random.PRNGKey(3), (1, 5, 5, 2))
    w = jax.random.normal(jax.random.PRNGKey(4), (3, 3, 2, 2))

    def f(conv):
        return lambda x: jnp.sum(jnp.tanh(conv(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN)) ** 2)

    hv = jax.grad(lambda x: jnp.sum(jax.grad(f(conv_general_dilated))(x) ** 2))(x)
    hv_ref = jax.grad(lambda x: jnp.sum(jax.grad(f(lax.conv_general_dilated))(x) ** 2))(x)
    np.testing.assert_allclose(hv, hv_ref, rtol=1e-4, atol=1e-5)


def test_environment_variable_restores_jax_own_gradient(monkeypatch):
    x = jnp.ones((1, 4, 4, 2))
    w = jnp.ones((3, 3, 2, 2))

    def program():
        return str(jax.make_jaxpr(lambda x: conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                                  dimension_numbers=DN))(x))

    assert "custom_vjp" in program()
    monkeypatch.setenv("DIFFPRIOR_CONV_GRAD", "lax")
    assert "custom_vjp" not in program()


@pytest.mark.parametrize("hw,k,stride,pad", [((9, 8), 3, 1, ((1, 1), (1, 1))), ((8, 7), 3, 2, ((0, 1), (0, 1))),
                                             ((7, 10), 4, 3, ((2, 0), (1, 2)))])
def test_matrix_product_form_equals_the_flipped_kernel_form(hw, k, stride, pad):
    w = jax.random.normal(jax.random.PRNGKey(5), (k, k, 4, 6))
    x = jnp.zeros((1, *hw, 4))
    y = lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=DN)
    g = jax.random.normal(jax.random.PRNGKey(6), y.shape)
    args = (g, w, hw, (stride, stride), pad)
    np.testing.assert_allclose(fastconv.input_gradient_gemm(*args), fastconv.input_gradient(*args),
                               rtol=1e-5, atol=1e-5)


def test_which_form_by_shape():
    assert fastconv._use_gemm((1, 8, 8, 1280))  # the UNet's 8x8 level at 256 px
    assert not fastconv._use_gemm((1, 32, 32, 320))
    assert not fastconv._use_gemm((8, 8, 8, 1280))  # a batch brings back the convolution


def test_late_kernel_is_exact_and_keeps_a_bad_cotangent_local():
    w = jax.random.normal(jax.random.PRNGKey(7), (3, 3, 2, 2))
    for v in (1.5, jnp.nan, jnp.inf):
        g = jnp.full((2, 4, 4, 2), v)
        np.testing.assert_array_equal(np.asarray(fastconv._after(w, g)), np.asarray(w))
