"""Parity of our Flax Stable Diffusion networks with diffusers / transformers (PyTorch).

The fixtures in ``tests/fixtures/sd_tiny/{v1,v2,odd}`` are tiny random models saved by
diffusers in its folder layout, with reference outputs on fixed inputs in ``reference.npz``
(PyTorch layouts: NCHW). ``tests/fixtures/make_sd_fixtures.py`` regenerates them in an
environment with the ``reference`` extra; this test needs no torch.

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

from diffprior.prior import LatentDiffusionPrior
from diffprior.schedule import Prediction, Schedule, ddim_step, ddim_timesteps, model_output_to_eps, tweedie

FIXTURES = Path(__file__).parent / "fixtures" / "sd_tiny"
NAMES = ("v1", "v2", "odd")
RTOL = 1e-4


def nhwc(a):
    return np.transpose(np.asarray(a), (0, 2, 3, 1))


def assert_close(ours, ref, rtol=RTOL, what=""):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != reference {ref.shape}"
    err = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
    assert err <= rtol, f"{what}: relative max error {err:.3g} > {rtol:g}"


class Case:
    """One fixture folder: the loaded prior, its reference arrays and lazily computed outputs."""

    def __init__(self, name):
        self.name = name
        self.path = FIXTURES / name
        self.ref = dict(np.load(self.path / "reference.npz"))
        self.prior = LatentDiffusionPrior.from_pretrained(self.path)

    @cached_property
    def unet_outputs(self):
        """Raw UNet output, eps and x0 of the prior on the reference inputs (one compilation)."""
        r = self.ref

        @jax.jit
        def run(prior, z, t, c):
            out = prior.model_output(z, t, c)
            eps = model_output_to_eps(prior.schedule, out, z, t)
            return out, prior.eps(z, t, c), prior.x0(z, t, c), eps, tweedie(prior.schedule, z, eps, t)

        with jax.default_matmul_precision("highest"):
            outs = run(self.prior, nhwc(r["unet_sample"]), r["unet_timesteps"], r["unet_context"])
        return dict(zip(("out", "eps", "x0", "eps_inline", "x0_inline"), map(np.asarray, outs)))


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    return Case(request.param)


# ----------------------------------------------------------------------------- networks
def test_unet_parity(case):
    assert_close(case.unet_outputs["out"], nhwc(case.ref["unet_out"]), what=f"{case.name} UNet")


def test_eps_and_x0_match_numpy(case):
    """``prior.eps`` / ``prior.x0`` against a float64 numpy recomputation from the stored UNet output."""
    r, prior = case.ref, case.prior
    z, out = nhwc(r["unet_sample"]).astype(np.float64), nhwc(r["unet_out"]).astype(np.float64)
    a = r["alphas_cumprod"][r["unet_timesteps"]][:, None, None, None]
    if prior.schedule.prediction is Prediction.V:
        eps = np.sqrt(a) * out + np.sqrt(1 - a) * z
        x0_diffusers = np.sqrt(a) * z - np.sqrt(1 - a) * out  # diffusers' DDIM v-prediction formula
    else:
        eps = out
        x0_diffusers = (z - np.sqrt(1 - a) * out) / np.sqrt(a)
    x0 = (z - np.sqrt(1 - a) * eps) / np.sqrt(a)
    np.testing.assert_allclose(x0, x0_diffusers, rtol=1e-9, atol=1e-9)
    outs = case.unet_outputs
    assert_close(outs["eps"], eps, what=f"{case.name} eps")
    assert_close(outs["x0"], x0, what=f"{case.name} x0")
    np.testing.assert_allclose(outs["eps"], outs["eps_inline"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(outs["x0"], outs["x0_inline"], rtol=0, atol=1e-5)


def test_vae_encode_parity(case):
    r, prior = case.ref, case.prior
    x = (nhwc(r["vae_image"]) + 1.0) / 2.0  # the prior takes [0, 1] images
    with jax.default_matmul_precision("highest"):
        (mean, logvar), scaled = jax.jit(lambda p, x: (p.encode_moments(x), p.encode(x)))(prior, x)
    assert_close(mean, nhwc(r["vae_mean"]), what=f"{case.name} VAE mean")
    assert_close(logvar, nhwc(r["vae_logvar"]), what=f"{case.name} VAE logvar")
    assert_close(scaled, nhwc(r["vae_mean"]) * prior.scaling_factor, what=f"{case.name} encode (scaled)")


def test_vae_decode_parity(case):
    r, prior = case.ref, case.prior
    with jax.default_matmul_precision("highest"):
        img = jax.jit(lambda p, z: p.decode(z))(prior, nhwc(r["vae_latent"]) * prior.scaling_factor)
    assert_close(2.0 * np.asarray(img) - 1.0, nhwc(r["vae_decoded"]), what=f"{case.name} VAE decode")


def test_tokenizer_ids(case):
    ids = case.prior.tokenize([str(p) for p in case.ref["prompts"]])
    np.testing.assert_array_equal(ids, case.ref["token_ids"])


def test_clip_parity(case):
    r, prior = case.ref, case.prior
    with jax.default_matmul_precision("highest"):
        hidden = jax.jit(lambda p, ids: p.encode_tokens(ids))(prior, r["token_ids"])
    assert_close(hidden, r["clip_hidden"], what=f"{case.name} CLIP last_hidden_state")


# ----------------------------------------------------------------------------- schedule
def test_schedule_parity(case):
    """Betas, DDIM timesteps and one DDIM update against diffusers' ``DDIMScheduler``."""
    r, sched = case.ref, case.prior.schedule
    # diffusers accumulates the product in float32 (ours in float64): the cosine schedule's
    # last values (~1e-8) differ by ~1e-5 relative.
    np.testing.assert_allclose(sched.alphas_cumprod, r["alphas_cumprod"], rtol=5e-5)
    np.testing.assert_array_equal(
        ddim_timesteps(len(r["ddim_timesteps"]), sched.num_train_timesteps, sched.steps_offset), r["ddim_timesteps"])
    z, out = nhwc(r["unet_sample"]), nhwc(r["ddim_model_out"])
    t, tp = int(r["ddim_t"]), int(r["ddim_t_prev"])
    eps = model_output_to_eps(sched, out, z, t)
    prev = ddim_step(sched, tweedie(sched, z, eps, t), eps, t, tp, eta=0.0)
    assert_close(prev, nhwc(r["ddim_prev_sample"]), rtol=1e-5, what=f"{case.name} DDIM step")


