"""The tiled prior (diffprior.priors.tiled): window layout, blending, chunking, tiled autoencoder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from diffprior.priors.tiled import (TiledPrior, _blend, blend_normaliser, layout, linear_ramp_weights, window_starts,
                                    window_weights)
from diffprior.schedule import Schedule, tweedie


@struct.dataclass
class LocalPrior:
    """A stand-in whose every map is local (pointwise or within a factor-2 block), so tiling must
    not change anything: encode = 2x2 average pooling, decode = nearest upsampling, eps a
    pointwise function of z, t and the embedding's mean."""

    schedule: Schedule
    downsample_factor: int = struct.field(pytree_node=False, default=2)

    def encode(self, x):
        n, h, w, c = x.shape
        return x.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))

    def decode(self, z):
        return jnp.repeat(jnp.repeat(z, 2, axis=1), 2, axis=2)

    def eps_and_x0(self, z, t, emb):
        t = jnp.broadcast_to(jnp.asarray(t), (z.shape[0],))
        e = jnp.tanh(z) * (1 + t[:, None, None, None] / 1000) + emb.mean((1, 2))[:, None, None, None]
        return e, tweedie(self.schedule, z, e, t)


@pytest.fixture(scope="module")
def local():
    return LocalPrior(Schedule.create())


def test_windows_cover_the_axis_and_the_last_one_ends_at_the_border():
    assert window_starts(12, 4, 2) == (0, 2, 4, 6, 8)
    assert window_starts(11, 4, 3) == (0, 3, 6, 7)  # the last moved back, never dropped
    assert window_starts(8, 8, 4) == (0,)
    assert len(layout((12, 8), 8, 4)) == 2 * 1
    for bad, match in (((4, 8, 4), "does not fit"), ((12, 4, 5), "stride"), ((12, 4, 0), "stride")):
        with pytest.raises(ValueError, match=match):
            window_starts(*bad)


@pytest.mark.parametrize("mode", ["multidiffusion", "mixture"])
def test_blending_weights_sum_to_one_at_every_position(mode):
    shape, win, stride = (13, 10), 4, 3
    starts = layout(shape, win, stride)
    assert blend_normaliser(shape, win, stride, mode).min() > 0  # every position covered
    ones = jnp.ones((2, len(starts), win, win, 3))
    np.testing.assert_allclose(np.asarray(_blend(ones, starts, win, window_weights(win, mode), shape)), 1.0, rtol=1e-6)
    w = window_weights(win, mode)
    c = w[win // 2 - 1:win // 2 + 1, win // 2 - 1:win // 2 + 1]  # the central 2 x 2
    assert w.max() == c.max() == c.min() and (mode == "multidiffusion") == (w.min() == w.max())


def test_mixture_weights_are_the_gaussian_of_a_tenth_of_the_window():
    w = window_weights(64, "mixture")
    centre = 31.5
    sigma = 0.1 * 64
    np.testing.assert_allclose(w[0, 31], np.exp(-(centre ** 2) / (2 * sigma ** 2)) * np.exp(-(0.5 ** 2) / (2 * sigma ** 2)),
                               rtol=1e-12)


@pytest.mark.parametrize("mode", ["multidiffusion", "mixture", "none"])
def test_local_prior_is_unchanged_by_tiling_and_chunking(local, mode):
    z = jax.random.normal(jax.random.PRNGKey(0), (2, 12, 10, 4))
    emb = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 5))
    t = jnp.array([500, 20])
    want = local.eps_and_x0(z, t, emb)
    for batch in (None, 1, 5):
        got = TiledPrior(local, window=4, stride=3, mode=mode, tile_batch=batch).eps_and_x0(z, t, emb)
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)


def test_tiled_autoencoder_blends_back_the_whole_image(local):
    x = jax.random.uniform(jax.random.PRNGKey(2), (1, 24, 20, 3))
    tiled = TiledPrior(local, window=4, vae_tile=8)
    np.testing.assert_allclose(np.asarray(tiled.encode(x)), np.asarray(local.encode(x)), rtol=1e-6)
    z = local.encode(x)
    np.testing.assert_allclose(np.asarray(tiled.decode(z)), np.asarray(local.decode(z)), rtol=1e-6)
    ramp = linear_ramp_weights(8, 2)
    assert ramp.min() > 0 and ramp[4, 4] == 1.0 and ramp[0, 4] < ramp[1, 4] < ramp[2, 4]


def test_gradients_through_chunked_windows_match(local):
    z = jax.random.normal(jax.random.PRNGKey(3), (2, 8, 8, 4))
    emb = jnp.zeros((1, 3, 5))

    def loss(p, z_):
        return jnp.sum(p.eps_and_x0(z_, 300, emb)[1] ** 2)

    g_all = jax.grad(lambda z_: loss(TiledPrior(local, window=4, mode="mixture"), z_))(z)
    g_chunk = jax.grad(lambda z_: loss(TiledPrior(local, window=4, mode="mixture", tile_batch=3), z_))(z)
    np.testing.assert_allclose(np.asarray(g_chunk), np.asarray(g_all), rtol=1e-5, atol=1e-6)


def test_bad_tiling_settings_are_refused_with_the_values(local):
    with pytest.raises(ValueError, match="stride \\(8\\) is larger than the window \\(4\\)"):
        TiledPrior(local, window=4, stride=8)
    with pytest.raises(ValueError, match="tile_batch"):
        TiledPrior(local, window=4, tile_batch=0)
    with pytest.raises(ValueError, match="mode"):
        TiledPrior(local, window=4, mode="tiles")
    with pytest.raises(ValueError, match="window \\(16 latent pixels\\) is larger than the latent \\(8 x 12\\)"):
        TiledPrior(local, window=16).eps_and_x0(jnp.zeros((1, 8, 12, 4)), 10, jnp.zeros((1, 3, 5)))


def test_window_covering_the_whole_latent_equals_the_whole_evaluation(tiny_prior):
    """On the real (tiny) UNet: one window over the whole latent is the plain evaluation."""
    z = jax.random.normal(jax.random.PRNGKey(4), (2, 8, 8, 4))
    emb = tiny_prior.embed(["a", "b"])
    want = tiny_prior.eps_and_x0(z, 400, emb)
    for mode in ("multidiffusion", "mixture"):
        got = TiledPrior(tiny_prior, window=8, mode=mode).eps_and_x0(z, 400, emb)
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-5)
    tiled = TiledPrior(tiny_prior, window=4, stride=2)
    assert tiled.evaluations((8, 8)) == 9 and tiled.schedule is tiny_prior.schedule
