"""The runner: solve the samples of a problem in batches and append each to a result file.

``diffprior solve`` and the benchmark scripts run solvers through :func:`solve_problem`, so a
sample is solved the same way wherever it is solved:

* sample ``n`` uses the key ``fold_in(PRNGKey(seed), n)`` whatever batch it lands in
  (:func:`diffprior.solvers.sample_keys`), so results do not depend on the batch size or on
  interruptions (up to floating-point differences between batch sizes);
* the last batch is padded to the batch size with copies of its last sample (results
  discarded), so that one compiled program serves every batch;
* the operator is built once for the whole problem; a per-sample operator (one motion
  kernel or mask per image) is cut to each batch with :meth:`operators.ImageOperator.take`,
  and because operators are traced data, every batch reuses the first batch's compiled
  program;
* each finished sample is appended to the :class:`diffprior.io.ResultWriter` (metrics
  when the problem has ground truth, wall time, per-step history), so an interrupted run
  loses nothing appended.

:func:`solve_together` solves the samples of several problems (tasks) in one batch of one
diffusion solver, each problem with its own configuration and result file: an
:class:`operators.Select` measures each sample by its problem's operator, and the solver's
per-sample configurations (:mod:`diffprior.solvers.mixing`) give each sample its own
preset, so that one compiled program serves every task (``diffprior demo`` runs this way).

:func:`solver_config` turns a solver name, a preset choice and ``--set`` style overrides
into the configuration dataclass, and :func:`run_settings` records what a result file must
agree on to be resumed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np

__all__ = ["BatchReport", "solver_config", "problem_operator", "solve_problem", "solve_together", "sample_history"]


@dataclasses.dataclass(frozen=True)
class BatchReport:
    """What :func:`solve_problem` reports after each batch (to its ``on_batch`` callback).

    Attributes:
        indices: the problem's sample indices solved in this batch (padding excluded).
        seconds: wall time of the batch, solving only.
        compile_seconds: time spent compiling the batch's program first (about 0 when a
            compiled program was reused; always 0 for the ADMM baselines).
        failed: indices among ``indices`` whose solve failed (stored as NaN).
        metrics: the per-sample metrics appended for ``indices`` (name -> array).
    """

    indices: np.ndarray
    seconds: float
    compile_seconds: float
    failed: tuple
    metrics: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def solver_config(solver_cls: type, task: Optional[str], dataset, overrides: Mapping[str, Any] | None = None):
    """The configuration a run uses: the preset for ``task`` (a :class:`diffprior.solvers.Task`
    value, or ``None`` for the class defaults) on the preset table ``dataset``, with the
    dotted ``overrides`` applied (:meth:`~diffprior.solvers.config.SolverConfig.override`).

    Raises:
        diffprior.solvers.ConfigError: An override that does not fit the configuration.
    """
    from .solvers import Task

    cfg_cls = solver_cls.config_class
    cfg = cfg_cls.for_task(Task(task), dataset) if task else cfg_cls()
    return cfg.override(dict(overrides or {})) if overrides else cfg


def problem_operator(problem):
    """The problem's forward operator, built once from its stored description."""
    from operators import from_description

    return from_description(problem.operator)


def _batch_operator(A, run_idx: np.ndarray):
    """The operator for the samples ``run_idx``: cut from a batched operator, else ``A`` itself."""
    if len(A.input_shape) == 4:
        return A.take(run_idx)
    return A


def sample_history(hist, j: int) -> Dict[str, np.ndarray]:
    """Sample ``j``'s share of a solver's history, as ``{statistic: array over steps}``.

    Diffusion solvers return :class:`~diffprior.solvers.StepStats` (fields with a sample
    axis are sliced); the ADMM baselines return one scico iteration record per sample.
    """
    out = {}
    if isinstance(hist, list):  # ADMM: one named tuple of arrays per sample
        rec = hist[j]
        items = rec._asdict().items() if hasattr(rec, "_asdict") else dict(rec).items()
        for name, a in items:
            a = np.asarray(a)
            if (np.issubdtype(a.dtype, np.number) or a.dtype == bool) and a.size:
                out[name.replace("/", "_").replace(" ", "_")] = a
        return out
    for name, a in zip(hist._fields, hist):
        a = np.asarray(a)
        if a.ndim >= 2:
            a = a[:, j]
        if a.size:
            out[name] = a
    return out


