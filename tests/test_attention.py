"""The hand-written attention gradient equals JAX's derivative of the einsums."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffprior.models.layers import attend, scaled_dot_product


def _plain(q, k, v, scale):
    return jnp.einsum("nhqk,nhkd->nhqd", jax.nn.softmax(jnp.einsum("nhqd,nhkd->nhqk", q, k) * scale, -1), v)


@pytest.mark.parametrize("lq,lk", [(7, 4), (4, 9)])
def test_attention_value_and_gradient_match_the_einsum_derivative(lq, lk):
    ks = jax.random.split(jax.random.PRNGKey(3), 4)
    q, k, v = (jax.random.normal(kk, (2, 3, n, 5)) for kk, n in zip(ks, (lq, lk, lk)))
    g = jax.random.normal(ks[3], (2, 3, lq, 5))
    scale = 1 / math.sqrt(5)
    np.testing.assert_allclose(attend(q, k, v, scale), _plain(q, k, v, scale), rtol=1e-5, atol=1e-6)
    got = jax.vjp(lambda *a: attend(*a, scale), q, k, v)[1](g)
    want = jax.vjp(lambda *a: _plain(*a, scale), q, k, v)[1](g)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_multi_head_wrapper_with_and_without_a_mask_agree():
    ks = jax.random.split(jax.random.PRNGKey(4), 3)
    q, k, v = (jax.random.normal(kk, (2, 6, 8)) for kk in ks)
    no_mask = scaled_dot_product(q, k, v, heads=2)
    zero_mask = scaled_dot_product(q, k, v, heads=2, mask=jnp.zeros((1, 1, 6, 6)))
    np.testing.assert_allclose(no_mask, zero_mask, rtol=1e-5, atol=1e-6)
