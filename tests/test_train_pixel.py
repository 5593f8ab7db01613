"""``diffprior train pixel``: exact resume, export to a loadable pixel prior, data errors."""

from __future__ import annotations

import csv
import json

import jax
import numpy as np
import pytest
from PIL import Image

from diffprior import priors
from diffprior.cli import main
from diffprior.data import DatasetError
from diffprior.models.config import UNet2DConfig
from diffprior.priors.pixel import PixelDiffusionPrior
from diffprior.train.pixel import (PixelTrainConfig, bundled_pixel_config, load_pixel_state, run_pixel,
                                   training_schedule)

CLASSES = ("cat", "dog")
#: Two levels (8x8 and 4x4), attention at 4x4 and in the mid block.
TINY = UNet2DConfig(block_out_channels=(8, 16), layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                    up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=None, norm_num_groups=4)
CFG = PixelTrainConfig(steps=4, batch_size=4, warmup=1, ckpt_every=100, log_every=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Ten 8x8 training images in two classes and one validation file per class (4900)."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir()
        for stem in ("0001", "0002", "0003", "0004", "0005", "4900"):
            Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(root / c / f"{stem}.png")
    return root


def _log(run):
    with open(run / "pixel_log.csv") as f:
        return [(r["step"], r["loss"], r["lr"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def runs(folder, tmp_path_factory):
    """Run ``a`` uninterrupted, run ``b`` stopped after 2 steps and restarted."""
    tmp = tmp_path_factory.mktemp("runs")
    run_pixel(str(folder), tmp / "a", CFG, progress=False, unet_config=TINY)
    run_pixel(str(folder), tmp / "b", CFG, progress=False, unet_config=TINY, max_steps=2)
    stopped = load_pixel_state(tmp / "b")[2]["step"]
    run_pixel(str(folder), tmp / "b", CFG, progress=False)  # the checkpoint's architecture, not the default
    return tmp / "a", tmp / "b", stopped


@pytest.mark.slow
def test_resume_reaches_the_uninterrupted_run(runs):
    a, b, stopped = runs
    assert stopped == 2
    ca, sa, ma = load_pixel_state(a)
    cb, sb, mb = load_pixel_state(b)
    assert ca == cb and ca.sample_size == (8, 8) and ca.block_out_channels == (8, 16)
    assert ma["step"] == mb["step"] == 4 and int(sa["step"]) == int(sb["step"]) == 4
    assert ma["n_train"] == 10  # the two 4900 files are validation, never trained on
    for part in ("params", "ema", "opt_state"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, sa[part], sb[part])
    # the same loss, step by step, logged once per step across the restart
    assert _log(a) == _log(b) and [r[0] for r in _log(b)] == ["1", "2", "3", "4"]
    assert all(np.isfinite(float(r[1])) for r in _log(a))
    # training moved the weights, and the EMA differs from them
    assert not np.array_equal(jax.tree_util.tree_leaves(sa["params"])[0], jax.tree_util.tree_leaves(sa["ema"])[0])
    assert (b / "commands.txt").is_file() and (b / "dataset_cache.npz").is_file()


@pytest.mark.slow
def test_export_loads_as_pixel_prior(runs, tmp_path):
    from diffprior.train.card import write_pixel_card
    from diffprior.train.export import export_pixel_prior

    a, _, _ = runs
    out = export_pixel_prior(a, tmp_path / "cifar10-ddpm", samples=4, sample_steps=3)
    for part in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json",
                 "model_index.json", "diffprior.json", "training.json", "samples.png"):
        assert (out / part).is_file(), part
    assert not (tmp_path / "cifar10-ddpm.tmp").exists()
    meta = json.loads((out / "diffprior.json").read_text())
    assert meta == {"format": 1, "name": "cifar10-ddpm", "preset_table": "cifar10", "image_size": [8, 8],
                    "latent": False, "conditioning": False}
    sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert (sched["beta_schedule"], sched["beta_start"], sched["beta_end"], sched["num_train_timesteps"],
            sched["prediction_type"]) == ("linear", 0.0001, 0.02, 1000, "epsilon")
    grid = np.asarray(Image.open(out / "samples.png"))
    assert grid.shape == (2 + 10 * 1, 2 + 10 * 4, 3)  # one row of four 8x8 samples, 2-pixel borders

    for prior in (PixelDiffusionPrior.from_pretrained(out), priors.load(out)):
        assert isinstance(prior, PixelDiffusionPrior)
        assert prior.metadata.image_size == (8, 8) and priors.preset_table(prior).value == "cifar10"
    np.testing.assert_array_equal(prior.schedule.alphas_cumprod, training_schedule().alphas_cumprod)
    # the exported weights are the checkpoint's EMA
    _, state, _ = load_pixel_state(a)
    jax.tree_util.tree_map(np.testing.assert_array_equal, prior.params, state["ema"])
    x = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)
    z = prior.encode(x)
    eps, x0 = prior.eps_and_x0(z, 500, prior.embed(["", ""]))
    assert eps.shape == x0.shape == (2, 8, 8, 3) and np.all(np.isfinite(eps)) and np.all(np.isfinite(x0))

    info = json.loads((out / "training.json").read_text())
    assert info["pixel_steps"] == 4 and info["n_train"] == 10 and info["samples"]["count"] == 4
    assert info["hardware"] and info["hardware"][0]["cpu_cores"] >= 1
    latent = tmp_path / "latent"
    latent.mkdir()
    (latent / "training.json").write_text(json.dumps({
        "vae_stages": [{"steps": 100, "wall_s": 3600.0}, {"steps": 50, "wall_s": 1800.0}],
        "ldm_stages": [{"steps": 200, "wall_s": 7200.0}]}))
    card = write_pixel_card(out, a, commands={"x": "diffprior train pixel --data d --out a"},
                            latent_dir=latent).read_text()
    assert "4 steps" in card and "batch 4" in card and "10 training" in card
    assert "| cifar10-ldm | autoencoder | 150 | 1.50 |" in card and "| cifar10-ldm | UNet + text encoder | 200 | 2.00 |" in card
    assert "CPU cores" in card and "diffprior train pixel --data d --out a" in card and "`samples.png`" in card


@pytest.mark.slow
def test_cli_trains_resumes_and_exports(folder, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "pixel", "--data", str(folder), "--out", str(run), "--steps", "2", "--batch", "4"]
    # the bundled architecture needs sizes divisible by 8: the 8x8 images are, with one 1x1 level
    assert main(args + ["--max-steps", "1"]) == 0
    assert load_pixel_state(run)[2]["step"] == 1
    assert main(args) == 0
    cfg, _, meta = load_pixel_state(run)
    assert meta["step"] == 2 and cfg == bundled_pixel_config((8, 8))
    assert len((run / "commands.txt").read_text().splitlines()) == 2
    out = tmp_path / "prior"
    assert main(["train", "export-pixel", "--pixel", str(run), "--out", str(out), "--samples", "2",
                 "--sample-steps", "2"]) == 0
    assert "MODEL_CARD.md" in capsys.readouterr().out
    card = (out / "MODEL_CARD.md").read_text()
    assert "2 steps" in card and "2,245,763 parameters" in card and "on 8x8 CIFAR-10 pixels" in card
    assert card.count("```bash") == 1  # the commands recorded in the run folder (this process's, here)
    assert isinstance(priors.load(out), PixelDiffusionPrior)


def test_bundled_config_fits_the_size_bound():
    from diffprior.models.unet2d import UNet2DModel, param_shapes
    from diffprior.prior import count_params

    cfg = bundled_pixel_config()
    n = count_params(param_shapes(UNet2DModel(cfg)))
    assert n == 2_245_763 and 4 * n <= 10_000_000  # float32 weights within 10 MB
    assert cfg.sample_size == (32, 32) and cfg.size_multiple == 8


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(DatasetError, match="missing.tar.gz: no such file"):
        run_pixel(str(tmp_path / "missing.tar.gz"), tmp_path / "run", CFG, progress=False, unet_config=TINY)
    assert not (tmp_path / "run").exists()  # nothing created for a run that cannot start
    code = main(["train", "pixel", "--data", str(tmp_path / "missing.tar.gz"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.tar.gz: no such file" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        run_pixel(str(tmp_path / "empty"), tmp_path / "run2", CFG, progress=False, unet_config=TINY)


def test_export_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    from diffprior.train.export import export_pixel_prior

    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="no pixel checkpoint"):
        export_pixel_prior(tmp_path / "run", tmp_path / "out")
    code = main(["train", "export-pixel", "--pixel", str(tmp_path / "run"), "--out", str(tmp_path / "out")])
    assert code == 2 and "no pixel checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_images_that_do_not_fit_the_unet(tmp_path):
    root = tmp_path / "odd" / "cat"
    root.mkdir(parents=True)
    for k in range(3):
        Image.fromarray(np.zeros((7, 7, 3), np.uint8)).save(root / f"000{k}.png")
    with pytest.raises(DatasetError, match="7x7x3 do not fit the UNet"):
        run_pixel(str(tmp_path / "odd"), tmp_path / "run", CFG, progress=False, unet_config=TINY)


@pytest.mark.slow
def test_a_later_stage_continues_from_an_exported_prior(runs, folder, tmp_path):
    """Training that spans sessions: stage 2 starts from the exported folder of stage 1 (its
    run folder gone), and the export of stage 2 still names both stages and their commands."""
    import shutil

    from diffprior.train.card import write_pixel_card
    from diffprior.train.export import export_pixel_prior, lineage

    a, _, _ = runs
    first = tmp_path / "a"
    shutil.copytree(a, first)
    stage1 = export_pixel_prior(first, tmp_path / "stage1", samples=0)
    shutil.rmtree(first)  # the first run folder is lost: only the exported prior remains
    info1 = json.loads((stage1 / "training.json").read_text())
    elsewhere = {"backend": "gpu", "device": "another machine", "devices": 1, "cpu_cores": 8}
    info1["hardware"].append(elsewhere)  # as if stage 1 had run elsewhere too
    (stage1 / "training.json").write_text(json.dumps(info1))
    c = tmp_path / "c"
    run_pixel(str(folder), c, CFG, progress=False, max_steps=1, init_from=stage1)
    cfg, state, meta = load_pixel_state(c)
    assert cfg == load_pixel_state(a)[0] and meta["step"] == 1
    rec = meta["init_from"]
    assert rec["path"] == str(first.resolve()) and rec["step"] == 4 and rec["init_from"] is None
    # the EMA after one step is the starting weights moved a little: it started from stage 1's weights
    ema1 = PixelDiffusionPrior.from_pretrained(stage1).params
    d = jax.tree_util.tree_map(lambda u, v: float(np.max(np.abs(np.asarray(u) - np.asarray(v)))), state["ema"], ema1)
    assert 0 < max(jax.tree_util.tree_leaves(d)) < 1e-2
    run_pixel(str(folder), c, CFG, progress=False, init_from=tmp_path / "ignored-when-resuming")
    chain = lineage(c, "pixel")
    assert [st["steps"] for st in chain] == [4, 4] and chain[0]["path"] == str(first.resolve())
    stage2 = export_pixel_prior(c, tmp_path / "stage2", samples=0)
    info = json.loads((stage2 / "training.json").read_text())
    assert len(info["pixel_stages"]) == 2 and elsewhere in info["hardware"]  # the earlier stage's hardware kept
    first_cmds = json.loads((stage1 / "training.json").read_text())["commands"]
    assert first_cmds and info["commands"][:len(first_cmds)] == first_cmds
    card = write_pixel_card(stage2, c).read_text()
    assert "4 steps" in card and "continued from those weights with a fresh optimiser for 4 more steps" in card
    assert "| this (pixel DDPM) | UNet2DModel | 8 (batch 4) |" in card
    with pytest.raises(FileNotFoundError, match="neither a pixel run folder"):
        run_pixel(str(folder), tmp_path / "d", CFG, progress=False, init_from=tmp_path / "nothing")