def test_scheduler_prediction_types():
    """The v2 fixture's scheduler says v-prediction; v1 and odd predict epsilon."""
    preds = {n: Schedule.from_config_file(FIXTURES / n / "scheduler" / "scheduler_config.json").prediction
             for n in NAMES}
    assert preds == {"v1": Prediction.EPSILON, "v2": Prediction.V, "odd": Prediction.EPSILON}


# ----------------------------------------------------------------------------- dtype, legacy names
def test_bfloat16_loading():
    """bfloat16 parameters load and give outputs close to the float32 reference (loose tolerance)."""
    path = FIXTURES / "v1"
    r = dict(np.load(path / "reference.npz"))
    prior = LatentDiffusionPrior.from_pretrained(path, dtype=jnp.bfloat16)
    leaves = jax.tree_util.tree_leaves((prior.unet_params, prior.vae_params, prior.text_params))
    assert {a.dtype for a in leaves} == {jnp.dtype(jnp.bfloat16)}

    @jax.jit
    def run(prior, z, t, c, ids, lat):
        return prior.model_output(z, t, c), prior.decode(lat), prior.encode_tokens(ids)

    out, img, hidden = run(prior, nhwc(r["unet_sample"]), r["unet_timesteps"], r["unet_context"],
                           r["token_ids"], nhwc(r["vae_latent"]) * prior.scaling_factor)
    assert out.dtype == img.dtype == hidden.dtype == jnp.float32  # public outputs stay float32
    assert_close(out, nhwc(r["unet_out"]), rtol=5e-2, what="bf16 UNet")
    assert_close(2 * np.asarray(img) - 1, nhwc(r["vae_decoded"]), rtol=5e-2, what="bf16 VAE decode")
    assert_close(hidden, r["clip_hidden"], rtol=5e-2, what="bf16 CLIP")


def test_legacy_vae_attention_names(tmp_path):
    """Old VAE checkpoints name the mid-block attention query/key/value/proj_attn, some storing
    them as 1x1 convolutions (here: query and key); they load to the same numbers."""
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "v1"
    shutil.copytree(FIXTURES / "v1", path)
    f = path / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(f))
    renames = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    legacy, n_renamed = {}, 0
    for k, v in state.items():
        new = k
        if ".attentions." in k:
            for a, b in renames.items():
                new = new.replace(a, b)
        if new != k:
            n_renamed += 1
            if v.ndim == 2 and (".query." in new or ".key." in new):
                v = v[:, :, None, None]
        legacy[new] = v
    assert n_renamed == 16  # 4 projections x (weight, bias) x (encoder, decoder)
    save_file(legacy, str(f))
    prior = LatentDiffusionPrior.from_pretrained(path)
    r = dict(np.load(path / "reference.npz"))
    with jax.default_matmul_precision("highest"):
        img = jax.jit(lambda p, z: p.decode(z))(prior, nhwc(r["vae_latent"]) * prior.scaling_factor)
    assert_close(2.0 * np.asarray(img) - 1.0, nhwc(r["vae_decoded"]), what="legacy-named VAE decode")


def test_odd_fixture_uses_options_no_other_fixture_uses():
    """Guard the purpose of ``odd/``: its configuration must differ from v1/v2 where it matters."""
    cfg = json.loads((FIXTURES / "odd" / "unet" / "config.json").read_text())
    assert cfg["down_block_types"][0] == "DownBlock2D" and len(cfg["block_out_channels"]) == 3
    assert cfg["layers_per_block"] == 1 and cfg["reverse_transformer_layers_per_block"] is not None
    assert cfg["freq_shift"] == 1 and cfg["flip_sin_to_cos"] is False and cfg["mid_block_scale_factor"] != 1
    assert any(cfg["only_cross_attention"]) and cfg["norm_num_groups"] == 2


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    """``to_diffusers_dict`` writes back every option we read (a saved model reloads identically)."""
    from diffprior.models.config import CLIPTextConfig, UNetConfig, VAEConfig, to_diffusers_dict

    for cls, comp in ((UNetConfig, "unet"), (VAEConfig, "vae"), (CLIPTextConfig, "text_encoder")):
        cfg = cls.from_dict(json.loads((FIXTURES / name / comp / "config.json").read_text()))
        assert cls.from_dict(json.loads(json.dumps(to_diffusers_dict(cfg)))) == cfg, (name, comp)