def solve_problem(problem, solver_cls: type, config, writer, *, prior=None, num_steps: int = 1000, seed: int = 0,
                  keys=None, batch: int = 4, indices: Sequence[int] | None = None, prompt=None,
                  metrics: Callable[[np.ndarray, np.ndarray], Dict[str, np.ndarray]] | None = None,
                  solver_metrics: Callable[[Any, np.ndarray], Dict[str, np.ndarray]] | None = None,
                  on_batch: Callable[[BatchReport], None] | None = None,
                  on_chunk: Callable[[Any], None] | None = None, devices=None) -> Dict[str, Any]:
    """Solve the samples ``indices`` (default: those ``writer`` still lacks) of ``problem``.

    Args:
        problem: a :class:`diffprior.io.Problem`.
        solver_cls: a solver class (:data:`diffprior.solvers.SOLVERS`).
        config: its configuration (:func:`solver_config`).
        writer: the :class:`diffprior.io.ResultWriter` each finished sample is appended to.
        prior: the diffusion prior (needed when ``solver_cls.uses_prior``).
        num_steps: reverse diffusion steps (diffusion solvers).
        seed: run seed; sample ``n`` uses ``fold_in(PRNGKey(seed), n)``.
        keys: per-sample keys for all samples of the problem (``(N, 2)`` uint32 or ``(N,)``
            typed), replacing those derived from ``seed`` (the benchmarks key each image by
            its file name).
        batch: samples solved together (does not change the results).
        indices: sample indices to solve (default ``writer.pending_indices()``).
        prompt: initial prompt of the diffusion solvers: one string, or one per sample of the
            problem (default: the solver's).
        metrics: ``metrics(x, ground_truth) -> {name: (B,) array}`` computed per batch when
            the problem has ground truth and appended with each sample (default
            :func:`diffprior.metrics.image_metrics`: PSNR and SSIM). Every sample also gets
            ``residual``, :math:`\\|y - A\\hat x\\|` (:func:`diffprior.metrics.measurement_residual`),
            ground truth or not.
        solver_metrics: ``solver_metrics(solver, indices) -> {name: (B,) array}``, per-sample
            values read from the solver after each batch (``indices``: the problem's sample
            indices of the batch, the last repeated to fill it), e.g. the tuned embedding's drift
            from ``solver.state.emb`` and ``solver.data.emb0``; appended like the metrics.
        on_batch: called with a :class:`BatchReport` after each batch is appended.
        on_chunk: called with the solver between step chunks (progress).
        devices: the diffusion solvers' ``devices`` (:mod:`diffprior.solvers.sharding`):
            each batch is split over them (``None``: one device).

    Returns:
        ``{"appended": int, "failed": [indices], "seconds": float}``.

    Raises:
        ValueError: ``batch < 1``, or ``prior`` missing for a diffusion solver.
    """
    import jax

    from .solvers import SolverFailure, sample_keys

    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if solver_cls.uses_prior and prior is None:
        raise ValueError(f"{solver_cls.__name__} needs a diffusion prior")
    if keys is not None and len(keys) != problem.n_samples:
        raise ValueError(f"got {len(keys)} keys for {problem.n_samples} samples")
    if isinstance(prompt, (list, tuple)) and len(prompt) != problem.n_samples:
        raise ValueError(f"got {len(prompt)} prompts for {problem.n_samples} samples")
    pending = np.asarray(writer.pending_indices() if indices is None else indices, np.int64)
    A = problem_operator(problem)
    if devices is not None and prior is not None:  # the weights go to the devices once, not per batch
        from .solvers.sharding import replicate

        prior = replicate(prior, devices)
    B = int(min(batch, problem.n_samples))
    root = jax.random.PRNGKey(int(seed))
    t_start = time.perf_counter()
    appended, failed = 0, []
    for b0 in range(0, pending.size, B):
        idx = pending[b0:b0 + B]
        run_idx = np.concatenate([idx, np.repeat(idx[-1:], B - idx.size)])
        y, A_b = problem.measurement[run_idx], _batch_operator(A, run_idx)
        compile_s = 0.0
        if solver_cls.uses_prior:
            k = sample_keys(root, run_idx) if keys is None else keys[run_idx]
            p = [prompt[i] for i in run_idx] if isinstance(prompt, (list, tuple)) else prompt
            solver = solver_cls(y=y, A=A_b, prior=prior, key=k, num_steps=int(num_steps), config=config, prompt=p,
                                progress=False, devices=devices)
            compile_s = solver.compile()  # timed apart from the solve
        else:
            solver = solver_cls(y=y, A=A_b, config=config)
        t0 = time.perf_counter()
        try:
            x = solver.solve(callback=on_chunk) if solver_cls.uses_prior else solver.solve()
            status = np.zeros(B, np.int32)
        except SolverFailure as e:
            x, status = e.x, np.asarray(e.status)
        x = np.asarray(x, np.float32)
        dt = (time.perf_counter() - t0) / idx.size
        extra = None
        if solver_metrics is not None:
            extra = {k: np.asarray(v, np.float64) for k, v in solver_metrics(solver, run_idx).items()}
        bad, mets = _append(writer, problem, A_b, y, x, status, solver.history(), np.arange(B), run_idx, idx.size,
                            dt, metrics, extra)
        appended += idx.size
        failed.extend(bad)
        if on_batch is not None:
            on_batch(BatchReport(indices=idx, seconds=dt * idx.size, compile_seconds=compile_s, failed=tuple(bad),
                                 metrics=mets))
    return {"appended": appended, "failed": failed, "seconds": time.perf_counter() - t_start}


