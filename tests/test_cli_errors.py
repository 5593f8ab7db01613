"""Every CLI failure a user meets is one clear line and a non-zero exit; ``--help`` documents
every option. Nothing here solves anything (no compilation): each error is raised before."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import diffprior
from diffprior import cli
from diffprior.cli import build_parser, main
from diffprior.io import ResultWriter, write_problem

V1 = Path(__file__).parent / "fixtures" / "sd_tiny" / "v1"


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def problem(tmp_path):
    """A 2-sample 16x16 average-pooling problem, written without JAX."""
    path = tmp_path / "problems.h5"
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    y = x.reshape(2, 4, 4, 4, 4, 3).mean(axis=(2, 4))
    desc = {"class": "Downsample", "input_shape": [16, 16, 3], "factor": 4, "method": "average"}
    write_problem(path, y, desc, 0.005, ground_truth=x)
    return path


def solve_args(problem, tmp_path, *extra):
    return ("solve", problem, "--solver", "ldps", "--prior", V1, "--steps", 2, "--out", tmp_path / "r.h5", *extra)


def newer_schema(path):
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = np.int64(99)


# ----------------------------------------------------------------------------- missing input
def test_missing_problem_file(tmp_path, capsys):
    rc, _, err = run(capsys, "solve", tmp_path / "nope.h5", "--solver", "p2l", "--out", tmp_path / "r.h5")
    assert rc == 2 and one_line(err) == f"diffprior solve: error: No such file: {tmp_path / 'nope.h5'}"


def test_missing_result_file(tmp_path, capsys):
    rc, _, err = run(capsys, "report", tmp_path / "nope.h5")
    assert rc == 2 and "No such file" in one_line(err)


def test_not_hdf5_and_wrong_kind_of_file(problem, tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    rc, _, err = run(capsys, *solve_args(bad, tmp_path))
    assert rc == 2 and "not a readable HDF5 file" in one_line(err)
    rc, _, err = run(capsys, "report", problem)  # a problem file is not a result file
    assert rc == 2 and "expected schema 'diffprior-result'" in one_line(err)


# ----------------------------------------------------------------------------- unknown names
@pytest.mark.parametrize("argv, what", [
    (("--solver", "ddrm"), "argument --solver: invalid choice: 'ddrm'"),
    (("--solver", "p2l", "--preset", "sr2"), "argument --preset: invalid choice: 'sr2'"),
    (("--solver", "p2l", "--steps", "0"), "argument --steps: expected a positive integer"),
    (("--solver", "p2l", "--batch", "x"), "argument --batch: expected a non-negative integer"),
    (("--solver", "p2l", "--seed", "-1"), "argument --seed: expected a non-negative integer"),
    (("--solver", "p2l", "--out", "r.h5", "--frobnicate"), "unrecognized arguments: --frobnicate"),
    (("--solver", "p2l"), "the following arguments are required: --out"),
])
def test_bad_options(argv, what, problem, capsys):
    rc, _, err = run(capsys, "solve", problem, *argv)
    assert rc == 2 and what in one_line(err)


def test_unknown_command(capsys):
    rc, _, err = run(capsys, "sovle")
    assert rc == 2 and "invalid choice: 'sovle'" in one_line(err)


# ----------------------------------------------------------------------------- schema versions
def test_problem_file_from_a_newer_schema(problem, tmp_path, capsys):
    newer_schema(problem)
    rc, _, err = run(capsys, *solve_args(problem, tmp_path))
    assert rc == 2 and "schema_version 99 is newer than this library reads (2); upgrade diffprior" in one_line(err)


def test_result_file_from_a_newer_schema(tmp_path, capsys):
    path = tmp_path / "r.h5"
    ResultWriter(path, 1, (16, 16, 3), "P2L")
    newer_schema(path)
    rc, _, err = run(capsys, "report", path)
    assert rc == 2 and "schema_version 99 is newer" in one_line(err)


# ----------------------------------------------------------------------------- priors
def test_prior_folder_missing_a_component(problem, tmp_path, capsys):
    prior = tmp_path / "sd"
    shutil.copytree(V1, prior)
    shutil.rmtree(prior / "vae")
    (prior / "tokenizer" / "merges.txt").unlink()
    rc, _, err = run(capsys, "solve", problem, "--solver", "p2l", "--prior", prior, "--out", tmp_path / "r.h5")
    line = one_line(err)
    assert rc == 2 and "is not a complete diffusers-format prior" in line
    assert "missing folder vae/" in line and "missing tokenizer/merges.txt" in line
    assert not (tmp_path / "r.h5").exists()  # nothing written before the prior loads


def test_prior_path_missing_or_a_file(problem, tmp_path, capsys):
    rc, _, err = run(capsys, "solve", problem, "--solver", "p2l", "--prior", tmp_path / "nope", "--out", tmp_path / "r.h5")
    assert rc == 2 and "prior folder not found" in one_line(err)
    rc, _, err = run(capsys, "solve", problem, "--solver", "p2l", "--prior", problem, "--out", tmp_path / "r.h5")
    assert rc == 2 and "must be a diffusers-format folder" in one_line(err)


def test_bundled_prior_not_installed(problem, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(diffprior, "bundled_path", lambda kind="latent": tmp_path / "bundled" / "cifar10-ldm")
    rc, _, err = run(capsys, "solve", problem, "--solver", "p2l", "--out", tmp_path / "r.h5")
    assert rc == 2 and "the bundled latent prior is not installed" in one_line(err) and "--prior PATH" in err


# ----------------------------------------------------------------------------- resuming
def test_rerun_with_other_settings_is_refused(problem, tmp_path, capsys):
    ResultWriter(tmp_path / "r.h5", 2, (16, 16, 3), "LDPS", {"num_steps": 5}, seed=0)
    rc, _, err = run(capsys, *solve_args(problem, tmp_path))
    line = one_line(err)
    assert rc == 2 and "holds a run with other settings" in line and "num_steps 5 (this run: 2)" in line
    rc, _, err = run(capsys, *solve_args(problem, tmp_path), "--seed", 1)
    assert "seed 0 (this run: 1)" in one_line(err)
    rc, _, err = run(capsys, *solve_args(problem, tmp_path)[:3], "psld", *solve_args(problem, tmp_path)[4:])
    assert "solver 'LDPS' (this run: 'PSLD')" in one_line(err)


def test_out_must_not_be_the_problem(problem, capsys):
    rc, _, err = run(capsys, "solve", problem, "--solver", "ldps", "--prior", V1, "--out", problem)
    assert rc == 2 and "--out must differ from the problem file" in one_line(err)


@pytest.mark.parametrize("where", ["missing folder", "read-only folder"])
def test_unwritable_out_is_refused_before_any_solving(problem, tmp_path, capsys, monkeypatch, where):
    """The defect: the error came after the first batch was solved, and named a temp file."""
    import os

    from diffprior import runner

    calls = []
    monkeypatch.setattr(runner, "solve_problem", lambda *a, **k: calls.append(1))
    if where == "missing folder":
        out = tmp_path / "no" / "such" / "r.h5"
    elif os.geteuid() == 0:  # root writes into read-only folders; sysfs refuses even root
        out = Path("/sys/r.h5")
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        out = folder / "r.h5"
    rc, _, err = run(capsys, "solve", problem, "--solver", "ldps", "--prior", V1, "--steps", 2, "--out", out)
    line = one_line(err)
    assert rc == 2 and f"--out {out}" in line and ".tmp" not in line and not calls, line
    assert ("does not exist" in line) if where == "missing folder" else ("cannot write in the folder" in line)
    assert not out.exists()


# ----------------------------------------------------------------------------- unexpected errors
def test_unexpected_errors_are_one_line_and_debug_shows_them(monkeypatch, capsys, tmp_path):
    from diffprior.commands import report

    def boom(args):
        raise RuntimeError("deep\ninside")

    monkeypatch.setattr(report, "run", boom)
    rc, _, err = run(capsys, "report", tmp_path / "r.h5")
    assert rc == 1 and one_line(err) == ("diffprior report: internal error: RuntimeError: deep inside (rerun with "
                                         "--debug for the traceback and please report it)")
    with pytest.raises(RuntimeError):
        main(["--debug", "report", str(tmp_path / "r.h5")])


@pytest.mark.parametrize("exc", [ValueError, TypeError, KeyError])
def test_a_library_bug_is_not_reported_as_a_user_error(monkeypatch, capsys, tmp_path, exc):
    """Only the library's user errors (DiffpriorError) and OS errors exit 2; a ValueError or
    TypeError from deep inside is a bug: exit 1 and 'please report it'."""
    from diffprior.commands import report

    def bug(args):
        raise exc("shapes (3,) and (4,) not aligned")

    monkeypatch.setattr(report, "run", bug)
    rc, _, err = run(capsys, "report", tmp_path / "r.h5")
    assert rc == 1 and "internal error" in one_line(err) and "please report it" in one_line(err)


def test_user_errors_of_the_library_exit_2(monkeypatch, capsys, tmp_path):
    from diffprior.commands import report
    from diffprior.errors import DiffpriorError
    from diffprior.io import CorruptFileError
    from diffprior.solvers import ConfigError

    for err_cls in (CorruptFileError, ConfigError, DiffpriorError, PermissionError):
        def user(args, err_cls=err_cls):
            raise err_cls("the file is bad")

        monkeypatch.setattr(report, "run", user)
        rc, _, err = run(capsys, "report", tmp_path / "r.h5")
        assert rc == 2 and "internal error" not in err and "the file is bad" in one_line(err), err_cls


def test_interrupt(monkeypatch, capsys, problem, tmp_path):
    from diffprior.commands import solve

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(solve, "run", interrupted)
    rc, _, err = run(capsys, *solve_args(problem, tmp_path))
    assert rc == 130 and "interrupted (finished samples are saved: rerun the same command to resume)" in one_line(err)


def test_long_messages_are_cut():
    assert cli.one_line("a\n  b\tc") == "a b c"
    assert len(cli.one_line("x " * 5000)) <= cli.MAX_MESSAGE


# ----------------------------------------------------------------------------- help
def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for sub_name, subsub in _subparsers(sub):
                    yield f"{name} {sub_name}", subsub


def test_help_documents_every_option(capsys):
    parsers = dict(_subparsers(build_parser()))
    assert {"simulate", "solve", "report", "train", "train vae", "train ldm", "train export"} <= set(parsers)
    for name, parser in [("", build_parser())] + list(parsers.items()):
        rc = main(name.split() + ["--help"])
        text, _ = capsys.readouterr()
        assert rc == 0 and text.startswith("usage: diffprior")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"diffprior {name}: {action.option_strings or action.dest} has no help"
            for opt in action.option_strings:
                assert opt in text, f"diffprior {name} --help does not show {opt}"
            if not action.option_strings:
                assert (action.metavar or action.dest) in text


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"diffprior {diffprior.__version__}"


# ----------------------------------------------------------------------------- console script
def test_console_script_error_is_one_line(tmp_path):
    script = shutil.which("diffprior", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the diffprior console script is not installed in this environment")
    proc = subprocess.run([script, "solve", str(tmp_path / "nope.h5"), "--solver", "p2l", "--out",
                           str(tmp_path / "r.h5")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert one_line(proc.stderr) == f"diffprior solve: error: No such file: {tmp_path / 'nope.h5'}"


def test_compilation_cache_folder_and_opt_out(tmp_path, monkeypatch):
    from diffprior import enable_compilation_cache

    import jax

    monkeypatch.setenv("DIFFPRIOR_CACHE", "off")
    assert enable_compilation_cache() is None
    before = jax.config.jax_compilation_cache_dir
    try:
        folder = enable_compilation_cache(tmp_path / "xla")
        assert folder == tmp_path / "xla" and folder.is_dir()
        assert jax.config.jax_compilation_cache_dir == str(folder)
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_training_folder_in_use_is_a_clear_error(tmp_path, capsys):
    from diffprior.train.common import RunLock

    lock = RunLock(tmp_path / "run")
    try:
        code = main(["train", "ldm", "--data", str(tmp_path / "data"), "--vae", str(tmp_path / "vae"),
                     "--out", str(tmp_path / "run")])
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert code == 2 and "in use by another training process" in err and "internal error" not in err
