"""The prior shipped inside the package: it loads with no network, fits the size budget, ships
its model card, and its fingerprint tells its weights apart.

(That the committed benchmark results are of these weights is checked by
``python benchmarks/selfcheck.py``, not here: the tests exercise the library alone.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from diffprior import bundled_path
from diffprior.prior import LatentDiffusionPrior, weights_fingerprint


def test_bundled_prior_loads_offline_and_round_trips(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    prior = LatentDiffusionPrior.bundled()
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3))
    z = prior.encode(x)
    assert z.shape == (2, 8, 8, 4)
    xr = prior.decode(z, clip=True)
    assert xr.shape == x.shape and bool(jnp.all(jnp.isfinite(xr)))
    emb = prior.embed(["a photo of a cat"])
    assert emb.shape[0] == 1 and bool(jnp.all(jnp.isfinite(emb)))


def test_bundled_prior_fits_the_size_budget():
    total = sum(f.stat().st_size for f in bundled_path().rglob("*") if f.is_file())
    assert total <= 25 * 2**20, f"{total / 2**20:.1f} MB"


def test_bundled_prior_ships_its_model_card_and_samples():
    assert (bundled_path() / "MODEL_CARD.md").is_file()
    assert (bundled_path() / "samples.png").is_file()


@pytest.mark.parametrize("part", ["unet", "vae"])
def test_fingerprint_changes_with_the_weights(tmp_path, part):
    import shutil

    shutil.copytree(bundled_path(), tmp_path / "p")
    before = weights_fingerprint(tmp_path / "p")
    f = next((tmp_path / "p" / part).glob("*.safetensors"))
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    assert weights_fingerprint(tmp_path / "p") != before
    assert len(before) == 12


def test_bundled_path_names_its_kinds():
    """``bundled_path(kind)``: the latent prior by default, the pixel prior's own folder, and a
    one-line error naming the kinds for any other."""
    assert bundled_path() == bundled_path("latent") and bundled_path().name == "cifar10-ldm"
    assert bundled_path("pixel").name == "cifar10-ddpm" and bundled_path("pixel").parent == bundled_path().parent
    with pytest.raises(ValueError, match=r"no bundled prior of kind 'ddpm'; the kinds are \['latent', 'pixel'\]"):
        bundled_path("ddpm")
    from diffprior.priors import _resolve  # what priors.load reads "bundled[:kind]" as

    assert _resolve("bundled") == _resolve("bundled:latent") == bundled_path()
    assert _resolve("bundled:pixel") == bundled_path("pixel")