def _append(writer, problem, A_b, y, x, status, hist, rows, run_idx, count: int, dt: float, metrics, extra=None):
    """Append the first ``count`` of the batch rows ``rows`` (samples ``run_idx`` of ``problem``,
    measured by ``A_b`` as ``y``, restored as ``x``; ``status``, ``hist``: the whole batch's) to
    ``writer`` with their metrics; return the failed sample indices and the appended metrics."""
    from .metrics import image_metrics, measurement_residual

    xs = x[rows]
    mets: Dict[str, np.ndarray] = {"residual": measurement_residual(A_b, y, xs)}
    if extra is not None:
        mets.update(extra)
    if problem.ground_truth is not None:
        ok = np.all(np.isfinite(xs.reshape(len(rows), -1)), axis=1)
        scores = (metrics or image_metrics)(np.where(ok[:, None, None, None], xs, 0.0), problem.ground_truth[run_idx])
        mets.update({k: np.where(ok, np.asarray(v, np.float64), np.nan) for k, v in scores.items()})
    bad = []
    for j in range(count):
        writer.append(int(run_idx[j]), xs[j], metrics={k: v[j] for k, v in mets.items()},
                      history=sample_history(hist, int(rows[j])), wall_time=dt)
        if status[rows[j]]:
            bad.append(int(run_idx[j]))
    return bad, {k: v[:count] for k, v in mets.items()}


