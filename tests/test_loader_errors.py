"""``LatentDiffusionPrior.from_pretrained`` on broken folders: specific errors listing every problem.

Each test copies the tiny v1 fixture into ``tmp_path`` and breaks it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from diffprior.models import UnsupportedConfigError, WeightLoadError
from diffprior.prior import LatentDiffusionPrior, PriorLoadError

V1 = Path(__file__).parent / "fixtures" / "sd_tiny" / "v1"
UNET_W = "unet/diffusion_pytorch_model.safetensors"
VAE_W = "vae/diffusion_pytorch_model.safetensors"
TEXT_W = "text_encoder/model.safetensors"


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "sd"
    shutil.copytree(V1, path)
    return path


def edit_weights(path: Path, edit):
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def edit_config(path: Path, **changes):
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_missing_folder():
    with pytest.raises(PriorLoadError, match="is not a directory") as e:
        LatentDiffusionPrior.from_pretrained("/nonexistent/sd-v1-4")
    assert isinstance(e.value, FileNotFoundError)


def test_missing_components_are_all_listed(folder):
    shutil.rmtree(folder / "vae")
    (folder / UNET_W).unlink()
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not read")
    (folder / "text_encoder" / "config.json").unlink()
    (folder / "tokenizer" / "merges.txt").unlink()
    (folder / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(PriorLoadError) as e:
        LatentDiffusionPrior.from_pretrained(folder)
    msg = str(e.value)
    for expected in ("missing folder vae/", "missing unet/*.safetensors", "only PyTorch .bin/.ckpt found",
                     "missing text_encoder/config.json", "missing tokenizer/merges.txt",
                     "missing scheduler/scheduler_config.json"):
        assert expected in msg, f"{expected!r} not in:\n{msg}"


def test_missing_tokenizer_folder_and_vocab(folder):
    (folder / "tokenizer" / "vocab.json").unlink()
    shutil.rmtree(folder / "text_encoder")
    with pytest.raises(PriorLoadError) as e:
        LatentDiffusionPrior.from_pretrained(folder)
    assert "missing tokenizer/vocab.json" in str(e.value) and "missing folder text_encoder/" in str(e.value)


def test_wrong_tensors_are_all_listed(folder):
    def unet(s):
        s["conv_inn.weight"] = s.pop("conv_in.weight")  # renamed: unexpected + missing
        w = s["time_embedding.linear_1.weight"]
        s["time_embedding.linear_1.weight"] = np.ascontiguousarray(w[:, :-1])  # wrong shape
        del s["conv_out.bias"]  # missing

    def vae(s):
        s["decoder.extra.weight"] = np.zeros((2, 2), np.float32)  # unexpected
        s["encoder.conv_in.weight"] = np.ascontiguousarray(s["encoder.conv_in.weight"][:, :, :2])  # wrong shape

    def text(s):
        key = next(k for k in s if k.endswith("token_embedding.weight"))
        s[key] = np.ascontiguousarray(s[key][:-5])  # vocabulary size mismatch

    edit_weights(folder / UNET_W, unet)
    edit_weights(folder / VAE_W, vae)
    edit_weights(folder / TEXT_W, text)
    with pytest.raises(WeightLoadError) as e:
        LatentDiffusionPrior.from_pretrained(folder)
    problems = e.value.problems
    expect = [
        "unet: unexpected tensor conv_inn.weight",
        "unet: missing tensor conv_in.weight",
        "unet: shape mismatch for time_embedding.linear_1.weight",
        "unet: missing tensor conv_out.bias",
        "vae: unexpected tensor decoder.extra.weight",
        "vae: shape mismatch for encoder.conv_in.weight",
        "text_encoder: shape mismatch for",
    ]
    for prefix in expect:
        assert any(p.startswith(prefix) for p in problems), f"{prefix!r} not in {problems}"
    assert len(problems) == len(expect), problems
    assert "token_embedding" in str(e.value)
    # a mismatched tensor is reported once (as a mismatch), not also as missing
    assert not any("missing tensor time_embedding.linear_1.weight" in p for p in problems)


@pytest.mark.parametrize("component, changes, names", [
    ("unet", {"class_embed_type": "timestep", "act_fn": "gelu"}, ["class_embed_type", "act_fn"]),
    ("unet", {"mid_block_type": "UNetMidBlock2DSimpleCrossAttn"}, ["UNetMidBlock2DSimpleCrossAttn"]),
    ("unet", {"cross_attention_dim": [16, 32]}, ["cross_attention_dim"]),
    ("vae", {"down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]}, ["AttnDownEncoderBlock2D"]),
    ("vae", {"latents_mean": [0.0, 0.0, 0.0, 0.0]}, ["latents_mean"]),
    ("text_encoder", {"hidden_act": "relu"}, ["hidden_act"]),
], ids=["unet-options", "unet-mid-block", "unet-cross-dim", "vae-block", "vae-latents-mean", "text-act"])
def test_unsupported_config(folder, component, changes, names):
    edit_config(folder / component / "config.json", **changes)
    with pytest.raises(UnsupportedConfigError) as e:
        LatentDiffusionPrior.from_pretrained(folder)
    for name in names:
        assert name in str(e.value)


def test_config_deeper_than_checkpoint_lists_missing_blocks(folder):
    """A valid config whose tensors are absent from the checkpoint: every missing one is listed."""
    edit_config(folder / "unet" / "config.json", transformer_layers_per_block=[2, 1])
    with pytest.raises(WeightLoadError) as e:
        LatentDiffusionPrior.from_pretrained(folder)
    assert all("transformer_blocks.1" in p for p in e.value.problems)
