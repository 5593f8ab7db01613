"""The upsampling convolution computed on the low-resolution map equals the direct form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from diffprior.models.upsample import upsample_conv, use_phases


def direct(x, w):
    u = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return lax.conv_general_dilated(u, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("shape,c_out", [((2, 5, 7, 3), 4), ((1, 1, 1, 2), 3), ((1, 2, 2, 3), 64)])
def test_value_and_gradients_equal_the_direct_form(shape, c_out):
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, shape)
    w = jax.random.normal(kw, (3, 3, shape[-1], c_out))
    y, y_ref = upsample_conv(x, w), direct(x, w)
    assert y.shape == (shape[0], 2 * shape[1], 2 * shape[2], c_out)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    g = jax.random.normal(kg, y.shape)
    for got, want in zip(jax.vjp(upsample_conv, x, w)[1](g), jax.vjp(direct, x, w)[1](g)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_which_form_by_shape():
    assert use_phases((1, 128, 128, 256), 256)  # SD's decoder at 256 px
    assert not use_phases((1, 8, 8, 1280), 1280)  # the UNet's 8x8 level


def test_refuses_other_kernel_sizes():
    with pytest.raises(ValueError, match="3x3"):
        upsample_conv(jnp.zeros((1, 2, 2, 1)), jnp.zeros((5, 5, 1, 1)))


def test_environment_variable_reaches_the_upsampling_convolutions(monkeypatch):
    x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))

    def program():  # a new function each time: traces are cached per function
        return str(jax.make_jaxpr(lambda x, w: upsample_conv(x, w))(x, w))

    assert "custom_vjp" in program()
    monkeypatch.setenv("DIFFPRIOR_CONV_GRAD", "lax")
    assert "custom_vjp" not in program()
