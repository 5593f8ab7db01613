"""``diffprior.priors``: the prior protocol, the loader's layout dispatch, and the prior's own
metadata file (``diffprior.json``), which decides the solver presets instead of the folder's path."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from diffprior import bundled_path, priors
from diffprior.prior import LatentDiffusionPrior, PriorLoadError
from diffprior.priors import DiffusionPrior, PriorMetadata, preset_table, read_metadata, write_metadata
from diffprior.solvers import Dataset, LatentPrior
from diffprior.solvers.common import check_prior

V1 = Path(__file__).parent / "fixtures" / "sd_tiny" / "v1"  # diffusers layout, no diffprior.json


@pytest.fixture(scope="module")
def bundled_prior():
    return priors.load()


@pytest.fixture
def bundled_copy(tmp_path):
    path = tmp_path / "my-copy"
    shutil.copytree(bundled_path(), path)
    return path


# ----------------------------------------------------------------------------- the bundled prior
def test_bundled_prior_loads_and_says_cifar10(bundled_prior):
    assert isinstance(bundled_prior, LatentDiffusionPrior)
    meta = bundled_prior.metadata
    assert meta == PriorMetadata(name="cifar10-ldm", preset_table=Dataset.CIFAR10, image_size=(32, 32))
    assert meta.latent and meta.conditioning
    assert preset_table(bundled_prior) is Dataset.CIFAR10
    assert preset_table(meta) is Dataset.CIFAR10
    assert priors.load("bundled").metadata == meta


def test_protocol_conformance(bundled_prior, tiny_prior):
    assert isinstance(bundled_prior, DiffusionPrior)
    assert isinstance(tiny_prior, DiffusionPrior)
    assert LatentPrior is DiffusionPrior  # the former name, still importable from diffprior.solvers
    check_prior(bundled_prior)
    assert not isinstance(object(), DiffusionPrior)
    with pytest.raises(TypeError, match="DiffusionPrior protocol"):
        check_prior(object())


# ----------------------------------------------------------------------------- presets follow the metadata
def test_copy_of_bundled_prior_keeps_its_presets(bundled_copy):
    """The defect: the presets were chosen by comparing the path with the bundled folder."""
    assert preset_table(bundled_copy) is Dataset.CIFAR10
    assert preset_table(None) is Dataset.CIFAR10  # the bundled folder itself
    prior = priors.load(bundled_copy)
    assert prior.metadata.preset_table is Dataset.CIFAR10 and prior.metadata.name == "cifar10-ldm"
    assert preset_table(prior) is Dataset.CIFAR10


def test_copy_without_metadata_gets_the_paper_presets(bundled_copy):
    (bundled_copy / "diffprior.json").unlink()
    meta = read_metadata(bundled_copy)
    assert meta == PriorMetadata(name="my-copy")
    assert meta.preset_table is None
    assert preset_table(bundled_copy) is Dataset.IMAGENET
    assert preset_table(bundled_copy) is Dataset.IMAGENET


def test_folder_without_metadata_loads_with_defaults():
    prior = priors.load(V1)
    assert prior.metadata.name == "v1" and prior.metadata.preset_table is None
    assert prior.metadata.image_size == (16, 16)  # UNet sample size x VAE factor
    assert preset_table(prior) is Dataset.IMAGENET


def test_objects_without_metadata_get_the_paper_presets(tiny_prior):
    assert preset_table(object()) is Dataset.IMAGENET
    assert preset_table(tiny_prior) is Dataset.IMAGENET  # default metadata: no table


# ----------------------------------------------------------------------------- the metadata file
def test_metadata_round_trip(tmp_path):
    meta = PriorMetadata(name="x", preset_table="ffhq", image_size=[64, 48], latent=True, conditioning=False)
    assert meta.preset_table is Dataset.FFHQ and meta.image_size == (64, 48)
    file = write_metadata(tmp_path, meta)
    assert file == tmp_path / "diffprior.json"
    data = json.loads(file.read_text())
    assert data == {"format": 1, "name": "x", "preset_table": "ffhq", "image_size": [64, 48], "latent": True,
                    "conditioning": False}
    assert read_metadata(tmp_path) == meta
    write_metadata(tmp_path, preset_table=None)
    assert read_metadata(tmp_path) == PriorMetadata(name=tmp_path.name)
    assert hash(meta) == hash(dataclasses.replace(meta))


def test_bundled_metadata_file_is_canonical():
    file = bundled_path() / "diffprior.json"
    assert json.loads(file.read_text()) == read_metadata(bundled_path()).to_dict()


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ('["cifar10"]', "must be a JSON object"),
    ('{"format": 1, "preset_table": "mnist"}', "unknown preset_table 'mnist'"),
    ('{"format": 2}', "format 2 is newer"),
    ('{"image_size": [32]}', "image_size must be"),
    ('{"latent": "yes"}', "latent must be true or false"),
])
def test_bad_metadata_names_the_file(tmp_path, text, match):
    (tmp_path / "diffprior.json").write_text(text)
    with pytest.raises(PriorLoadError, match=match) as e:
        read_metadata(tmp_path)
    assert str(tmp_path / "diffprior.json") in str(e.value)


def test_bad_metadata_fails_the_load(bundled_copy):
    (bundled_copy / "diffprior.json").write_text('{"preset_table": "cifar100"}')
    with pytest.raises(PriorLoadError, match="unknown preset_table") as e:
        priors.load(bundled_copy)
    assert str(bundled_copy / "diffprior.json") in str(e.value)
    with pytest.raises(PriorLoadError):
        preset_table(bundled_copy)


def test_metadata_contradicting_the_layout(bundled_copy):
    write_metadata(bundled_copy, read_metadata(bundled_copy), latent=False)
    with pytest.raises(PriorLoadError, match="latent=false"):
        priors.load(bundled_copy)


# ----------------------------------------------------------------------------- layout dispatch
def test_unknown_layout(tmp_path):
    (tmp_path / "weights.ckpt").write_bytes(b"")
    (tmp_path / "notes").mkdir()
    with pytest.raises(PriorLoadError) as e:
        priors.load(tmp_path)
    msg = str(e.value)
    for expected in ("weights.ckpt", "notes/", "diffusers latent-diffusion pipeline", "UNet2DModel"):
        assert expected in msg, f"{expected!r} not in:\n{msg}"


def test_missing_folder():
    with pytest.raises(PriorLoadError, match="is not a directory"):
        priors.load("/nonexistent/prior")


def test_incomplete_pixel_folder_goes_to_the_pixel_loader(tmp_path):
    """A DDPM pipeline folder is loaded by PixelDiffusionPrior (tests/test_pixel_parity.py has
    the complete ones); an incomplete one is refused naming what is missing."""
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(PriorLoadError, match="not a complete pixel-space diffusers folder") as e:
        priors.load(tmp_path)
    assert "missing unet/diffusion_pytorch_model.safetensors" in str(e.value)
    assert "missing scheduler/scheduler_config.json" in str(e.value)


def test_incomplete_diffusers_folder_goes_to_the_diffusers_loader(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(PriorLoadError, match="not a complete diffusers-format prior"):
        priors.load(tmp_path)


# ----------------------------------------------------------------------------- pytree / jit
def test_metadata_is_static_and_jit_caches(tiny_prior):
    assert tiny_prior.metadata == PriorMetadata()
    leaves = jax.tree_util.tree_leaves(tiny_prior)
    assert not any(isinstance(leaf, PriorMetadata) for leaf in leaves)
    traces = []

    @jax.jit
    def f(prior, z, emb):
        traces.append(1)
        return prior.eps_and_x0(z, 500, emb)[1]

    z = jnp.zeros((1, 8, 8, 4))
    emb = tiny_prior.embed(["a"])
    out = f(tiny_prior, z, emb)
    assert out.shape == z.shape and bool(jnp.all(jnp.isfinite(out)))
    same = tiny_prior.replace(metadata=PriorMetadata(name="unnamed"))  # equal metadata: cache hit
    f(same, z, emb)
    assert len(traces) == 1
    renamed = tiny_prior.replace(metadata=PriorMetadata(name="other", preset_table="cifar10"))
    f(renamed, z, emb)  # static field changed: retraced, still works
    assert len(traces) == 2
