"""Per-sample configurations: several settings of one solver in one compiled program.

A solver compiles one program per :class:`~diffprior.solvers.core.Plan`, and the plan holds
the strategies (hashable, static). Tasks solved with different presets would therefore
compile one program each, although their presets often differ only in numbers. Given one
configuration per sample (``config=[cfg_0, ..., cfg_{N-1}]``), :func:`merge` builds a single
plan and moves the settings that differ into :class:`Mix`, per-sample arrays that the core
reads as traced data:

==========================  ===========================================================
setting                     how the core applies it per sample
==========================  ===========================================================
``step_size``               already per-sample data (:math:`\\rho_n`)
``update``                  :class:`~diffprior.solvers.consistency.SelectUpdate`: every
                            option's direction is computed, sample :math:`n` takes its own
``prompt.iters``            the loop runs :math:`\\max_n K_n` tuning turns; turn :math:`k`
                            moves sample :math:`n`'s embedding only while :math:`k < K_n`
``prompt.shift_step``       :math:`\\zeta_n` of Eqs. 18-19
``projection.weight``       :math:`\\lambda_n` of Eq. 16
``projection.every``        sample :math:`n` projects when :math:`(S - 1 - i) \\bmod \\gamma_n = 0`;
                            the projection runs when any sample is due
==========================  ===========================================================

Each sample then follows the arithmetic of its own configuration: the result equals, to
floating-point tolerance, solving each group of samples with its own configuration
(``tests/test_mixed_configs.py``). The price is work: a sample pays for the largest
:math:`K` of the batch and for projections at the union of the periods, with its share
discarded where it is not due. Settings compiled into the program's structure (DDIM
:math:`\\eta`, the loss, the learning rate and betas of prompt tuning, CG iterations,
regularisers, the kind of projection) must agree; :func:`merge` refuses others by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from .consistency import ProximalProjection, SelectUpdate
from .prompt import PromptTuning

#: The settings that may differ between the samples of one batch.
PER_SAMPLE_SETTINGS = ("step_size", "update", "prompt.iters", "prompt.shift_step", "projection.weight",
                       "projection.every")


class Mix(NamedTuple):
    """Per-sample settings read by the core (``None``: the plan's single value applies).

    Attributes:
        update: index into :attr:`SelectUpdate.options`, ``(N,)`` int32.
        prompt_iters: :math:`K_n`, ``(N,)`` int32 (the plan's ``prompt.iters`` is the largest).
        zeta: shift step :math:`\\zeta_n` of Eqs. 18-19, ``(N,)`` float32.
        proj_weight: :math:`\\lambda_n` of Eq. 16, ``(N,)`` float32.
        proj_every: projection period :math:`\\gamma_n`, ``(N,)`` int32.
    """

    update: Any = None
    prompt_iters: Any = None
    zeta: Any = None
    proj_weight: Any = None
    proj_every: Any = None


class MixedConfigError(ValueError):
    """Per-sample configurations differ in a setting that is compiled into the program."""


def _differs(values) -> bool:
    return any(v != values[0] for v in values[1:])


def _refuse(solver: str, what: str) -> MixedConfigError:
    return MixedConfigError(
        f"{solver}: the per-sample configurations differ in {what}, which is compiled into the program; "
        f"solve those samples in separate runs (per sample may differ: {', '.join(PER_SAMPLE_SETTINGS)})")


def merge(solver: str, parts: Sequence[dict], group, step_size) -> tuple[dict, Mix]:
    """One plan's strategies for a batch whose samples have different configurations.

    Args:
        solver: the solver's name (for messages).
        parts: the strategies (``Plan`` keyword arguments: ``update``, ``prompt``,
            ``projection``, ``regularizers``, ``sampler``, ``loss``) of each distinct configuration.
        group: ``(N,)`` index into ``parts`` of each sample's configuration.
        step_size: ``(N,)`` per-sample :math:`\\rho` (the shift step of a prompt tuning
            without its own ``shift_step``).

    Returns:
        ``(parts, mix)``: the merged strategies and the per-sample :class:`Mix`.

    Raises:
        MixedConfigError: the configurations differ in a setting that cannot be per sample.
    """
    group = np.asarray(group, np.int64)
    keys = sorted({k for p in parts for k in p})
    merged, mix = {}, {}
    for key in keys:
        values = [p.get(key) for p in parts]
        if not _differs(values):
            merged[key] = values[0]
        elif key == "update":
            if any(v is None for v in values):
                raise _refuse(solver, "whether there is a guidance step")
            options = tuple(dict.fromkeys(values))
            merged[key] = SelectUpdate(options)
            mix["update"] = np.array([options.index(values[g]) for g in group], np.int32)
        elif key == "prompt":
            merged[key], fields = _merge_prompt(solver, values, group, step_size)
            mix.update(fields)
        elif key == "projection":
            merged[key], fields = _merge_projection(solver, values, group)
            mix.update(fields)
        else:
            raise _refuse(solver, _which_field(key, values))
    return merged, Mix(**{k: jnp.asarray(v) for k, v in mix.items()})


def _which_field(key: str, values) -> str:
    """``key``, or ``key.field`` naming the first field where dataclasses of one type differ."""
    if all(dataclasses.is_dataclass(v) and type(v) is type(values[0]) for v in values):
        for f in dataclasses.fields(values[0]):
            if _differs([getattr(v, f.name) for v in values]):
                return f"{key}.{f.name}"
    return key


def _agree(solver: str, kind: str, values, free: tuple) -> None:
    for f in dataclasses.fields(values[0]):
        if f.name not in free and _differs([getattr(v, f.name) for v in values]):
            raise _refuse(solver, f"{kind}.{f.name}")


def _merge_prompt(solver, values, group, step_size):
    if any(v is None for v in values):
        raise _refuse(solver, "whether the prompt is tuned")
    if not all(isinstance(v, PromptTuning) for v in values):
        raise _refuse(solver, "the kind of prompt tuning")
    _agree(solver, "prompt", values, ("iters", "shift_step"))
    fields = {}
    iters = [v.iters for v in values]
    if _differs(iters):
        if not values[0].reset:
            raise _refuse(solver, "prompt.iters with reset=False (Adam's step count would differ per sample)")
        fields["prompt_iters"] = np.array([iters[g] for g in group], np.int32)
    shifts = [v.shift_step for v in values]
    if _differs(shifts):
        rho = np.asarray(step_size, np.float32)
        fields["zeta"] = np.array([rho[n] if shifts[g] is None else shifts[g] for n, g in enumerate(group)],
                                  np.float32)
    return dataclasses.replace(values[0], iters=max(iters)), fields


def _merge_projection(solver, values, group):
    if any(v is None for v in values):
        raise _refuse(solver, "whether there is a projection")
    if not all(type(v) is ProximalProjection for v in values):
        raise _refuse(solver, "the kind of projection (only ProximalProjection's weight and period may differ)")
    _agree(solver, "projection", values, ("weight", "every"))
    fields = {}
    if _differs([v.weight for v in values]):
        fields["proj_weight"] = np.array([values[g].weight for g in group], np.float32)
    if _differs([v.every for v in values]):
        fields["proj_every"] = np.array([values[g].every for g in group], np.int32)
    return values[0], fields
