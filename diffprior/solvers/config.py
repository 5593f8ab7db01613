"""What every solver configuration shares: task presets, JSON round-trip, dotted overrides.

A configuration is a frozen, keyword-only dataclass whose fields are numbers, strings,
enums, tuples and nested frozen dataclasses (the strategy objects of
:mod:`diffprior.solvers.consistency` and :mod:`diffprior.solvers.prompt`). Three operations
work on all of them:

* :meth:`SolverConfig.for_task` -- the preset for a task and preset table (the paper's
  values, or the values searched for the bundled prior in :mod:`diffprior.solvers.tuned`);
* :meth:`SolverConfig.to_json` / :meth:`SolverConfig.from_json` -- a JSON object with every
  dataclass tagged by its class name (``{"type": "P2LConfig", "prompt": {"type":
  "PromptTuning", "iters": 3, ...}, ...}``), read back into an equal configuration;
* :meth:`SolverConfig.override` -- replace fields by dotted names and text values, as
  ``diffprior solve --set prompt.iters=1`` does: ``{"step_size": "0.3", "prompt.iters":
  "1", "projection": "none", "update": "AdamHistory"}``. Values are parsed as JSON where
  they parse (numbers, ``true``, ``null``, lists), ``none`` means ``None``, and the name of
  a strategy class builds it with its defaults. Each replaced dataclass is validated again
  by its ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Dict, Mapping

from ..errors import DiffpriorError
from ..jsonable import to_json
from .common import Dataset, Task

__all__ = ["SolverConfig", "ConfigError", "register_component", "COMPONENTS"]

#: Dataclasses that may appear inside a configuration, by class name (for ``from_json`` and
#: ``override``); configuration classes register themselves when they are defined.
COMPONENTS: Dict[str, type] = {}


def register_component(cls: type) -> type:
    """Class decorator: let :meth:`SolverConfig.from_json` and ``override`` build ``cls`` by name."""
    COMPONENTS[cls.__name__] = cls
    return cls


class ConfigError(DiffpriorError, ValueError):
    """A configuration override or JSON object that does not fit the configuration."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SolverConfig:
    """Base of the solvers' configuration dataclasses (see the module docstring)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        COMPONENTS[cls.__name__] = cls

    # ------------------------------------------------------------------ presets
    @classmethod
    def for_task(cls, task: Task, dataset: Dataset = Dataset.IMAGENET, **overrides) -> "SolverConfig":
        """The preset for ``task``: the paper's values (our reading of them) for ``FFHQ`` and
        ``IMAGENET``; for ``CIFAR10`` (the bundled prior) the ImageNet preset with the values of
        the validation search in :mod:`diffprior.solvers.tuned`.

        Args:
            task: a :class:`~diffprior.solvers.common.Task`.
            dataset: a :class:`~diffprior.solvers.common.Dataset` (default ImageNet).
            **overrides: fields to replace (e.g. ``eta=0.5``).
        """
        from .tuned import tuned_values

        task, dataset = Task(task), Dataset(dataset)
        cfg = cls._paper_preset(task, Dataset.IMAGENET if dataset is Dataset.CIFAR10 else dataset)
        if dataset is Dataset.CIFAR10:
            cfg = cfg.with_values(tuned_values(cls.__name__.removesuffix("Config"), task))
        return dataclasses.replace(cfg, **overrides)

    @classmethod
    def _paper_preset(cls, task: Task, dataset: Dataset) -> "SolverConfig":
        """The paper's setting for ``task`` on ``dataset`` (default: the class defaults)."""
        return cls()

    def with_values(self, values: dict) -> "SolverConfig":
        """A copy with fields replaced, by flat names.

        A name ``<field>_<attr>`` whose ``<field>`` is a nested component of the config sets
        that component's attribute: ``prompt_lr``, ``prompt_iters``, ``prompt_shift_step``
        (:class:`~diffprior.solvers.prompt.PromptTuning`), ``projection_weight``,
        ``projection_every``, ``projection_cg_iters`` (the projection of P2L). Other names are
        the config's own fields (``step_size``, ``eta``, ``fixed_point_weight``, ...).
        """
        values, nested = dict(values), {}
        for name in list(values):
            field, _, attr = name.partition("_")
            sub = getattr(self, field, None) if attr else None
            if dataclasses.is_dataclass(sub) and attr in {f.name for f in dataclasses.fields(sub)}:
                nested.setdefault(field, {})[attr] = values.pop(name)
        for field, attrs in nested.items():
            values[field] = dataclasses.replace(getattr(self, field), **attrs)
        return dataclasses.replace(self, **values)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        """The configuration as JSON types, every dataclass tagged ``{"type": class name}``."""
        return to_json(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "SolverConfig":
        """Rebuild a configuration written by :meth:`to_json`.

        Raises:
            ConfigError: The object names another configuration class, an unknown field or
                an unknown component type.
        """
        if not isinstance(obj, Mapping):
            raise ConfigError(f"a {cls.__name__} JSON object must be a dict, got {type(obj).__name__}")
        name = obj.get("type", cls.__name__)
        if name != cls.__name__:
            raise ConfigError(f"the JSON object is a {name}, not a {cls.__name__}")
        return _decode(dict(obj, type=cls.__name__), cls())

    # ------------------------------------------------------------------ overrides
    def override(self, assignments: Mapping[str, Any]) -> "SolverConfig":
        """A copy with fields set by dotted names (values as text or Python values).

        Raises:
            ConfigError: An unknown field (the message lists the known ones), a field of a
                component that is ``None``, or a value the field refuses.
        """
        cfg = self
        for name, text in assignments.items():
            cfg = _set_path(cfg, name.split("."), parse_value(text), name)
        return cfg


# ----------------------------------------------------------------------------- helpers
def _component(name: str) -> type:
    try:
        return COMPONENTS[name]
    except KeyError:
        raise ConfigError(f"unknown configuration component {name!r}; known: {', '.join(sorted(COMPONENTS))}") \
            from None


def _decode(value: Any, template: Any) -> Any:
    """A JSON value back to the Python type of ``template`` (the field's current value)."""
    if isinstance(value, dict) and "type" in value:
        cls = _component(value["type"])
        default = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - known - {"type"}
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}; "
                              f"its fields: {', '.join(sorted(known))}")
        kwargs = {k: _decode(v, getattr(default, k)) for k, v in value.items() if k != "type"}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{cls.__name__}: {e}") from e
    if value is None:
        return None
    if isinstance(template, enum.Enum):
        try:
            return type(template)(value)
        except ValueError as e:
            raise ConfigError(str(e)) from e
    if isinstance(value, list):
        return tuple(_decode(v, None) for v in value)
    if isinstance(template, bool) or isinstance(value, bool):
        return value
    if isinstance(template, float) and isinstance(value, int):
        return float(value)
    return value


