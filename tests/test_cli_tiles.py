"""``diffprior solve --tiles``: images larger than the prior's size, grayscale, off the grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffprior.cli import main
from diffprior.io import read_result

V1 = Path(__file__).parent / "fixtures" / "sd_tiny" / "v1"  # native 16 x 16 images, 8 x 8 latents


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiles")
    rng = np.random.default_rng(0)
    (root / "rgb").mkdir()
    (root / "gray").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 40, 3), np.uint8)).save(root / "rgb" / f"im{i}.png")
        Image.fromarray(rng.integers(0, 65536, (21, 29), np.uint16)).save(root / "gray" / f"g{i}.png")
    assert main(["simulate", str(root / "rgb"), "--task", "gauss-deblur", "--out", str(root / "rgb.h5")]) == 0
    assert main(["simulate", str(root / "gray"), "--task", "gauss-deblur", "--out", str(root / "gray.h5")]) == 0
    return root


def _solve(root, problem, out, *extra):
    return main(["solve", str(root / problem), "--solver", "ldps", "--prior", str(V1), "--steps", "2",
                 "--out", str(root / out), "--no-progress", *extra])


def test_tiled_solve_records_its_tiling_and_refuses_to_resume_with_another(problems, capsys):
    assert _solve(problems, "rgb.h5", "mix.h5", "--tiles", "mixture", "--tile-batch", "4") == 0
    err = capsys.readouterr().err
    assert "tiles: mixture, 8 windows of 8 x 8 latent pixels, stride 4" in err  # 12 x 20 latent: 2 x 4 windows
    res = read_result(problems / "mix.h5")
    assert res.done.all() and res.reconstruction.shape == (2, 24, 40, 3)
    assert res.hyperparameters["tiling"] == {"mode": "mixture", "stride": None, "tile_batch": 4, "vae_tile": None}
    assert _solve(problems, "rgb.h5", "mix.h5", "--tiles", "multidiffusion", "--tile-batch", "4") == 2
    assert "tiling" in capsys.readouterr().err


def test_grayscale_images_off_the_grid_go_through_the_rgb_prior(problems, capsys):
    assert _solve(problems, "gray.h5", "gray_out.h5", "--tiles", "multidiffusion") == 0
    err = capsys.readouterr().err
    assert "1-channel images replicated" in err and "21 x 29 reflect-padded to 22 x 30" in err
    res = read_result(problems / "gray_out.h5")
    assert res.reconstruction.shape == (2, 21, 29, 1) and np.all(np.isfinite(res.reconstruction))
    fig = problems / "gray.png"
    assert main(["report", str(problems / "gray_out.h5"), "--figure", str(fig), "--no-lpips"]) == 0
    assert "noise floor" in capsys.readouterr().out
    image = np.asarray(Image.open(fig))
    assert image.shape[0] > image.shape[1] * 0.5  # two rows of wide (29 x 21) panels, not squashed
    # the whole latent at once (no tiles): padded to the UNet's grid too (factor 2 x 2 levels)
    assert _solve(problems, "gray.h5", "gray_whole.h5") == 0
    assert "21 x 29 reflect-padded to 24 x 32" in capsys.readouterr().err


def test_bad_tiling_settings_are_one_line_errors(problems, capsys):
    assert _solve(problems, "rgb.h5", "bad.h5", "--tiles", "mixture", "--tile-stride", "16") == 2
    err = capsys.readouterr().err
    assert "the stride (16) must be between 1 and the window (8)" in err and err.strip().count("\n") == 0
    assert _solve(problems, "rgb.h5", "bad.h5", "--tiles", "mixture", "--tile-batch", "0") == 2
    assert "expected a positive integer, got 0" in capsys.readouterr().err
    assert not (problems / "bad.h5").exists()
