"""Shared pieces of the benchmark scripts: validation images, problems, solver runs, scores.

Image subsets of the CIFAR-10 validation split (files ``4900``-``4999`` of every class, never
trained on), all chosen by file name, never by results:

* *tuning* images: files ``4995``-``4999`` of every class (hyperparameter searches only);
* *evaluation* images: the first ``n / 10`` files of every class from ``4900`` on (benchmarks).

Every image ``i`` of a benchmark has its own seed (``seed_of``), fixed in the results: it draws
the measurement noise, and the solver's key for that image is ``fold_in(PRNGKey(seed), 0)`` so
the result does not depend on the batch it ran in.
"""

from __future__ import annotations

import resource
import time
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
    from diffprior.commands.tasks import TASKS

    return TASKS[task].build(tuple(image_shape), jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(task.encode())))


def measure(A, images: np.ndarray, names, sigma: float = SIGMA) -> np.ndarray:
    """``y_i = A x_i + sigma * noise_i`` with noise drawn from ``fold_in(PRNGKey(seed_of(name_i)), 1)``."""
    import operators

    return np.stack([np.asarray(operators.simulate(A, x, sigma, jax.random.fold_in(jax.random.PRNGKey(seed_of(n)), 1)))
                     for x, n in zip(images, names)])


def solver_config(cls, task: str, **overrides):
    """The solver's preset for a task (``diffprior.commands.tasks`` name) with overrides
    (flat names, see :meth:`~diffprior.solvers.base.SamplerConfig.with_values`)."""
    from diffprior.commands.tasks import TASKS
    from diffprior.solvers import Dataset, Task

    st = TASKS[task].solver_task
    cfg = cls.config_class.for_task(Task(st), Dataset.CIFAR10) if st else cls.config_class()
    return cfg.with_values(overrides) if overrides else cfg


def solve_all(solver) -> np.ndarray:
    """``solver.solve()``, with failed samples returned as NaN images instead of raising."""
    from diffprior.solvers import SolverFailure

    try:
        return np.asarray(solver.solve())
    except SolverFailure as e:
        return np.asarray(e.x)


def run_latent(cls, config, y, A, prior, keys, steps: int, prompt=None, batch: int = 25) -> tuple[np.ndarray, float]:
    """Run a latent solver in batches; returns ``(x, seconds)`` (compilation included once per shape)."""
    out, t0 = [], time.perf_counter()
    for b in range(0, len(y), batch):
        kw = {} if prompt is None else {"prompt": prompt[b:b + batch] if isinstance(prompt, list) else prompt}
        s = cls(y=y[b:b + batch], A=A, prior=prior, key=keys[b:b + batch], num_steps=steps, config=config,
                progress=False, **kw)
        out.append(solve_all(s))
    return np.concatenate(out), time.perf_counter() - t0


def nfe_per_image(config, steps: int) -> int:
    """UNet evaluations per image: one VJP per step plus ``K`` per prompt-tuning step."""
    pt = getattr(config, "prompt", None)
    return steps + (pt.iters * pt.tuned_steps(steps) if pt is not None else 0)


def scores(x: np.ndarray, gt: np.ndarray) -> dict:
    """Per-image PSNR, SSIM and LPIPS (AlexNet; 32 px images resized to 64 px first)."""
    from diffprior.metrics import psnr, ssim
    from diffprior.perceptual import lpips

    return {"psnr": np.asarray(psnr(jnp.asarray(x), jnp.asarray(gt))),
            "ssim": np.asarray(ssim(jnp.asarray(x), jnp.asarray(gt))),
            "lpips": np.asarray(lpips(x, gt))}


def se(a) -> float:
    a = np.asarray(a, np.float64)
    return float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