def parse_value(text: Any) -> Any:
    """The Python value of an override given as text (JSON where it parses; ``none`` is None)."""
    if not isinstance(text, str):
        return text
    s = text.strip()
    if s.lower() in ("none", "null"):
        return None
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return s


def _coerce(value: Any, current: Any, path: str) -> Any:
    if isinstance(value, str) and value in COMPONENTS and not isinstance(current, (str, enum.Enum)):
        return COMPONENTS[value]()
    if isinstance(value, dict):
        if "type" not in value:
            if not dataclasses.is_dataclass(current):
                raise ConfigError(f"{path}: a JSON object needs a \"type\" naming a component class")
            value = dict(value, type=type(current).__name__)
        return _decode(value, current)
    return _decode(value, current)


def _set_path(obj: Any, parts: list, value: Any, full: str) -> Any:
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"cannot set {full}: {'.'.join(parts)} is inside {obj!r}, which has no fields")
    fields = {f.name for f in dataclasses.fields(obj)}
    head = parts[0]
    if head not in fields:
        raise ConfigError(f"{type(obj).__name__} has no field {head!r} (in --set {full}); its fields: "
                          f"{', '.join(sorted(fields))}")
    current = getattr(obj, head)
    if len(parts) > 1:
        if current is None:
            raise ConfigError(f"cannot set {full}: {head} is None; set {head} to a component first "
                              f"(e.g. --set {head}=<ClassName>)")
        new = _set_path(current, parts[1:], value, full)
    else:
        new = _coerce(value, current, full)
    try:
        return dataclasses.replace(obj, **{head: new})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--set {full}: {e}") from e
