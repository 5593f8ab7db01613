"""Text-to-image DDIM sampling (``diffprior.sampling.sample``) on the tiny v1 fixture."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from diffprior.prior import LatentDiffusionPrior
from diffprior.sampling import sample

V1 = Path(__file__).parent / "fixtures" / "sd_tiny" / "v1"
STEPS = 4  # the fixture's pipeline run uses 4 steps: every call below shares one compilation


@pytest.fixture(scope="module")
def prior():
    return LatentDiffusionPrior.from_pretrained(V1)


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(V1 / "reference.npz"))


def test_runs_end_to_end_and_is_deterministic(prior):
    prompts = ["a photo of a cat", "The dog!"]
    a = sample(prior, prompts, jax.random.PRNGKey(3), num_steps=STEPS, guidance_scale=5.0)
    b = sample(prior, prompts, jax.random.PRNGKey(3), num_steps=STEPS, guidance_scale=5.0)
    c = sample(prior, prompts, jax.random.PRNGKey(4), num_steps=STEPS, guidance_scale=5.0)
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.float32
    assert np.all(np.isfinite(a)) and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)  # same key, same images, bit for bit
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3


def test_stochastic_eta_is_deterministic_per_key(prior):
    kw = dict(num_steps=STEPS, guidance_scale=5.0, eta=1.0)
    prompts = ["a photo of a cat", ""]
    a = sample(prior, prompts, jax.random.PRNGKey(0), **kw)
    b = sample(prior, prompts, jax.random.PRNGKey(0), **kw)
    np.testing.assert_array_equal(a, b)
    z = np.zeros((2, 8, 8, 4), np.float32)  # same start, different step noise -> different images
    c = sample(prior, prompts, jax.random.PRNGKey(1), latents=z, **kw)
    d = sample(prior, prompts, jax.random.PRNGKey(2), latents=z, **kw)
    assert np.abs(np.asarray(c) - np.asarray(d)).max() > 1e-4


def test_matches_diffusers_pipeline(prior, ref):
    """Same initial latents: our sampler reproduces ``StableDiffusionPipeline`` + ``DDIMScheduler``."""
    latents = np.transpose(ref["pipe_latents"], (0, 2, 3, 1))
    n = latents.shape[0]
    assert int(ref["pipe_steps"]) == STEPS
    img = sample(prior, [str(p) for p in ref["prompts"][:n]], jax.random.PRNGKey(0), num_steps=STEPS,
                 guidance_scale=float(ref["pipe_guidance"]), latents=latents)
    np.testing.assert_allclose(img, ref["pipe_images"], rtol=0, atol=1e-4)


def test_bad_arguments(prior):
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="num_steps"):
        sample(prior, "x", key, num_steps=0)
    with pytest.raises(ValueError, match="eta"):
        sample(prior, "x", key, eta=2.0)
    with pytest.raises(ValueError, match="divisible"):
        sample(prior, "x", key, image_size=18)
    with pytest.raises(ValueError, match="latents have shape"):
        sample(prior, "x", key, latents=np.zeros((1, 4, 4, 4)))
    with pytest.raises(TypeError):
        sample(prior, "x", key, guidance=3.0)
