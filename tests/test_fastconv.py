"""The convolution with the scan-friendly input gradient equals lax's, value and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from diffprior.models.fastconv import conv_general_dilated

DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("hw,k,stride,pad", [((9, 8), 3, 1, ((1, 1), (1, 1))), ((9, 8), 3, 2, ((1, 1), (1, 1))),
                                             ((8, 7), 3, 2, ((0, 1), (0, 1))), ((6, 6), 1, 1, ((0, 0), (0, 0))),
                                             ((7, 10), 4, 3, ((2, 0), (1, 2)))])
def test_value_and_both_gradients_equal_lax(hw, k, stride, pad):
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (2, *hw, 3))
    w = jax.random.normal(kw, (k, k, 3, 5))

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
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=1e-5)


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