def solve_together(jobs, solver_cls: type, *, prior, num_steps: int = 1000, seed: int = 0, batch: int | None = None,
                   metrics: Callable[[np.ndarray, np.ndarray], Dict[str, np.ndarray]] | None = None,
                   on_batch: Callable[[BatchReport], None] | None = None,
                   on_chunk: Callable[[Any], None] | None = None, on_lowered: Callable[[], None] | None = None,
                   devices=None) -> Dict[str, Any]:
    """Solve the pending samples of several problems together, one diffusion solver, one program.

    Each job is ``(problem, config, writer)``. The samples every writer still lacks are
    stacked into batches of ``batch`` (default: all in one), each sample measured by its own
    problem's operator (:class:`operators.Select`; measurements flattened and zero-padded)
    and solved with its own problem's configuration (one configuration per sample,
    :mod:`diffprior.solvers.mixing`). Sample ``n`` of a problem uses the key
    ``fold_in(PRNGKey(seed), n)``, as in :func:`solve_problem`, so each result equals
    solving that problem alone (to floating-point tolerance); it is appended to its
    problem's writer with the same metrics and history. ``on_lowered()`` is called once the
    first batch's program is traced, before XLA compiles it (:meth:`Solver.compile`).

    Returns:
        ``{"appended": int, "failed": [(job, index)], "seconds": float}``.

    Raises:
        ValueError: problems with different image shapes, or ``batch < 1``.
        diffprior.solvers.MixedConfigError: configurations that cannot share a program.
    """
    import jax

    from operators import Select

    from .solvers import SolverFailure, sample_keys

    if not solver_cls.uses_prior:
        raise ValueError(f"{solver_cls.__name__} is not a diffusion solver: solve its problems with solve_problem")
    shapes = {_image_shape(p) for p, _, _ in jobs}
    if len(shapes) != 1:
        raise ValueError(f"problems solved together need one image shape, got {sorted(shapes)}")
    image_shape = shapes.pop()
    ops = [problem_operator(p) for p, _, _ in jobs]
    rows = [(j, int(n)) for j, (_, _, w) in enumerate(jobs) for n in w.pending_indices()]
    if batch is not None and int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not rows:
        return {"appended": 0, "failed": [], "seconds": 0.0}
    B = len(rows) if batch is None else int(batch)
    if devices is not None:
        from .solvers.sharding import replicate

        prior = replicate(prior, devices)
    width = max(int(np.prod(p.measurement.shape[1:])) for p, _, _ in jobs)
    root = jax.random.PRNGKey(int(seed))
    t_start = time.perf_counter()
    appended, failed = 0, []
    for b0 in range(0, len(rows), B):
        real = rows[b0:b0 + B]
        chunk = real + [real[-1]] * (B - len(real))  # padded with copies of the last sample, as solve_problem
        job = np.array([j for j, _ in chunk])
        idx = np.array([n for _, n in chunk])
        # each problem's operator on the whole batch: its own samples where they are, sample 0 elsewhere
        parts = [A.take(np.where(job == j, idx, 0)) if len(A.input_shape) == 4 else A for j, A in enumerate(ops)]
        S = Select((B, *image_shape), parts, job)
        y = np.zeros((B, width), np.float32)
        for r, (j, n) in enumerate(chunk):
            m = jobs[j][0].measurement[n].reshape(-1)
            y[r, :m.size] = m
        solver = solver_cls(y=y, A=S, prior=prior, key=sample_keys(root, idx), num_steps=int(num_steps),
                            config=[jobs[j][1] for j in job], progress=False, devices=devices)
        compile_s = solver.compile(on_lowered if b0 == 0 else None)
        t0 = time.perf_counter()
        try:
            x, status = solver.solve(callback=on_chunk), np.zeros(B, np.int32)
        except SolverFailure as e:
            x, status = e.x, np.asarray(e.status)
        x = np.asarray(x, np.float32)
        dt = (time.perf_counter() - t0) / len(real)
        hist = solver.history()
        batch_bad = []
        for j, (problem, _, writer) in enumerate(jobs):
            mine = np.flatnonzero(job[:len(real)] == j)
            if mine.size:
                A_j = ops[j].take(idx[mine]) if len(ops[j].input_shape) == 4 else ops[j]
                bad, _ = _append(writer, problem, A_j, problem.measurement[idx[mine]], x, status, hist, mine,
                                 idx[mine], mine.size, dt, metrics)
                batch_bad.extend((j, n) for n in bad)
        appended += len(real)
        failed.extend(batch_bad)
        if on_batch is not None:  # indices: each sample's index in its own problem
            on_batch(BatchReport(indices=idx[:len(real)], seconds=dt * len(real), compile_seconds=compile_s,
                                 failed=tuple(n for _, n in batch_bad)))
    return {"appended": appended, "failed": failed, "seconds": time.perf_counter() - t_start}


def _image_shape(problem) -> tuple:
    """``(H, W, C)`` of the problem's images (from its operator's input shape)."""
    return tuple(int(s) for s in np.asarray(problem.operator["input_shape"]).ravel()[-3:])
