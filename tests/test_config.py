"""Solver configurations: every registered solver's presets survive JSON, and ``--set`` style
dotted overrides reach every field (``diffprior solve --set``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from diffprior.solvers import (SOLVERS, AdamHistory, ConfigError, Dataset, P2LConfig, PromptTuning, Task,
                               TVADMMConfig)
from diffprior.solvers.config import SolverConfig

PIXEL_FIXTURE = Path(__file__).parent / "fixtures" / "ddpm_tiny" / "cifar"


def _presets(cls):
    yield cls()
    for dataset in Dataset:
        for task in Task:
            yield cls.for_task(task, dataset)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_preset_round_trips_through_json(name):
    cfg_cls = SOLVERS[name].config_class
    assert issubclass(cfg_cls, SolverConfig)
    for cfg in _presets(cfg_cls):
        text = json.dumps(cfg.to_json())
        back = cfg_cls.from_json(json.loads(text))
        assert back == cfg and type(back) is type(cfg), (name, cfg)
        assert json.dumps(back.to_json()) == text


def test_round_trip_keeps_per_sample_steps_none_and_nested_types():
    cfg = P2LConfig(step_size=(0.1, 0.2), update=AdamHistory(b1=0.8), prompt=None, projection=None)
    back = P2LConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert back == cfg and back.step_size == (0.1, 0.2) and isinstance(back.update, AdamHistory)


def test_from_json_refuses_foreign_or_unknown_content():
    with pytest.raises(ConfigError, match="is a TVADMMConfig, not a P2LConfig"):
        P2LConfig.from_json(TVADMMConfig().to_json())
    bad = P2LConfig().to_json()
    bad["prompt"]["iterz"] = 3
    with pytest.raises(ConfigError, match="PromptTuning has no field"):
        P2LConfig.from_json(bad)
    bad = P2LConfig().to_json()
    bad["update"] = {"type": "Momentum"}
    with pytest.raises(ConfigError, match="unknown configuration component 'Momentum'"):
        P2LConfig.from_json(bad)


def test_override_by_dotted_names():
    base = P2LConfig.for_task(Task.SR, Dataset.CIFAR10)
    cfg = base.override({"step_size": "0.5", "prompt.iters": "1", "prompt.lr": "3e-3", "eta": "0",
                         "update": "AdamHistory", "projection.weight": "0.01"})
    assert cfg.step_size == 0.5 and cfg.prompt.iters == 1 and cfg.prompt.lr == 0.003 and cfg.eta == 0.0
    assert isinstance(cfg.update, AdamHistory) and cfg.projection.weight == 0.01
    assert cfg.prompt.shift_step == base.prompt.shift_step  # untouched fields keep the preset's value
    assert base.override({"projection": "none"}).projection is None
    assert base.override({"step_size": "[0.1, 0.2]"}).step_size == (0.1, 0.2)
    assert base.override({"loss": "squared"}).loss.value == "squared"
    nested = base.override({"prompt": '{"iters": 2, "lr": 0.1}'}).prompt
    assert nested == PromptTuning(iters=2, lr=0.1)


def test_override_errors_name_the_field_and_the_choices():
    cfg = P2LConfig()
    with pytest.raises(ConfigError, match=r"P2LConfig has no field 'rho'.*its fields: eta, loss, projection"):
        cfg.override({"rho": "1"})
    with pytest.raises(ConfigError, match="PromptTuning has no field 'iterations'"):
        cfg.override({"prompt.iterations": "1"})
    with pytest.raises(ConfigError, match="prompt is None; set prompt to a component first"):
        dataclasses.replace(cfg, prompt=None).override({"prompt.iters": "1"})
    with pytest.raises(ConfigError, match="eta must be in"):
        cfg.override({"eta": "3"})
    with pytest.raises(ConfigError, match="step_size"):
        cfg.override({"step_size": "-1"})
    with pytest.raises(ConfigError, match="'fast' is not a valid Loss"):
        cfg.override({"loss": "fast"})


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_cli_set_reaches_every_registered_solver(name, tmp_path):
    """``diffprior solve --set`` builds each solver's configuration (without solving)."""
    import argparse

    import numpy as np

    from diffprior.commands import solve
    from diffprior.io import write_problem

    write_problem(tmp_path / "p.h5", np.zeros((1, 8, 8, 3), np.float32),
                  {"class": "Downsample", "input_shape": [32, 32, 3], "factor": 4, "method": "average"}, 0.005,
                  task="sr4-avg")
    cls = SOLVERS[name]
    # a weight every solver of its family has, and a second field (DDS and DiffPIR have no step
    # size: no guidance step; DiffPIR has no eta: its re-noising has zeta)
    names = {f.name for f in dataclasses.fields(cls.config_class)}
    field = next(f for f in ("step_size", "rho", "gamma", "lmbda") if f in names)
    second, value = next((f, v) for f, v in (("eta", 0.5), ("maxiter", 7), ("zeta", 0.5)) if f in names)
    parser = argparse.ArgumentParser()
    solve.add_parser(parser.add_subparsers())
    # the pixel solvers on the pixel fixture (the bundled pixel prior may not be installed)
    prior = ["--prior", str(PIXEL_FIXTURE)] if cls.uses_prior and cls.pixel_space else []
    args = parser.parse_args(["solve", str(tmp_path / "p.h5"), "--solver", name, "--out", str(tmp_path / "r.h5"),
                              "--set", f"{field}=0.25", "--set", f"{second}={value}", *prior])
    from diffprior.io import read_problem
    from diffprior.priors import preset_table

    solver_cls, config, task, prior_path, hyper = solve._settings(args, read_problem(tmp_path / "p.h5"))
    assert solver_cls is cls and task == "sr"
    assert getattr(config, field) == 0.25
    assert getattr(config, second) == value
    # the other fields are the preset's (the bundled latent prior's table: its metadata says
    # cifar10; the pixel fixture has no metadata: the papers' presets)
    preset = cls.config_class.for_task(Task.SR, Dataset.CIFAR10 if not prior else preset_table(prior_path))
    assert dataclasses.replace(config, **{field: getattr(preset, field), second: getattr(preset, second)}) == preset
    assert cls.config_class.from_json(hyper["config"]) == config
