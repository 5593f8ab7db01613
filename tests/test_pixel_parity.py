"""The pixel-space prior: parity of our Flax ``UNet2DModel`` with diffusers, and the prior's behaviour.

The fixtures in ``tests/fixtures/ddpm_tiny/{attn,cifar,odd}`` are tiny random diffusers
``UNet2DModel`` folders with reference outputs on fixed inputs in ``reference.npz`` (NCHW);
``tests/fixtures/make_pixel_fixtures.py`` regenerates them with torch + diffusers. This test
needs no torch.

Tolerance: max absolute error at most ``1e-4`` times the output scale ``max |ref|``, in float32.
"""

from __future__ import annotations

import json
import shutil
from functools import cached_property
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffprior import priors
from diffprior.models.config import UNet2DConfig, UnsupportedConfigError, to_diffusers_dict
from diffprior.models.convert import WeightLoadError
from diffprior.models.unet2d import UNet2DModel, param_shapes
from diffprior.prior import PriorLoadError, count_params
from diffprior.priors.pixel import PixelDiffusionPrior, schedule_from_config
from diffprior.schedule import Prediction

FIXTURES = Path(__file__).parent / "fixtures" / "ddpm_tiny"
NAMES = ("attn", "cifar", "odd")
RTOL = 1e-4

#: google/ddpm-cifar10-32's published unet configuration.
DDPM_CIFAR10_32 = {
    "_class_name": "UNet2DModel", "sample_size": 32, "in_channels": 3, "out_channels": 3,
    "block_out_channels": [128, 256, 256, 256], "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": None, "norm_num_groups": 32, "norm_eps": 1e-6, "downsample_padding": 0,
    "flip_sin_to_cos": False, "freq_shift": 1, "center_input_sample": False, "act_fn": "silu",
    "mid_block_scale_factor": 1, "time_embedding_type": "positional",
}


def nhwc(a):
    return np.transpose(np.asarray(a), (0, 2, 3, 1))


def assert_close(ours, ref, rtol=RTOL, what=""):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != reference {ref.shape}"
    err = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
    assert err <= rtol, f"{what}: relative max error {err:.3g} > {rtol:g}"


def config_of(name) -> dict:
    folder = FIXTURES / name
    return json.loads(((folder / "unet") if (folder / "unet").is_dir() else folder).joinpath("config.json").read_text())


class Case:
    """One fixture folder: the loaded prior, its reference arrays and lazily computed outputs."""

    def __init__(self, name):
        self.name = name
        self.path = FIXTURES / name
        self.ref = dict(np.load(self.path / "reference.npz"))
        self.prior = PixelDiffusionPrior.from_pretrained(self.path)

    @cached_property
    def outputs(self):
        """Raw output (integer and float timesteps), eps and x0 on the reference inputs."""
        r = self.ref

        @jax.jit
        def run(prior, z, t, tf):  # two UNet evaluations: the raw output (both timesteps at once), eps_and_x0
            n = z.shape[0]
            out = prior.model_output(jnp.concatenate([z, z]), jnp.concatenate([t.astype(jnp.float32), tf]))
            eps, x0 = prior.eps_and_x0(z, t, prior.embed([""] * n))
            return out[:n], out[n:], eps, x0

        with jax.default_matmul_precision("highest"):
            outs = run(self.prior, nhwc(r["sample"]), r["timesteps"], r["timesteps_float"])
        return dict(zip(("out", "out_float", "eps", "x0"), map(np.asarray, outs)))


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    return Case(request.param)


# ----------------------------------------------------------------------------- parity
def test_unet_parity(case):
    assert_close(case.outputs["out"], nhwc(case.ref["out"]), what=f"{case.name} UNet2DModel")
    assert_close(case.outputs["out_float"], nhwc(case.ref["out_float"]), what=f"{case.name} float timesteps")


def test_eps_and_x0_match_numpy(case):
    """``eps_and_x0`` against a float64 numpy recomputation from the stored network output."""
    r, prior = case.ref, case.prior
    z, out = nhwc(r["sample"]).astype(np.float64), nhwc(r["out"]).astype(np.float64)
    a = r["alphas_cumprod"][r["timesteps"]][:, None, None, None]
    eps = np.sqrt(a) * out + np.sqrt(1 - a) * z if prior.schedule.prediction is Prediction.V else out
    x0 = (z - np.sqrt(1 - a) * eps) / np.sqrt(a)
    assert_close(case.outputs["eps"], eps, what=f"{case.name} eps")
    assert_close(case.outputs["x0"], x0, what=f"{case.name} x0")


