"""``LatentDiffusionPrior.from_pretrained`` on broken folders: specific errors listing every problem.

Each test copies the tiny v1 fixture into ``tmp_path`` and breaks it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
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


# ------------------------------------------------------------------ transposed / swapped weights
def _load_error(folder) -> WeightLoadError:
    with pytest.raises(WeightLoadError) as e:
        LatentDiffusionPrior.from_pretrained(folder)
    return e.value


def test_transposed_linear_weight_is_refused(folder):
    """A (32, 8) linear weight stored as (8, 32) has the right size but the wrong layout."""
    key = "time_embedding.linear_1.weight"

    def unet(s):
        assert s[key].shape == (32, 8)
        s[key] = np.ascontiguousarray(s[key].T)

    edit_weights(folder / UNET_W, unet)
    err = _load_error(folder)
    assert len(err.problems) == 1, err.problems
    msg = err.problems[0]
    assert key in msg and "(8, 32)" in msg and "(32, 8)" in msg, msg


def test_conv_with_swapped_channels_is_refused(folder):
    key = "conv_out.weight"

    def unet(s):
        assert s[key].shape == (4, 8, 3, 3)
        s[key] = np.ascontiguousarray(s[key].transpose(1, 0, 2, 3))

    edit_weights(folder / UNET_W, unet)
    err = _load_error(folder)
    assert len(err.problems) == 1, err.problems
    msg = err.problems[0]
    assert key in msg and "(8, 4, 3, 3)" in msg and "(4, 8, 3, 3)" in msg, msg


def test_conv_with_wrong_kernel_layout_is_refused(folder):
    """A 3x3 kernel stored channel-last (kh, kw, in, out) is refused, not reshaped."""
    key = "conv_out.weight"
    edit_weights(folder / UNET_W, lambda s: s.__setitem__(key, np.ascontiguousarray(s[key].transpose(2, 3, 1, 0))))
    msg = "\n".join(_load_error(folder).problems)
    assert key in msg and "(3, 3, 8, 4)" in msg and "(4, 8, 3, 3)" in msg, msg


def test_1x1_conv_and_linear_layouts_both_load(folder):
    """Old checkpoints store VAE attention projections as 1x1 convolutions and diffusers'
    Transformer2D ``proj_in``/``proj_out`` as 1x1 convolutions or linear layers: all load to
    the same parameters."""
    ref = LatentDiffusionPrior.from_pretrained(folder)

    def vae(s):
        for k in [k for k in s if "mid_block.attentions.0.to_" in k and k.endswith(".weight")]:
            s[k] = np.ascontiguousarray(s[k][:, :, None, None])

    def unet(s):
        for k in [k for k in s if k.endswith(("proj_in.weight", "proj_out.weight"))]:
            s[k] = np.ascontiguousarray(s[k][:, :, 0, 0])

    edit_weights(folder / VAE_W, vae)
    edit_weights(folder / UNET_W, unet)
    other = LatentDiffusionPrior.from_pretrained(folder)
    for a, b in ((ref.vae_params, other.vae_params), (ref.unet_params, other.unet_params)):
        la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
        assert [p for p, _ in la] == [p for p, _ in lb]
        for (p, x), (_, y) in zip(la, lb):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(p))


def test_1x1_conv_with_swapped_channels_is_refused():
    """The 1x1-conv <-> linear conversion still checks in/out: a non-square projection stored
    with in/out swapped is refused."""
    from diffprior.models.convert import state_dict_to_params

    with pytest.raises(WeightLoadError) as e:
        state_dict_to_params({"a.weight": np.zeros((8, 16, 1, 1), np.float32)},
                             {"a": {"kernel": np.zeros((8, 16), np.float32)}}, "toy")
    assert "a.weight" in str(e.value) and "(8, 16, 1, 1)" in str(e.value) and "(16, 8)" in str(e.value)


# ------------------------------------------------------------------ unreadable files
class _Planted:
    """Unpickling this would create a marker file: proves a pickle is never unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _one_line_load_error(folder) -> str:
    with pytest.raises(PriorLoadError) as e:
        LatentDiffusionPrior.from_pretrained(folder)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("content", [
    np.random.default_rng(0).bytes(4096),  # random bytes
    b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\": 1",  # header length says 8, JSON cut short
    b"\xff" * 8 + b"{}",  # absurd header length
    b"",  # empty
], ids=["random", "bad-header", "huge-header", "empty"])
def test_corrupt_safetensors_names_the_file(folder, content):
    (folder / UNET_W).write_bytes(content)
    msg = _one_line_load_error(folder)
    assert msg.startswith(f"not a safetensors file: {folder / UNET_W} ("), msg


def test_pickle_named_safetensors_is_refused_unread(folder, tmp_path):
    import pickle

    marker = tmp_path / "unpickled"
    (folder / UNET_W).write_bytes(pickle.dumps({"conv_in.weight": _Planted(marker)}))
    msg = _one_line_load_error(folder)
    assert msg.startswith(f"not a safetensors file: {folder / UNET_W} (") and "pickle" in msg, msg
    assert not marker.exists()


@pytest.mark.parametrize("rel", ["unet/config.json", "vae/config.json", "text_encoder/config.json",
                                 "scheduler/scheduler_config.json"])
def test_invalid_json_names_the_file(folder, rel):
    (folder / rel).write_text('{"in_channels": 4,\n  "out_channels": 4,,\n}')
    msg = _one_line_load_error(folder)
    assert msg.startswith(f"invalid JSON in {folder / rel}: line 2 column"), msg


def test_config_not_an_object(folder):
    (folder / "unet" / "config.json").write_text("[1, 2]")
    msg = _one_line_load_error(folder)
    assert str(folder / "unet" / "config.json") in msg and "JSON object" in msg, msg


def test_cli_reports_corrupt_weights_in_one_line(folder, tmp_path, capsys):
    from diffprior.cli import main
    from diffprior.io import write_problem

    problem = tmp_path / "problems.h5"
    x = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
    desc = {"class": "Downsample", "input_shape": [16, 16, 3], "factor": 4, "method": "average"}
    write_problem(problem, x.reshape(1, 4, 4, 4, 4, 3).mean(axis=(2, 4)), desc, 0.005, ground_truth=x)
    (folder / UNET_W).write_bytes(np.random.default_rng(1).bytes(1000))
    rc = main(["solve", str(problem), "--solver", "ldps", "--prior", str(folder), "--steps", "2",
               "--out", str(tmp_path / "r.h5")])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    errors = [line for line in err.splitlines() if line.startswith("diffprior solve: error:")]
    assert len(errors) == 1 and "Traceback" not in err and "internal error" not in err, err
    assert errors[0] == f"diffprior solve: error: not a safetensors file: {folder / UNET_W} (header length " \
        f"{int.from_bytes(np.random.default_rng(1).bytes(8), 'little')} does not fit in the 1000-byte file)", err
