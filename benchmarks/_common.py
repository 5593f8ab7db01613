"""Shared pieces of the benchmark scripts: validation images, problems, solver runs, scores.

Every benchmark solve goes through the library's runner (:func:`diffprior.runner.solve_problem`)
and is written through :class:`diffprior.io.ResultWriter` (:func:`run_result`): one result file
per run, which is also the resume store (a rerun solves the file's pending samples only).

Image subsets of the CIFAR-10 validation split (files ``4900``-``4999`` of every class, never
trained on), all chosen by file name, never by results:

* *tuning* images: files ``4995``-``4999`` of every class (hyperparameter searches only);
* *evaluation* images: the first ``n / 10`` files of every class from ``4900`` on (benchmarks).

Every image ``i`` of a benchmark has its own seed (``seed_of``), fixed in the results: it draws
the measurement noise, and the solver's key for that image is ``fold_in(PRNGKey(seed), 0)`` so
the result does not depend on the batch it ran in.
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from diffprior import enable_compilation_cache

enable_compilation_cache()

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10" / "train.tar.gz"
SIGMA = 0.005
TUNING_FILES = range(4995, 5000)


@dataclass
class Validation:
    images: np.ndarray  # (N, 32, 32, 3) float32 in [0, 1]
    labels: np.ndarray
    classes: tuple
    names: tuple

    def subset(self, idx) -> "Validation":
        idx = np.asarray(idx)
        return Validation(self.images[idx], self.labels[idx], self.classes, tuple(self.names[i] for i in idx))


def load_validation(data: str | Path = DEFAULT_DATA) -> Validation:
    """All 1000 validation images, sorted by class then file name."""
    from diffprior.data import read_dataset, split

    path = Path(data)
    if not path.exists():
        raise SystemExit(f"dataset not found: {path} (pass --data)")
    _, val = split(read_dataset(path))
    order = np.argsort(np.asarray(val.names))
    return Validation(val.as_float()[order], np.asarray(val.labels)[order], tuple(val.classes),
                      tuple(np.asarray(val.names)[order]))


def prior_fingerprint(path: str | Path | None = None) -> str:
    """:func:`diffprior.prior.weights_fingerprint` of a prior folder (default: the bundled prior)."""
    from diffprior import bundled_path
    from diffprior.prior import weights_fingerprint

    return weights_fingerprint(path if path is not None else bundled_path())


def bundled_prior(kind: str = "latent"):
    """``(prior, fingerprint)`` of the bundled prior of ``kind`` (``"latent"`` or ``"pixel"``);
    ``SystemExit`` naming the folder when it is not installed."""
    from diffprior import bundled_path
    from diffprior.priors import load

    path = bundled_path(kind)
    if not path.is_dir():
        raise SystemExit(f"the bundled {kind} prior ({path}) is not installed: train and export it "
                         "(docs/cli.rst, diffprior train pixel), or leave out the methods that need it")
    return load(f"bundled:{kind}"), prior_fingerprint(path)


def _file_number(name: str) -> int:
    return int(Path(name).stem)


def tuning_set(val: Validation) -> Validation:
    """Files 4995-4999 of every class (50 images), reserved for hyperparameter searches,
    interleaved by class (file 4995 of every class, then 4996, ...), so that the first ``n``
    cover the classes evenly."""
    return val.subset(sorted((i for i, n in enumerate(val.names) if _file_number(n) in TUNING_FILES),
                             key=lambda i: (_file_number(val.names[i]), val.labels[i])))


def evaluation_set(val: Validation, n: int) -> Validation:
    """The first ``ceil(n / classes)`` non-tuning files of every class, interleaved by class, cut to ``n``."""
    k = len(val.classes)
    per = -(-n // k)
    by_class = [[i for i in np.nonzero(val.labels == c)[0] if _file_number(val.names[i]) not in TUNING_FILES][:per]
                for c in range(k)]
    order = [by_class[c][j] for j in range(per) for c in range(k) if j < len(by_class[c])]
    return val.subset(order[:n])


def seed_of(name: str) -> int:
    """A fixed per-image seed from its file name (stable across runs and subsets)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def image_keys(names) -> jax.Array:
    """Per-image solver keys ``fold_in(PRNGKey(seed_of(name)), 0)``, shape ``(N, 2)``."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(seed_of(n)), 0) for n in names])


def build_operator(task: str, image_shape, seed: int = 0):
    """The task preset's operator (one per task: its random mask/kernel drawn from ``seed``)."""
    from diffprior.tasks import TASKS

    return TASKS[task].build(tuple(image_shape), jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(task.encode())))