def test_schedule_parity(case):
    np.testing.assert_allclose(case.prior.schedule.alphas_cumprod, case.ref["alphas_cumprod"], rtol=5e-5)


def test_fixtures_use_the_options_they_are_for():
    """Guard each fixture's purpose (see make_pixel_fixtures.py)."""
    attn, cifar, odd = (config_of(n) for n in NAMES)
    assert (FIXTURES / "attn" / "unet").is_dir() and (FIXTURES / "cifar" / "config.json").is_file()
    assert "AttnDownBlock2D" in attn["down_block_types"] and "AttnUpBlock2D" in attn["up_block_types"]
    assert attn["add_attention"] and attn["mid_block_scale_factor"] != 1 and attn["attn_norm_num_groups"]
    assert all(c % attn["attention_head_dim"] for c in attn["block_out_channels"])  # narrowed projections
    assert cifar["attention_head_dim"] is None and cifar["downsample_padding"] == 0
    assert cifar["flip_sin_to_cos"] is False and cifar["freq_shift"] == 1 and len(cifar["block_out_channels"]) == 4
    assert cifar["sample_size"][0] != cifar["sample_size"][1]
    assert np.load(FIXTURES / "cifar" / "reference.npz")["sample"].shape[2:] == (16, 24)
    assert odd["add_attention"] is False and odd["center_input_sample"] and odd["layers_per_block"] == 3
    assert odd["time_embedding_dim"] and odd["mid_block_scale_factor"] != 1
    assert schedule_from_config(FIXTURES / "odd" / "scheduler" / "scheduler_config.json").prediction is Prediction.V


def test_legacy_attention_names(tmp_path):
    """Checkpoints saved by old diffusers releases name the attention projections
    query/key/value/proj_attn; they load to the same numbers."""
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "attn"
    shutil.copytree(FIXTURES / "attn", path)
    f = path / "unet" / "diffusion_pytorch_model.safetensors"
    renames = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    legacy = {}
    for k, v in load_file(str(f)).items():
        for a, b in renames.items():
            k = k.replace(a, b)
        legacy[k] = v
    assert sum(".proj_attn." in k for k in legacy) == 2 * 7  # (weight, bias) x (2 down + 4 up + 1 mid)
    save_file(legacy, str(f))
    prior = PixelDiffusionPrior.from_pretrained(path)
    r = dict(np.load(path / "reference.npz"))
    with jax.default_matmul_precision("highest"):
        out = jax.jit(lambda p, z, t: p.model_output(z, t))(prior, nhwc(r["sample"]), r["timesteps"])
    assert_close(out, nhwc(r["out"]), what="legacy-named attention")


def test_mismatched_weights_are_listed(tmp_path):
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "cifar"
    shutil.copytree(FIXTURES / "cifar", path)
    f = path / "diffusion_pytorch_model.safetensors"
    state = load_file(str(f))
    del state["conv_in.bias"]
    state["conv_out.weight"] = state["conv_out.weight"][:, :2]
    save_file(state, str(f))
    with pytest.raises(WeightLoadError) as e:
        PixelDiffusionPrior.from_pretrained(path)
    assert "missing tensor conv_in.bias" in str(e.value) and "shape mismatch for conv_out.weight" in str(e.value)


# ----------------------------------------------------------------------------- the prior
def test_prior_maps_images_and_has_no_conditioning():
    prior = PixelDiffusionPrior.from_pretrained(FIXTURES / "cifar")
    assert isinstance(prior, priors.DiffusionPrior)
    meta = prior.metadata
    assert (meta.latent, meta.conditioning, meta.image_size, meta.name) == (False, False, (16, 24), "cifar")
    assert priors.preset_table(prior).value == "imagenet"
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 24, 3))
    z = prior.encode(x)
    assert z.dtype == jnp.float32
    np.testing.assert_allclose(z, 2 * np.asarray(x) - 1, atol=1e-7)
    np.testing.assert_allclose(prior.decode(z), x, atol=1e-7)
    assert float(prior.decode(jnp.full((1, 8, 8, 3), 1.5), clip=True).max()) == 1.0
    assert prior.latent_shape((5, 16, 24, 3)) == (5, 16, 24, 3)
    assert prior.downsample_factor == 1 and prior.latent_channels == 3
    for prompts, n in (("a cat", 1), (["a", "b", "c"], 3)):
        emb = prior.embed(prompts)
        assert emb.shape == (n, 1, 1) and not np.any(np.asarray(emb))


