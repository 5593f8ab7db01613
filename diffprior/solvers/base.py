"""The solver shell shared by all diffusion solvers, latent and pixel (the scico-style face of the core).

A solver is built with keyword arguments only and run with :meth:`Solver.solve`::

    solver = P2L(y=y, A=A, prior=prior, num_steps=200, key=jax.random.key(0),
                 config=P2LConfig.for_task(Task.SR), itstat_options={"display": True, "period": 50})
    x = solver.solve()            # (N, H, W, C) in [0, 1]
    solver.history().residual     # (steps, N)

Under it, :meth:`Solver.init` and :meth:`Solver.step` are the pure core (see
:mod:`diffprior.solvers.core`); ``solve`` runs it under ``jax.jit`` with ``lax.scan`` over
chunks of ``chunk_size`` steps and, between chunks, on the host: the iteration table, the
progress bar, the callback, and the chance to :meth:`save_state`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import tempfile
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..schedule import ddim_timesteps
from .common import Loss, Status, Task, check_prior, check_prior_kind, make_forward, per_sample, residual
from .config import SolverConfig
from .core import Data, Plan, State, StepStats, decode_images, init_state, run_chunk
from .mixing import Mix, merge
from .itstat import IterationTable
from .samplers import DDIMStep
from .sharding import BatchSharding, padded_indices, resolve_devices

_STATE_FORMAT = 1


class SolverFailure(RuntimeError):
    """Some samples failed (non-finite or diverged); the others finished.

    Attributes:
        x: ``(N, H, W, C)`` reconstructions; failed samples are NaN.
        status: per-sample :class:`~diffprior.solvers.common.Status` codes.
        failed: indices of the failed samples.
        failed_at: for each failed sample, the 0-based step at which it failed.
    """

    def __init__(self, message: str, x, status, failed, failed_at):
        super().__init__(message)
        self.x = x
        self.status = status
        self.failed = tuple(int(i) for i in failed)
        self.failed_at = tuple(int(i) for i in failed_at)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SamplerConfig(SolverConfig):
    """Hyperparameters every latent-diffusion solver has (presets, JSON and overrides:
    :class:`~diffprior.solvers.config.SolverConfig`).

    Attributes:
        step_size: guidance step :math:`\\rho`, a scalar or one value per sample.
        eta: DDIM stochasticity (0 deterministic, 1 DDPM-like). The paper's value is
            unreadable in our copy (default 0; for the bundled prior chosen by validation
            search, :mod:`diffprior.solvers.tuned`).
        loss: :class:`~diffprior.solvers.common.Loss` of the guidance residual.
    """

    step_size: float | tuple = 1.0
    eta: float = 0.0
    loss: Loss = Loss.NORM

    def __post_init__(self):
        rho = np.asarray(self.step_size, np.float64)
        if rho.ndim > 1 or not np.all(np.isfinite(rho)) or np.any(rho < 0):
            raise ValueError(f"step_size must be a finite non-negative scalar or tuple, got {self.step_size}")
        if isinstance(self.step_size, (list, np.ndarray)):
            object.__setattr__(self, "step_size", tuple(float(v) for v in rho))
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        object.__setattr__(self, "loss", Loss(self.loss))


def _check_key(key):
    """One PRNG key (shape ``()`` typed or ``(2,)`` uint32) or a batch of them (``(N,)`` / ``(N, 2)``).

    Returns ``(key, batched)``.
    """
    if isinstance(key, (jax.Array, np.ndarray)):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim <= 1:
            return key, key.ndim == 1
        if key.dtype == np.uint32 and key.ndim in (1, 2) and key.shape[-1] == 2:
            return jnp.asarray(key), key.ndim == 2
    raise TypeError("key must be a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)) or one key per "
                    f"sample, got {type(key).__name__}"
                    + (f" of shape {key.shape} and dtype {key.dtype}" if hasattr(key, "shape") else ""))


def sample_keys(key, indices):
    """The per-sample keys ``fold_in(key, i)`` for the sample indices ``indices``.

    A solver given one ``key`` uses ``sample_keys(key, range(N))``; passing
    ``key=sample_keys(key, global_indices)`` instead makes a sample's result independent of
    the batch it is solved in (as ``diffprior solve`` does).
    """
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices, jnp.uint32))


class Solver:
    """Base class of the diffusion solvers, latent and pixel-space (keyword-only construction).

    Args:
        y: measurement, ``A.output_shape`` (one sample) or ``(N, *A.output_shape)``, in the
            units of ``A`` applied to ``[0, 1]`` images; finite.
        A: forward model: a ``scico`` ``LinearOperator`` (needed by projections and PSLD) or
            ``Operator`` on one image ``(H, W, C)`` or on the batch, or a differentiable
            callable on the batch ``(N, H, W, C)`` (then pass ``image_shape``).
        prior: a :class:`~diffprior.prior.LatentDiffusionPrior` (or an object implementing
            :class:`~diffprior.solvers.common.LatentPrior`); a pixel-space prior for DPS, DDS
            and DiffPIR. Where the prior has ``metadata``, the solver checks that it fits
            (:meth:`check_prior_kind`); a prior without it is taken as it is.
        key: a JAX PRNG key (sample ``n`` of the batch then uses ``fold_in(key, n)``), or one
            key per sample, ``(N,)`` typed or ``(N, 2)`` uint32 (see :func:`sample_keys`); the
            same keys give the same output, bit for bit.
        num_steps: reverse steps (default: the algorithm's, :attr:`default_num_steps`: 1000 as
            in the papers of the latent solvers and DPS, 50 for DDS, 100 for DiffPIR).
        config: the algorithm's configuration dataclass, or a
            :class:`~diffprior.solvers.common.Task` for its preset; default: the class's. Or
            one of those per sample (a list of N): samples whose settings differ only in
            numbers (:data:`~diffprior.solvers.mixing.PER_SAMPLE_SETTINGS`) share one compiled
            program, each following its own configuration (:mod:`~diffprior.solvers.mixing`).
        prompt: initial text prompt (a string, one string per sample, or an embedding array
            ``(1 or N, L, D)``); default: the algorithm's.
        image_shape: ``(H, W, C)`` when ``A`` has no ``input_shape``.
        chunk_size: steps per compiled ``lax.scan`` chunk (the host sees the solver between
            chunks: table, progress bar, callback, :meth:`save_state`).
        divergence_threshold: a sample whose latent magnitude exceeds it is marked diverged.
        itstat_options: ``{"display": bool, "period": int}`` for the iteration table.
        progress: show a tqdm progress bar (default: when stderr is a terminal and the table
            is off).
        devices: split the batch over devices (:mod:`~diffprior.solvers.sharding`): ``None``
            (default: one device), ``"all"``, a count, or a list of ``jax.Device``. A batch that
            does not divide by the count is padded with copies of its last sample (outputs
            drop them); a padded batch needs ``A`` per image or an operator of
            :mod:`operators` (which can ``take`` samples).

    Raises:
        TypeError: wrong type of prior, key, config or operator (e.g. a projection with a
            non-linear ``A``), or an unknown keyword argument.
        PriorMismatchError: (a ``TypeError``) the prior's metadata says it is of the wrong
            kind for the solver or one of its options (:meth:`check_prior_kind`).
        ValueError: shapes that do not fit, non-finite ``y``, bad hyperparameters.
    """

    config_class: type = SamplerConfig
    default_prompt: str = ""
    #: reverse steps when ``num_steps`` is not given (``diffprior solve`` without ``--steps`` too)
    default_num_steps: int = 1000
    #: True for the pixel-space solvers (DPS, DDS, DiffPIR), which need a pixel-space prior
    pixel_space: bool = False
    uses_prior = True

    def __init__(self, *, y, A, prior, key, num_steps: int | None = None, config=None,
                 prompt: str | Sequence[str] | jax.Array | None = None, image_shape: Sequence[int] | None = None,
                 chunk_size: int = 10, divergence_threshold: float = 1e3, itstat_options: dict | None = None,
                 progress: bool | None = None, devices=None, **unknown):
        name = type(self).__name__
        if unknown:
            known = [p for p in inspect.signature(Solver.__init__).parameters if p not in ("self", "unknown")]
            raise TypeError(f"{name} got unexpected keyword argument(s) {', '.join(map(repr, sorted(unknown)))}; "
                            f"it takes {', '.join(known)} (algorithm hyperparameters go in config="
                            f"{self.config_class.__name__}(...))")
        check_prior(prior)
        key, batched_key = _check_key(key)
        if num_steps is None:
            num_steps = self.default_num_steps
        if not isinstance(num_steps, (int, np.integer)) or isinstance(num_steps, bool) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if not divergence_threshold > 0:
            raise ValueError(f"divergence_threshold must be > 0, got {divergence_threshold}")
        configs = None
        if isinstance(config, (list, tuple)):
            configs = [self._resolve_config(c) for c in config]
            distinct = list(dict.fromkeys(configs))
            config = distinct[0] if len(distinct) == 1 else tuple(configs)
        else:
            config = self._resolve_config(config)
            distinct = [config]
        for c in distinct:
            self.check_prior_kind(prior, c)
        fwd, y, n = make_forward(A, y, image_shape)
        if configs is not None and len(configs) != n:
            raise ValueError(f"got {len(configs)} configurations for {n} samples (one per sample, or a single one)")
        if batched_key and key.shape[0] != n:
            raise ValueError(f"got {key.shape[0]} per-sample keys for {n} samples")
        self.devices = resolve_devices(devices)
        run = np.arange(n)
        if self.devices is not None and len(self.devices) > 1:
            run = padded_indices(n, len(self.devices))
            if run.size != n:
                fwd, y = self._padded_forward(A, fwd, y, image_shape, run)

        self.A, self.prior, self.key, self.config = A, prior, key, config
        self.num_steps, self.chunk_size, self.n = int(num_steps), int(min(chunk_size, num_steps)), n
        self.image_shape = fwd.image_shape
        latent_shape = self._latent_shape(prior, fwd.image_shape)

        step_size = np.stack([np.asarray(per_sample(getattr(c, "step_size", 0.0), n, "step_size")) for c in distinct])
        if len(distinct) == 1:
            parts, mix, step_size = self._plan_parts(distinct[0]), None, step_size[0]
        else:
            group = np.array([distinct.index(c) for c in configs])
            step_size = step_size[group, np.arange(n)]
            parts, mix = merge(name, [self._plan_parts(c) for c in distinct], group, step_size)
            mix = Mix(*(None if a is None else a[run] for a in mix))
        needs = [p for p in (*parts.get("regularizers", ()), parts.get("projection")) if p is not None
                 and getattr(p, "needs_adjoint", False)]
        if needs and not fwd.linear:
            raise TypeError(f"{name}: {type(needs[0]).__name__} needs the adjoint A.adj, so A must be a "
                            f"scico.linop.LinearOperator; got {type(A).__name__}. Non-linear operators work "
                            "with the gradient steps only (LDPS, LDIR, GMLDPS, DPS, or P2L with projection=None).")
        self.plan = Plan(latent_shape=latent_shape, divergence_threshold=float(divergence_threshold), **parts)

        sched = prior.schedule
        ts = ddim_timesteps(self.num_steps, int(sched.alphas_cumprod.shape[0]), int(getattr(sched, "steps_offset", 0)))
        self.data = Data(prior=prior, fwd=fwd, y=y, timesteps=jnp.asarray(ts), prev_timesteps=jnp.asarray(np.append(ts[1:], -1)),
                         step_size=jnp.asarray(step_size)[run],
                         keys=key[run] if batched_key else sample_keys(key, run),
                         emb0=self._embedding(prior, prompt, n)[run], mix=mix)
        self._run = run
        self.sharding = None
        if self.devices is not None and len(self.devices) > 1:
            self.sharding = BatchSharding(self.devices, run.size)
            self.data = self.sharding.place_data(self.data)

        opts = dict(itstat_options or {})
        unknown = set(opts) - {"display", "period"}
        if unknown:
            raise TypeError(f"unknown itstat_options {sorted(unknown)} (known: display, period)")
        columns = [("Iter", "{:>5d}"), ("Time", "{:>9.2e}"), ("t", "{:>4d}"), ("Residual", "{:>9.3e}")]
        if self.plan.prompt is not None:
            columns.append(("Prompt Rsdl", "{:>9.3e}"))
        columns.append(("Failed", "{:>6d}"))
        self.itstat = IterationTable(columns, display=opts.get("display", False), period=opts.get("period", 1))
        self.progress = progress

        self._state: State | None = None
        self._history: list = []
        self.step_index = 0
        self.elapsed = 0.0
        self.x = None

    # ------------------------------------------------------------------ to be provided by subclasses
    def _components(self, config) -> dict:
        """Map the configuration to :class:`~diffprior.solvers.core.Plan` strategies (``update``,
        ``prompt``, ``regularizers``, ``projection``; ``sampler`` defaults to DDIM with the
        configuration's :math:`\\eta`)."""
        raise NotImplementedError(f"{type(self).__name__} is abstract: use P2L, LDPS, GMLDPS, PSLD, LDIR, DPS, DDS "
                                  "or DiffPIR")

    @classmethod
    def _prior_requirements(cls, config) -> list:
        """What the configuration needs of the prior's metadata: ``(field, value, what, hint)``
        tuples (:func:`~diffprior.solvers.common.check_prior_kind`). A pixel-space solver needs
        a pixel-space prior, prompt tuning a text-conditioned one; subclasses add their own."""
        reqs = []
        if cls.pixel_space:
            reqs.append(("latent", False, "this pixel-space solver",
                         "with a latent prior use LDPS (DPS's update in the latent space), P2L, PSLD, GMLDPS or LDIR"))
        if getattr(config, "prompt", None) is not None:
            reqs.append(("conditioning", True, "prompt tuning",
                         "turn it off (prompt=None, --set prompt=none) or use a text-conditioned prior"))
        return reqs

    @classmethod
    def check_prior_kind(cls, prior, config=None) -> None:
        """Check that ``prior`` is of the kind this solver and ``config`` need, from its metadata.

        A pixel-space solver (DPS, DDS, DiffPIR) needs a pixel-space prior
        (``metadata.latent`` False); P2L's projection onto the encoder's range a latent one;
        prompt tuning a text-conditioned one (``metadata.conditioning``). A prior without
        ``metadata`` (a minimal stand-in implementing the protocol) is not checked.

        Args:
            prior: the prior.
            config: the configuration (a ``config_class`` instance or a ``Task``; default the
                class's).

        Raises:
            PriorMismatchError: (a ``TypeError``) with a one-line message naming the solver,
                what needs the other kind and the prior's kind.
        """
        check_prior_kind(cls.__name__, prior, cls._prior_requirements(cls._resolve_config(config)))

    # ------------------------------------------------------------------ construction helpers
    def _plan_parts(self, config) -> dict:
        """:class:`~diffprior.solvers.core.Plan` keyword arguments of one configuration (all but
        the shapes and the divergence threshold)."""
        parts = self._components(config)
        # a regulariser of weight 0 is no term at all: left out, so that e.g. GML-DPS or PSLD at
        # gamma = 0 runs LDPS's program (same result, bit for bit, at LDPS's cost)
        parts["regularizers"] = tuple(r for r in parts.get("regularizers", ())
                                      if not np.all(np.asarray(getattr(r, "weight", 1.0)) == 0))
        if "sampler" not in parts:
            parts["sampler"] = DDIMStep(eta=float(config.eta))
        # solvers without a guidance step (update None: DDS, DiffPIR) have no step_size or loss
        parts["loss"] = getattr(config, "loss", Loss.NORM)
        return parts

    @staticmethod
    def _padded_forward(A, fwd, y, image_shape, run):
        """The forward model and measurement of the padded batch ``run`` (sample indices)."""
        if not fwd.batched:
            return fwd, y[run]
        if not hasattr(A, "take"):
            raise ValueError(f"{y.shape[0]} samples do not split evenly over the devices, and A "
                             f"({type(A).__name__}) acts on the whole batch without a take() to pad it: "
                             "pass a batch that is a multiple of the device count")
        fwd, y, _ = make_forward(A.take(run), y[run], image_shape)
        return fwd, y

    @classmethod
    def _resolve_config(cls, config):
        if config is None:
            return cls.config_class()
        if isinstance(config, Task):
            return cls.config_class.for_task(config)
        if not isinstance(config, cls.config_class):
            raise TypeError(f"{cls.__name__} config must be a {cls.config_class.__name__} or a Task, "
                            f"got {type(config).__name__}")
        return config

    @staticmethod
    def _latent_shape(prior, image_shape) -> tuple:
        spec = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
        try:
            z = jax.eval_shape(prior.encode, spec)
            x = jax.eval_shape(prior.decode, z)
        except Exception as e:  # noqa: BLE001 -- the prior's own error, reworded with the shapes
            raise ValueError(f"images of shape {tuple(image_shape)} do not fit the prior: {e}") from e
        if tuple(x.shape[1:]) != tuple(image_shape):
            raise ValueError(f"the prior decodes latents {tuple(z.shape[1:])} to images {tuple(x.shape[1:])}, "
                             f"but A acts on images {tuple(image_shape)}")
        return tuple(z.shape[1:])

    def _embedding(self, prior, prompt, n: int):
        if prompt is None:
            prompt = self.default_prompt
        if isinstance(prompt, str):
            emb = prior.embed([prompt])
        elif isinstance(prompt, Sequence) and all(isinstance(p, str) for p in prompt):
            if len(prompt) != n:
                raise ValueError(f"got {len(prompt)} prompts for {n} samples")
            emb = prior.embed(list(prompt))
        else:
            emb = jnp.asarray(prompt, jnp.float32)
            if emb.ndim != 3 or emb.shape[0] not in (1, n):
                raise ValueError(f"a prompt embedding must be (1, L, D) or ({n}, L, D), got {emb.shape}")
            if not bool(jnp.all(jnp.isfinite(emb))):
                raise ValueError("the prompt embedding contains NaN or infinity")
        emb = jnp.asarray(emb, jnp.float32)
        return jnp.broadcast_to(emb, (n, *emb.shape[1:]))

    # ------------------------------------------------------------------ pure core
    def init(self) -> State:
        """The initial :class:`~diffprior.solvers.core.State` (pure)."""
        return self.plan.init(self.data)

    def step(self, state: State, i) -> tuple[State, StepStats]:
        """Reverse step ``i`` (pure, jittable): ``(state, i) -> (state, StepStats)``."""
        return self.plan.step(self.data, state, i)

    @property
    def state(self) -> State:
        """The current state (initialised on first access)."""
        if self._state is None:
            self._state = init_state(self.plan, self.data)
            if self.sharding is not None:
                self._state = self.sharding.place_state(self._state)
        return self._state

    # ------------------------------------------------------------------ running
    def compile(self, on_lowered: Callable | None = None) -> float:
        """Compile the solver's step chunk ahead of time (no step is run); return the seconds taken.

        :meth:`solve` compiles on its first chunk anyway; calling this first separates the
        compilation time from the solving time (as the benchmarks report them). Solvers with
        the same plan and shapes share one compiled program. ``on_lowered()`` is called between
        tracing (Python, holding the interpreter lock) and XLA's compilation (which releases it),
        so that another thread can start its own tracing then.
        """
        t0 = time.perf_counter()
        steps = jnp.zeros((self.chunk_size,), jnp.int32)
        lowered = run_chunk.lower(self.plan, self.data, self.state, steps, jnp.ones((self.chunk_size,), bool))
        if on_lowered is not None:
            on_lowered()
        lowered.compile()
        return time.perf_counter() - t0

    def advance(self, num_steps: int | None = None, callback: Callable | None = None) -> int:
        """Run ``num_steps`` more steps (default: all that remain); return the step index reached.

        ``callback(solver)`` is called on the host after every chunk.
        """
        stop = self.num_steps if num_steps is None else min(self.num_steps, self.step_index + int(num_steps))
        show = self.progress if self.progress is not None else (
            not self.itstat.display and sys.stderr.isatty() and self.num_steps >= 20)
        bar = None
        if show and stop > self.step_index:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.num_steps, initial=self.step_index, desc=type(self).__name__, unit="step")
        try:
            state = self.state
            while self.step_index < stop:
                t0 = time.perf_counter()
                steps = np.arange(self.step_index, self.step_index + self.chunk_size)
                valid = steps < stop
                state, stats = run_chunk(self.plan, self.data, state, jnp.asarray(np.minimum(steps, self.num_steps - 1),
                                                                                   jnp.int32), jnp.asarray(valid))
                m = int(valid.sum())
                stats = StepStats(*(np.asarray(a)[:m, :self.n] if a.ndim >= 2 else np.asarray(a)[:m] for a in stats))
                self._state = state
                self.elapsed += time.perf_counter() - t0
                self._history.append(stats)
                self._print_rows(stats, stop)
                self.step_index += m
                if bar is not None:
                    bar.update(m)
                    bar.set_postfix(residual=f"{_mean_ok(stats.residual[-1], stats.status[-1]):.3g}")
                if callback is not None:
                    callback(self)
        finally:
            if bar is not None:
                bar.close()
        return self.step_index

    def solve(self, callback: Callable | None = None):
        """Run the remaining steps and return the reconstructions ``(N, H, W, C)`` in ``[0, 1]``.

        Raises:
            SolverFailure: some samples failed; ``err.x`` (and ``solver.x``) hold the others.
        """
        self.advance(None, callback)
        x = decode_images(self.data.prior, self.state.z)[:self.n]
        status = np.asarray(self.state.status)[:self.n]
        failed = np.flatnonzero(status != Status.OK)
        if failed.size:
            x = x.at[failed].set(jnp.nan)
            self.x = x
            hist = self.history().status
            at = [int(np.argmax(hist[:, k] != Status.OK)) for k in failed]
            what = ", ".join(f"sample {k} ({Status(status[k]).name.lower()} at step {s})" for k, s in zip(failed, at))
            raise SolverFailure(f"{type(self).__name__}: {failed.size} of {self.n} samples failed: {what}; "
                                "the others finished (see err.x / solver.x)", x, status, failed, at)
        self.x = x
        return x

    def current_image(self):
        """The decoded current clean estimate :math:`\\mathcal{D}(\\hat z_0)` in ``[0, 1]`` (for callbacks)."""
        return decode_images(self.data.prior, self.state.z0)[:self.n]

    def measurement_residual(self, x=None):
        """Per-sample :math:`\\|y - \\mathcal{A}(x)\\|` (``[0, 1]`` units) of ``x`` (default: :attr:`x`)."""
        x = self.x if x is None else x
        if x is None:
            raise RuntimeError("nothing solved yet: call solve() or pass x")
        x = jnp.asarray(x, jnp.float32)
        if self._run.size != self.n and x.shape[0] == self.n:  # the padded batch's copies of the last sample
            x = x[self._run]
        return _residual(self.data.fwd, self.data.y, x)[:self.n]

    def history(self) -> StepStats:
        """Per-step statistics so far, each field stacked over steps (leading axis = step)."""
        if not self._history:
            _, stats = jax.eval_shape(lambda s: self.plan.skip(self.data, s, 0), self.state)
            return StepStats(*(np.zeros((0, *a.shape), a.dtype)[:, :self.n] if a.ndim else np.zeros((0,), a.dtype)
                               for a in stats))
        return StepStats(*(np.concatenate(f, axis=0) for f in zip(*self._history)))

    def _print_rows(self, stats: StepStats, stop: int):
        if not self.itstat.display:
            return
        for j in range(stats.t.shape[0]):
            i = self.step_index + j
            if not self.itstat.wants(i, last=i == self.num_steps - 1):
                continue
            row = [i, self.elapsed, int(stats.t[j]), _mean_ok(stats.residual[j], stats.status[j])]
            if self.plan.prompt is not None:
                row.append(_mean_ok(stats.prompt_residual[j][:, -1], stats.status[j]))
            row.append(int(np.sum(stats.status[j] != Status.OK)))
            self.itstat.print_row(row)

    # ------------------------------------------------------------------ checkpoints
    def _meta(self) -> dict:
        return {"format": _STATE_FORMAT, "solver": type(self).__name__, "num_steps": self.num_steps,
                "n": self.n, "config": ([c.to_json() for c in self.config] if isinstance(self.config, tuple)
                                        else self.config.to_json())}

    def save_state(self, path: str | os.PathLike):
        """Write the state, step index and history to ``path`` (``.npz``, atomically)."""
        leaves = jax.tree_util.tree_leaves(self.state)
        hist = self.history()
        arrays = {f"state_{k}": np.asarray(a) for k, a in enumerate(leaves)}
        arrays.update({f"history_{f}": a for f, a in zip(StepStats._fields, hist)})
        meta = dict(self._meta(), step_index=self.step_index, elapsed=self.elapsed)
        path = os.fspath(path)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, meta=np.asarray(json.dumps(meta)), **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def load_state(self, path: str | os.PathLike):
        """Resume from a file written by :meth:`save_state` of an identically built solver.

        Raises:
            ValueError: the file belongs to another solver, configuration, step count or batch.
        """
        with np.load(os.fspath(path), allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            ours = self._meta()
            diff = {k: (meta.get(k), v) for k, v in ours.items() if meta.get(k) != v}
            if diff:
                raise ValueError(f"{path} does not match this solver: " + "; ".join(
                    f"{k}: file has {a!r}, solver has {b!r}" for k, (a, b) in diff.items()))
            template, treedef = jax.tree_util.tree_flatten(jax.eval_shape(self.init))
            leaves = []
            for k, spec in enumerate(template):
                a = f[f"state_{k}"]
                if a.shape != spec.shape or a.dtype != spec.dtype:
                    raise ValueError(f"{path}: state leaf {k} is {a.shape} {a.dtype}, expected {spec.shape} {spec.dtype}")
                leaves.append(jnp.asarray(a))
            hist = StepStats(*(f[f"history_{name}"] for name in StepStats._fields))
        self._state = jax.tree_util.tree_unflatten(treedef, leaves)
        if self.sharding is not None:
            self._state = self.sharding.place_state(self._state)
        self.step_index = int(meta["step_index"])
        self.elapsed = float(meta.get("elapsed", 0.0))
        self._history = [hist] if hist.t.shape[0] else []
        self.x = None
        return self


def _mean_ok(values, status) -> float:
    ok = (np.asarray(status) == Status.OK) & np.isfinite(values)  # NaN: no value this step (e.g. no prompt tuning)
    return float(np.mean(np.asarray(values)[ok])) if ok.any() else float("nan")


_residual = jax.jit(residual)