def measure(A, images: np.ndarray, names, sigma: float = SIGMA) -> np.ndarray:
    """``y_i = A x_i + sigma * noise_i`` with noise drawn from ``fold_in(PRNGKey(seed_of(name_i)), 1)``."""
    import operators

    return np.stack([np.asarray(operators.simulate(A, x, sigma, jax.random.fold_in(jax.random.PRNGKey(seed_of(n)), 1)))
                     for x, n in zip(images, names)])


def solver_config(cls, task: str, **overrides):
    """The solver's preset for a task (``diffprior.tasks`` name) with overrides
    (flat names, see :meth:`~diffprior.solvers.base.SamplerConfig.with_values`)."""
    from diffprior.tasks import TASKS
    from diffprior.solvers import Dataset, Task

    st = TASKS[task].solver_task
    cfg = cls.config_class.for_task(Task(st), Dataset.CIFAR10) if st else cls.config_class()
    return cfg.with_values(overrides) if overrides else cfg


def nfe_per_image(config, steps: int) -> int:
    """UNet evaluations per image: one VJP per step plus ``K`` per prompt-tuning step."""
    pt = getattr(config, "prompt", None)
    return steps + (pt.iters * pt.tuned_steps(steps) if pt is not None else 0)


def scores(x: np.ndarray, gt: np.ndarray) -> dict:
    """Per-image PSNR, SSIM and LPIPS (AlexNet; 32 px images resized to 64 px first)."""
    from diffprior.metrics import image_metrics

    return image_metrics(x, gt, lpips=True)


def task_problem(task: str, val: Validation, A=None):
    """The task preset's inverse problem on ``val``, in memory (:class:`diffprior.io.Problem`):
    the operator :func:`build_operator` (or ``A``), measurements :func:`measure` (sigma =
    :data:`SIGMA`), ground truth, image names and their seeds (:func:`seed_of`)."""
    import operators

    from diffprior.io import Problem

    A = build_operator(task, val.images.shape[1:]) if A is None else A
    return Problem(measurement=np.asarray(measure(A, val.images, val.names), np.float32),
                   operator=operators.describe(A), noise_sigma=SIGMA,
                   ground_truth=np.asarray(val.images, np.float32),
                   seeds=np.array([seed_of(n) for n in val.names], np.int64), names=list(val.names), task=task)


class PeakRSS:
    """Peak resident memory (MB) of this process while a block runs, sampled every 20 ms;
    :meth:`take` returns the peak since the block started or the last ``take`` and restarts."""

    def __enter__(self):
        self.peak, self._stop = _rss_mb(), threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def take(self) -> float:
        peak, self.peak = max(self.peak, _rss_mb()), _rss_mb()
        return peak

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def names_digest(names) -> str:
    """A short hash of a list of image names (recorded in result hyperparameters)."""
    import hashlib

    return hashlib.sha256(json.dumps(list(names)).encode()).hexdigest()[:12]