def test_latent_shape_refuses_what_the_unet_cannot_take():
    prior = PixelDiffusionPrior.from_pretrained(FIXTURES / "cifar")  # 4 levels: multiples of 8
    with pytest.raises(ValueError, match="not divisible by 8"):
        prior.latent_shape((1, 12, 16, 3))
    with pytest.raises(ValueError, match="3-channel images, got 1"):
        prior.latent_shape((1, 16, 16, 1))
    with pytest.raises(ValueError, match="multiples of 8, got 12 x 16"):
        prior.model_output(jnp.zeros((1, 12, 16, 3)), 5)


def test_prior_for_images_pads_to_the_unet_grid():
    """``diffprior solve`` adapts images to a prior with prior_for_images: for a pixel prior the
    grid is the UNet's downsampling factor (no autoencoder)."""
    from diffprior.priors.adapt import prior_for_images

    prior = PixelDiffusionPrior.from_pretrained(FIXTURES / "cifar")
    assert prior_for_images(prior, (16, 24, 3))[0] is prior
    adapted, notes = prior_for_images(prior, (12, 20, 1))
    assert adapted.latent_shape((2, 12, 20, 1)) == (2, 16, 24, 3)
    assert "12 x 20 reflect-padded to 16 x 24" in notes[0]


def test_eps_and_x0_are_differentiable_and_ignore_emb():
    cfg = UNet2DConfig(block_out_channels=(4,), down_block_types=("AttnDownBlock2D",),
                       up_block_types=("AttnUpBlock2D",), layers_per_block=1, norm_num_groups=2,
                       attention_head_dim=2)
    unet = UNet2DModel(cfg)
    rng = np.random.default_rng(0)  # random weights without flax's initialisers (faster to build)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(0.3 * rng.standard_normal(a.shape), jnp.float32),
                                    param_shapes(unet))
    prior = PixelDiffusionPrior(params, schedule_from_config(FIXTURES / "cifar" / "scheduler_config.json"), unet)
    z = jax.random.normal(jax.random.PRNGKey(1), (1, 4, 4, 3))

    def loss(z, emb):
        eps, x0 = prior.eps_and_x0(z, 100, emb)
        return jnp.sum(x0 ** 2) + jnp.sum(eps)

    f = jax.jit(jax.value_and_grad(loss))
    v0, g = f(z, prior.embed(""))
    v1, _ = f(z, jnp.ones((1, 1, 1)))
    assert np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).max() > 0
    assert float(v0) == float(v1)


def test_load_dispatches_to_the_pixel_prior(tmp_path):
    for name in ("attn", "cifar"):  # a pipeline folder and a bare model folder
        assert isinstance(priors.load(FIXTURES / name), PixelDiffusionPrior)
    path = tmp_path / "ldm"
    shutil.copytree(FIXTURES / "attn", path)
    (path / "vqvae").mkdir()  # an autoencoder: a latent pipeline, not a pixel one
    with pytest.raises(PriorLoadError, match="not a complete diffusers-format prior"):
        priors.load(path)  # the latent loader's complaint: no vae/ text_encoder/ tokenizer/
    with pytest.raises(PriorLoadError, match="holds an autoencoder"):
        PixelDiffusionPrior.from_pretrained(path)


def test_metadata_contradicting_the_layout(tmp_path):
    path = tmp_path / "odd"
    shutil.copytree(FIXTURES / "odd", path)
    priors.write_metadata(path, priors.PriorMetadata(name="x", latent=True, conditioning=False))
    with pytest.raises(PriorLoadError, match="latent=true"):
        priors.load(path)
    priors.write_metadata(path, priors.PriorMetadata(name="x", preset_table="cifar10", image_size=(8, 8),
                                                     latent=False, conditioning=False))
    assert priors.load(path).metadata.preset_table.value == "cifar10"


# ----------------------------------------------------------------------------- architecture
def test_parameter_count_of_ddpm_cifar10_32():
    """diffusers' UNet2DModel with google/ddpm-cifar10-32's configuration has 35,746,307
    parameters (counted with diffusers 0.42.1); ours, from shapes alone, has the same."""
    model = UNet2DModel(UNet2DConfig.from_dict(DDPM_CIFAR10_32))
    shapes = param_shapes(model)
    assert all(isinstance(a, jax.ShapeDtypeStruct) for a in jax.tree_util.tree_leaves(shapes))
    assert count_params(shapes) == 35_746_307


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    cfg = UNet2DConfig.from_dict(config_of(name))
    assert UNet2DConfig.from_dict(json.loads(json.dumps(to_diffusers_dict(cfg)))) == cfg


