"""ImageAdapter: grayscale images into an RGB prior, and sizes off the autoencoder's grid."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_tiled import LocalPrior

import operators
from diffprior.priors.adapt import ImageAdapter, adapter_for
from diffprior.schedule import Schedule


@pytest.fixture(scope="module")
def local():
    return LocalPrior(Schedule.create())


def test_channel_map_is_replicate_then_average_and_its_adjoint_is_exact(local):
    a = ImageAdapter(local, channels=1, multiple=2)
    g = jax.random.uniform(jax.random.PRNGKey(0), (2, 6, 4, 1))
    rgb = a.to_prior(g)
    assert rgb.shape == (2, 6, 4, 3) and bool(jnp.all(rgb == g))
    np.testing.assert_allclose(np.asarray(a.from_prior(rgb, (6, 4))), np.asarray(g))  # R^+ R = I
    # R^T = 3 R^+: <R g, x> = <g, R^T x>
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 4, 3))
    lhs = float(jnp.vdot(a.to_prior(g), x))
    rhs = float(jnp.vdot(g, 3 * a.from_prior(x, (6, 4))))
    assert abs(lhs - rhs) < 1e-4 * abs(lhs)
    assert a.decode(a.encode(g)).shape == g.shape


def test_off_grid_sizes_are_reflect_padded_and_cropped_back(local):
    a = adapter_for(local, (7, 5, 3), multiple=4)
    assert isinstance(a, ImageAdapter) and a.image_hw == (7, 5)
    x = jax.random.uniform(jax.random.PRNGKey(2), (1, 7, 5, 3))
    p = a.to_prior(x)
    assert p.shape == (1, 8, 8, 3)
    np.testing.assert_array_equal(np.asarray(p[:, 7, :5]), np.asarray(x[:, 5]))  # row 5 reflected about row 6
    z = a.encode(x)
    assert z.shape == (1, 4, 4, 3) and a.decode(z).shape == (1, 7, 5, 3)
    assert adapter_for(local, (8, 8, 3), multiple=4) is local  # nothing to adapt


def test_bad_shapes_are_refused_naming_the_values(local):
    with pytest.raises(ValueError, match="2 channels cannot go into a prior of 3"):
        ImageAdapter(local, channels=2)
    with pytest.raises(ValueError, match="3 x 9 pixels is smaller than the prior's grid of 4"):
        adapter_for(local, (3, 9, 1), multiple=4)


def test_grayscale_problem_solved_with_an_rgb_prior(tiny_prior):
    """LDPS on a 1-channel blur problem of an off-grid size with the tiny RGB prior."""
    from diffprior.solvers import LDPS, LDPSConfig

    x = jax.random.uniform(jax.random.PRNGKey(3), (2, 15, 13, 1))
    A = operators.Blur((15, 13, 1), jnp.ones((3, 3)) / 9)
    y = jax.vmap(A)(x)
    prior = adapter_for(tiny_prior, (15, 13, 1), multiple=4)
    s = LDPS(y=y, A=A, prior=prior, key=jax.random.PRNGKey(0), num_steps=2, config=LDPSConfig(step_size=0.1))
    out = s.solve()
    assert out.shape == (2, 15, 13, 1) and bool(jnp.all(jnp.isfinite(out)))