def run_result(path: str | Path, problem, cls, config, *, hyperparameters: dict, prior=None, steps: int = 0,
               keys=None, batch: int = 10, indices=None, prompt=None, metrics=None, solver_metrics=None,
               label: str = "", quiet: bool = False) -> dict:
    """Solve ``problem``'s pending samples (of ``indices``, default all) with ``cls``/``config``
    through :func:`diffprior.runner.solve_problem`, appending each to the result file ``path``
    (created, or resumed: a file written with other ``hyperparameters``, images or solver is
    refused with ``SystemExit``). Per-sample metrics: ``metrics(x, gt)`` (default
    :func:`scores`: PSNR, SSIM, LPIPS) plus ``peak_rss_mb``, the peak resident memory of the
    process during the sample's batch (compilation included), the runner's ``residual`` and
    ``solver_metrics(solver)`` (see :func:`~diffprior.runner.solve_problem`). The file is compacted
    (:meth:`~diffprior.io.ResultWriter.close`) when the run ends, also when interrupted.

    Returns :func:`~diffprior.runner.solve_problem`'s dict, ``{"appended": 0, ...}`` if
    nothing was pending.
    """
    from diffprior.io import IncompatibleResultError, ResultWriter
    from diffprior.runner import solve_problem
    from diffprior.solvers import solver_name

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        writer = ResultWriter(path, problem.n_samples, problem.ground_truth.shape[1:], solver_name(cls),
                              hyperparameters)
    except IncompatibleResultError as e:
        what = "; ".join(getattr(e, "differences", [])[:4]) or e.member
        raise SystemExit(f"{path}: cannot resume: written by a run with other settings ({what}); pass another output "
                         f"folder, or delete the file and its .parts folder to start it again") from e
    score = metrics or scores
    label = label or path.stem
    try:
        todo = writer.pending_indices()
        if indices is not None:
            todo = np.intersect1d(todo, np.asarray(indices, np.int64))
        if todo.size == 0:
            return {"appended": 0, "failed": [], "seconds": 0.0}
        done = [0]
        with PeakRSS() as mem:
            def with_rss(x, gt):
                out = dict(score(x, gt))
                out["peak_rss_mb"] = np.full(len(x), mem.take())
                return out

            def report(r):
                done[0] += len(r.indices)
                if quiet:
                    return
                m = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in r.metrics.items()}
                print(f"  {label:34s} {done[0]:4d}/{todo.size}  LPIPS {m.get('lpips', float('nan')):.3f}  "
                      f"PSNR {m.get('psnr', float('nan')):.2f}  {r.seconds / len(r.indices):.2f} s/img"
                      f"  (compile {r.compile_seconds:.1f} s)" + (f"  {len(r.failed)} failed" if r.failed else ""),
                      flush=True)

            return solve_problem(problem, cls, config, writer, prior=prior, num_steps=int(steps), keys=keys,
                                 batch=batch, indices=todo, prompt=prompt, metrics=with_rss,
                                 solver_metrics=solver_metrics, on_batch=report)
    finally:
        writer.close()


def result_means(path, keys=("lpips", "psnr", "ssim", "residual")):
    """``(hyperparameters, stats)`` of a result file: over its finished images with a finite
    PSNR, ``n``, the mean wall seconds, the peak RSS and ``<key>``/``<key>_se`` (mean and
    standard error) for each metric of ``keys`` (NaN if the file lacks it); ``None`` when no
    image is finished."""
    from diffprior.io import read_result

    r = read_result(path)
    done = r.done & np.isfinite(r.metrics.get("psnr", np.full(len(r.done), np.nan)))
    if not done.any():
        return None
    stats = {"n": int(done.sum()), "seconds": float(np.mean(r.wall_time[done])),
             "peak_rss_mb": float(np.nanmax(r.metrics["peak_rss_mb"][done])) if "peak_rss_mb" in r.metrics
             else float("nan")}
    for k in keys:
        v = r.metrics[k][done] if k in r.metrics else np.array([np.nan])
        stats[k], stats[k + "_se"] = float(np.mean(v)), se(v)
    return r.hyperparameters, stats


def se(a) -> float:
    a = np.asarray(a, np.float64)
    return float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")

