"""``diffprior simulate``: task presets, reproducible per-sample noise, inputs and errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

from diffprior.cli import main
from diffprior.commands.simulate import sample_seed
from diffprior.tasks import TASKS, ct_views, gauss_sigma, kernel_side
from diffprior.io import read_problem


def write_images(folder, n=4, size=16, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("images") / "flat")


def cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_preset_parameters_scale_below_256_pixels():
    assert [kernel_side(s) for s in (16, 32, 64, 128, 255, 256, 512)] == [7, 7, 15, 29, 59, 61, 61]
    assert [gauss_sigma(s) for s in (32, 128, 256, 1024)] == [1.0, 1.5, 3.0, 3.0]
    assert [ct_views(s) for s in (16, 32, 128, 256, 512)] == [8, 8, 30, 60, 60]
    assert TASKS["gauss-deblur"].parameters((32, 32, 3)) == {"kernel_size": 7, "sigma": 1.0, "boundary": "same"}
    assert TASKS["motion-deblur"].parameters((256, 256, 3))["kernel_size"] == 61
    assert TASKS["inpaint-box"].parameters((256, 256, 3)) == {"box_size": 128, "margin": 16}  # DPS's box
    assert TASKS["inpaint-box"].parameters((32, 32, 3)) == {"box_size": 16, "margin": 2}
    mask = np.asarray(TASKS["inpaint-box"].build((32, 32, 3), jax.random.PRNGKey(0)).mask)
    holes = np.argwhere(mask[..., 0] == 0 if mask.ndim == 3 else mask == 0)
    assert len(holes) == 256 and holes.min() >= 2 and holes.max() <= 29


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_writes_a_problem_file(task, images, tmp_path, capsys):
    out = tmp_path / "p.h5"
    rc, stdout, err = cli(capsys, "simulate", images, "--task", task, "--out", out, "--limit", 3)
    assert rc == 0, err
    assert f"3 samples, task {task}" in stdout
    p = read_problem(out)
    assert p.n_samples == 3 and p.ground_truth.shape == (3, 16, 16, 3)
    assert p.names == ["img00.png", "img01.png", "img02.png"]
    expected = np.stack([np.asarray(Image.open(images / n), np.float32) / 255 for n in p.names])
    np.testing.assert_array_equal(p.ground_truth, expected)
    assert p.noise_sigma == 0.005
    assert p.seeds.tolist() == [sample_seed(0, n) for n in range(3)]
    assert p.task == task
    A = p.build_operator()
    if TASKS[task].random:  # one kernel or mask per image, as the papers draw them
        assert A.input_shape == (3, 16, 16, 3) and A.per_sample and p.measurement.shape == A.output_shape
        arrays = np.asarray(A._parameters()[A.per_sample[0]])
        assert not np.array_equal(arrays[0], arrays[1])
    else:
        assert A.input_shape == (16, 16, 3) and p.measurement.shape[1:] == A.output_shape


def test_shared_operator_draws_one_for_all(images, tmp_path, capsys):
    out = tmp_path / "p.h5"
    rc, stdout, err = cli(capsys, "simulate", images, "--task", "motion-deblur", "--out", out, "--limit", 3,
                          "--shared-operator")
    assert rc == 0, err
    A = read_problem(out).build_operator()
    assert A.input_shape == (16, 16, 3) and A.kernel.ndim == 2


def test_measurement_is_a_x_plus_noise_from_the_stored_seed(images, tmp_path, capsys):
    out = tmp_path / "p.h5"
    assert cli(capsys, "simulate", images, "--task", "gauss-deblur", "--out", out, "--sigma", 0.1, "--seed", 7)[0] == 0
    p = read_problem(out)
    A = p.build_operator()
    for n in range(p.n_samples):
        noise = 0.1 * jax.random.normal(jax.random.PRNGKey(int(p.seeds[n])), A.output_shape)  # one shared kernel
        np.testing.assert_allclose(p.measurement[n], np.asarray(A(p.ground_truth[n]) + noise), atol=1e-6)


def test_same_seed_same_file_and_limit_keeps_samples(images, tmp_path, capsys):
    args = ("simulate", images, "--task", "inpaint-random")
    cli(capsys, *args, "--out", tmp_path / "a.h5", "--seed", 3)
    cli(capsys, *args, "--out", tmp_path / "b.h5", "--seed", 3, "--limit", 2)
    cli(capsys, *args, "--out", tmp_path / "c.h5", "--seed", 4)
    a, b, c = (read_problem(tmp_path / f) for f in ("a.h5", "b.h5", "c.h5"))
    np.testing.assert_array_equal(a.operator["mask"][:2], b.operator["mask"])  # image n's mask: seed and n
    np.testing.assert_array_equal(a.measurement[:2], b.measurement)
    assert not np.array_equal(a.operator["mask"], c.operator["mask"])
    assert not np.array_equal(a.measurement, c.measurement)


def test_class_folders_archives_and_resizing(tmp_path, capsys):
    root = tmp_path / "classes"
    write_images(root / "cat", n=2, size=20, seed=1)
    write_images(root / "dog", n=1, size=20, seed=2)
    out = tmp_path / "p.h5"
    rc, _, err = cli(capsys, "simulate", root, "--task", "sr8", "--out", out, "--size", 16)
    assert rc == 0, err
    p = read_problem(out)
    assert p.names == ["cat/img00.png", "cat/img01.png", "dog/img00.png"]
    assert p.ground_truth.shape == (3, 16, 16, 3) and p.measurement.shape == (3, 2, 2, 3)


def test_errors_are_one_line(images, tmp_path, capsys):
    rc, _, err = cli(capsys, "simulate", images, "--task", "sr8", "--out", tmp_path / "p.h5", "--size", 12)
    assert rc == 2 and "multiples of 8" in one_error_line(err)
    rc, _, err = cli(capsys, "simulate", tmp_path / "missing", "--task", "sr4", "--out", tmp_path / "p.h5")
    assert rc == 2 and "no such file or directory" in one_error_line(err)
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(capsys, "simulate", tmp_path / "empty", "--task", "sr4", "--out", tmp_path / "p.h5")
    assert rc == 2 and "no images found" in one_error_line(err)
    rc, _, err = cli(capsys, "simulate", images, "--task", "sr3", "--out", tmp_path / "p.h5")
    assert rc == 2 and "invalid choice: 'sr3'" in one_error_line(err)
    rc, _, err = cli(capsys, "simulate", images, "--task", "sr4", "--out", tmp_path / "p.h5", "--sigma", -1)
    assert rc == 2 and "--sigma" in one_error_line(err)
    assert not (tmp_path / "p.h5").exists()