@pytest.mark.parametrize("change, named", [
    ({"down_block_types": ["SkipDownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"]}, "SkipDownBlock2D"),
    ({"up_block_types": ["UpBlock2D", "UpBlock2D", "AttnSkipUpBlock2D", "UpBlock2D"]}, "AttnSkipUpBlock2D"),
    ({"time_embedding_type": "fourier"}, "time_embedding_type='fourier'"),
    ({"class_embed_type": "timestep"}, "class_embed_type='timestep'"),
    ({"resnet_time_scale_shift": "scale_shift"}, "resnet_time_scale_shift='scale_shift'"),
    ({"downsample_type": "resnet"}, "downsample_type='resnet'"),
    ({"norm_num_groups": 24}, "not divisible by norm_num_groups=24"),
])
def test_unsupported_config_is_refused_in_one_line(change, named):
    with pytest.raises(UnsupportedConfigError) as e:
        UNet2DConfig.from_dict({**DDPM_CIFAR10_32, **change})
    assert named in str(e.value) and "\n" not in str(e.value)


def test_unsupported_config_in_a_folder(tmp_path):
    path = tmp_path / "cifar"
    shutil.copytree(FIXTURES / "cifar", path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["down_block_types"][0] = "SkipDownBlock2D"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedConfigError, match="SkipDownBlock2D"):
        priors.load(path)


def test_unsupported_scheduler(tmp_path):
    path = tmp_path / "cifar"
    shutil.copytree(FIXTURES / "cifar", path)
    cfg = json.loads((path / "scheduler_config.json").read_text())
    (path / "scheduler_config.json").write_text(json.dumps({**cfg, "beta_schedule": "sigmoid",
                                                            "prediction_type": "sample"}))
    with pytest.raises(UnsupportedConfigError, match="beta_schedule='sigmoid'.*prediction_type='sample'"):
        PixelDiffusionPrior.from_pretrained(path)


# ----------------------------------------------------------------------------- missing files
def test_missing_files_are_named(tmp_path):
    path = tmp_path / "attn"
    shutil.copytree(FIXTURES / "attn", path)
    (path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (path / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(PriorLoadError) as e:
        PixelDiffusionPrior.from_pretrained(path)
    msg = str(e.value)
    assert "missing unet/diffusion_pytorch_model.safetensors" in msg
    assert "missing scheduler/scheduler_config.json" in msg


def test_pytorch_pickle_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "cifar"
    shutil.copytree(FIXTURES / "cifar", path)
    (path / "diffusion_pytorch_model.safetensors").unlink()
    (path / "diffusion_pytorch_model.bin").write_bytes(b"PK\x03\x04 not read")
    with pytest.raises(PriorLoadError, match="missing diffusion_pytorch_model.safetensors .*"
                                             "diffusion_pytorch_model.bin.*never unpickled"):
        priors.load(path)


def test_bare_folder_without_config(tmp_path):
    (tmp_path / "scheduler_config.json").write_text("{}")
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(PriorLoadError, match="missing config.json"):
        PixelDiffusionPrior.from_pretrained(tmp_path)


def test_bare_pixel_folders_have_their_own_fingerprints(tmp_path):
    """A bare model folder (config and weights at the top, no unet/) is identified by its own
    files: two such folders differ, and changing the weights changes both fingerprints."""
    from diffprior.commands.solve import prior_fingerprint
    from diffprior.prior import weights_fingerprint

    folder = tmp_path / "cifar"
    shutil.copytree(FIXTURES / "cifar", folder)
    other = FIXTURES / "attn"  # a pipeline folder (unet/ + scheduler/)
    assert prior_fingerprint(folder) != prior_fingerprint(other)
    assert weights_fingerprint(folder) != weights_fingerprint(other)
    before = prior_fingerprint(folder), weights_fingerprint(folder)
    w = folder / "diffusion_pytorch_model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF  # the last byte of the last tensor
    w.write_bytes(bytes(data))
    after = prior_fingerprint(folder), weights_fingerprint(folder)
    assert before[0] != after[0] and before[1] != after[1]
