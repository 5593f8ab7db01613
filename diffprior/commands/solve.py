"""``diffprior solve``: solve every problem of a problem file, resumably.

The operator is rebuilt from the file's stored description, the samples are solved in
batches, and each finished sample is appended to the result file
(:class:`diffprior.io.ResultWriter`, one atomic commit per sample) with its provenance:
solver name and hyperparameters, seed, library version, wall time, per-sample metrics
(PSNR, SSIM when the problem file has ground truth) and the per-step history of
:meth:`diffprior.solvers.Solver.history`.

Resuming: rerunning the same command skips the samples already done, so an interrupted run
(Ctrl-C, ``kill -9``, a crash) loses nothing that was appended and does nothing twice. A
rerun whose settings differ (solver, hyperparameters, steps, seed, prior weights, problem
data) is refused: use another ``--out`` or ``--overwrite``.

Reproducibility: sample ``n`` is solved with the key ``jax.random.fold_in(PRNGKey(seed), n)``
whatever batch it lands in; these are the keys ``Solver(key=PRNGKey(seed))`` gives the
samples of the whole file solved as one batch. The last batch is padded to the batch size
with copies of its last sample (results discarded) so that one compiled program serves all
batches. Results therefore do not depend on ``--batch`` or on interruptions (up to
floating-point differences between batch sizes).

Wall time: the time to solve a batch (JIT compilation included for the first batch of a
process) divided by the number of samples it finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import CLIError, preset_dataset, wrap
from .simulate import _nonneg_int, _pos_int
from .tasks import TASKS

__all__ = ["add_parser", "run", "SOLVERS", "prior_fingerprint", "infer_solver_task", "config_to_json"]

SOLVERS = {"p2l": "P2L", "ldps": "LDPS", "gmldps": "GMLDPS", "psld": "PSLD", "ldir": "LDIR"}
"""CLI name -> class name in :mod:`diffprior.solvers`."""

PRESETS = ("auto", "none") + tuple(TASKS)
DEFAULT_STEPS = 1000
DEFAULT_BATCH = 4

#: Test hook: after this many appended samples the process kills itself with SIGKILL
#: (simulates a hard crash at a known point; used by the resume tests).
KILL_AFTER_ENV = "DIFFPRIOR_TEST_KILL_AFTER"

_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_SAMPLE_BYTES = 1 << 20


# ----------------------------------------------------------------------------- helpers
def prior_fingerprint(path) -> str:
    """A cheap identity of a diffusers-layout prior folder (16 hex digits).

    Hashes every file of the components ``unet/ vae/ text_encoder/ tokenizer/ scheduler/``:
    names and sizes, the full text of configuration and tokenizer files, and the first and
    last MiB of weight files. Two checkpoints of one architecture (SD v1.4 and v1.5) differ.
    """
    h = hashlib.sha256()
    path = Path(path)
    for comp in _COMPONENTS:
        d = path / comp
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if not f.is_file():
                continue
            size = f.stat().st_size
            h.update(f"{comp}/{f.name}:{size}\n".encode())
            with open(f, "rb") as fh:
                if f.suffix in (".json", ".txt") or size <= 2 * _SAMPLE_BYTES:
                    h.update(fh.read())
                else:
                    h.update(fh.read(_SAMPLE_BYTES))
                    fh.seek(size - _SAMPLE_BYTES)
                    h.update(fh.read(_SAMPLE_BYTES))
    return h.hexdigest()[:16]


def config_to_json(obj: Any) -> Any:
    """A solver configuration as JSON types, dataclasses tagged with their class name."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"type": type(obj).__name__}
        out.update({f.name: config_to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [config_to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): config_to_json(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


def infer_solver_task(description: Dict[str, Any]) -> Optional[str]:
    """The solver preset (a :class:`diffprior.solvers.Task` value) that fits an operator.

    ``Downsample`` -> ``"sr"``, ``Inpaint`` -> ``"inpaint"``, ``Blur`` -> ``"deblur_gauss"``
    for a kernel symmetric under flips and transposition, else ``"deblur_motion"``; other
    operators (``CT``) -> ``None`` (the solver's default configuration).
    """
    cls = description.get("class")
    if cls == "Downsample":
        return "sr"
    if cls == "Inpaint":
        return "inpaint"
    if cls == "Blur":
        k = np.asarray(description.get("kernel"), np.float64)
        if k.ndim == 2 and k.shape[0] == k.shape[1]:
            tol = 1e-6 * float(np.abs(k).max() or 1.0)
            if all(np.allclose(k, v, rtol=0, atol=tol) for v in (k[::-1], k[:, ::-1], k.T)):
                return "deblur_gauss"
        return "deblur_motion"
    return None


def _per_image(description: Dict[str, Any]) -> Dict[str, Any]:
    """The description of an operator acting on one image (drops a batch axis)."""
    d = dict(description)
    shape = [int(s) for s in np.asarray(d["input_shape"]).ravel()]
    if len(shape) == 4:
        d["input_shape"] = shape[1:]
    elif len(shape) != 3:
        raise CLIError(f"the problem's operator acts on input_shape {tuple(shape)}; expected (H, W, C) "
                       "or (N, H, W, C)")
    return d


def _resolve_prior(arg: Optional[str]) -> Path:
    if arg is None:
        from .. import bundled_path

        path = bundled_path()
        if not path.is_dir():
            raise CLIError(f"the bundled prior is not installed (expected {path}); pass --prior PATH "
                           "to a diffusers-format folder")
        return path
    path = Path(arg)
    if not path.exists():
        raise CLIError(f"prior folder not found: {path}")
    if not path.is_dir():
        raise CLIError(f"--prior must be a diffusers-format folder (unet/ vae/ text_encoder/ tokenizer/ "
                       f"scheduler/); got the file {path}")
    return path


def _sample_history(hist, j: int) -> Dict[str, np.ndarray]:
    """Sample `j`'s share of a batch history (fields with a sample axis are sliced)."""
    out = {}
    for name, a in zip(hist._fields, hist):
        a = np.asarray(a)
        if a.ndim >= 2:
            a = a[:, j]
        if a.size:
            out[name] = a
    return out


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def _flatten(d: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(d, dict):
        out: Dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _incompatible(e, out: Path, writer_kw: Dict[str, Any]) -> CLIError:
    """Name the settings in which `out` differs from this run."""
    import json

    import h5py

    diffs = []
    try:
        with h5py.File(out, "r") as f:
            attrs = dict(f.attrs)
        theirs = {"solver": str(attrs.get("solver")), "seed": int(attrs["seed"]) if "seed" in attrs else None,
                  "n_samples": int(attrs.get("n_samples", -1)),
                  "image_shape": tuple(int(s) for s in np.asarray(attrs.get("image_shape", [])).ravel())}
        theirs.update(_flatten(json.loads(attrs.get("hyperparameters", "{}"))))
        mine = {k: writer_kw[k] for k in ("solver", "seed", "n_samples")}
        mine["image_shape"] = tuple(writer_kw["image_shape"])
        mine.update(_flatten(json.loads(json.dumps(writer_kw["hyperparameters"]))))
        other_solver = theirs["solver"] != mine["solver"]
        for k in sorted(set(theirs) | set(mine)):
            if other_solver and k.startswith("config."):
                continue  # another solver has another configuration: naming the solver suffices
            if theirs.get(k) != mine.get(k):
                diffs.append(f"{k} {theirs.get(k)!r} (this run: {mine.get(k)!r})")
    except Exception:  # noqa: BLE001 -- fall back to the library's message
        diffs = []
    what = "; ".join(diffs) if diffs else str(e)
    return CLIError(f"{out} holds a run with other settings: {what}. Rerun with the file's settings to "
                    f"resume, or use another --out, or --overwrite to start afresh")


# ----------------------------------------------------------------------------- parser
def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``solve`` on the sub-command parsers `sub`."""
    p = sub.add_parser(
        "solve",
        help="solve every problem of a problem file and append the results (resumable)",
        description=wrap("Solve every sample of a problem file with a latent-diffusion solver, in batches, "
                     "appending each finished sample (reconstruction, PSNR/SSIM when the file has ground "
                     "truth, wall time, per-step history) and the run's provenance to an HDF5 result file. "
                     "Rerunning the same command resumes: finished samples are skipped. Sample n is solved "
                     "with the key fold_in(PRNGKey(seed), n), whatever the batch."),
        epilog=(wrap("presets (--preset): auto picks the solver preset from the operator (Downsample: sr; "
                     "Blur: deblur_gauss for a symmetric kernel, else deblur_motion; Inpaint: inpaint; CT: "
                     "none); a task name of 'diffprior simulate' selects its preset (ct: none); none uses "
                     "the solver's defaults.") + "\n\nexample:\n  diffprior solve problems.h5 --solver p2l "
                "--out results.h5 --steps 200 --batch 4"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("problem", metavar="PROBLEMS",
                   help="problem file (HDF5) written by 'diffprior simulate' or diffprior.io.write_problem")
    p.add_argument("--solver", required=True, choices=list(SOLVERS), metavar="NAME",
                   help=f"algorithm, one of: {', '.join(SOLVERS)} (P2L is the paper's method)")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="result file (HDF5); created, or resumed if it exists with the same settings")
    p.add_argument("--prior", default=None, metavar="PATH",
                   help="diffusers-format folder of the latent diffusion prior (unet/ vae/ text_encoder/ "
                        "tokenizer/ scheduler/), e.g. a local Stable Diffusion v1.5; default: the bundled "
                        "CIFAR-10 prior")
    p.add_argument("--steps", type=_pos_int, default=DEFAULT_STEPS, metavar="N",
                   help=f"reverse diffusion (DDIM) steps (default {DEFAULT_STEPS}, as in the paper)")
    p.add_argument("--batch", type=_pos_int, default=DEFAULT_BATCH, metavar="B",
                   help=f"samples solved together (default {DEFAULT_BATCH}); does not change the results")
    p.add_argument("--seed", type=_nonneg_int, default=0, metavar="S",
                   help="seed of the solver's randomness (initial latents, DDIM noise); default 0")
    p.add_argument("--preset", choices=PRESETS, default="auto", metavar="TASK",
                   help=f"hyperparameter preset, one of: {', '.join(PRESETS)} (default auto; see below)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a fresh result file instead of resuming (discards finished samples)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars over samples and steps (default: when stderr is a terminal; "
                        "otherwise one line per batch)")
    p.set_defaults(func=run)
    return p


# ----------------------------------------------------------------------------- run
def _settings(args, problem, description) -> Tuple[type, Any, Optional[str], Path, Dict[str, Any]]:
    from .. import solvers

    solver_cls = getattr(solvers, SOLVERS[args.solver])
    if args.preset == "auto":
        task = infer_solver_task(description)
    elif args.preset == "none":
        task = None
    else:
        task = TASKS[args.preset].solver_task
    config_cls = solver_cls.config_class
    prior_path = _resolve_prior(args.prior)
    config = config_cls.for_task(solvers.Task(task), preset_dataset(prior_path)) if task else config_cls()
    hyper = {
        "config": config_to_json(config),
        "num_steps": int(args.steps),
        "preset": task,
        "prompt": solver_cls.default_prompt,
        "prior": {"name": prior_path.resolve().name, "fingerprint": prior_fingerprint(prior_path)},
        "problem_digest": _digest(problem.measurement),
    }
    return solver_cls, config, task, prior_path, hyper


def _load_prior(path: Path):
    from ..prior import LatentDiffusionPrior

    return LatentDiffusionPrior.from_pretrained(path)


def run(args) -> None:
    """Run ``diffprior solve`` with parsed arguments."""
    from ..io import IncompatibleResultError, ResultWriter, WriteMode, read_problem

    t_start = time.perf_counter()
    problem_path = Path(args.problem)
    problem = read_problem(problem_path)
    description = _per_image(problem.operator)
    image_shape = tuple(int(s) for s in description["input_shape"])
    N = problem.n_samples
    solver_cls, config, task, prior_path, hyper = _settings(args, problem, description)
    out = Path(args.out)
    if out.resolve() == problem_path.resolve():
        raise CLIError("--out must differ from the problem file")
    writer_kw = dict(n_samples=N, image_shape=image_shape, solver=solver_cls.__name__, hyperparameters=hyper,
                     seed=args.seed, problem=str(problem_path.resolve()))

    writer = None
    if out.exists() and not args.overwrite:
        try:
            writer = ResultWriter(out, mode=WriteMode.RESUME, **writer_kw)
        except IncompatibleResultError as e:
            raise _incompatible(e, out, writer_kw) from None
        pending = writer.pending_indices()
        if pending.size == 0:
            print(f"nothing to do: all {N} samples of {out} are done (see: diffprior report {out})")
            return
    else:
        pending = np.arange(N)
    n_before = N - pending.size

    prior = _load_prior(prior_path)

    import jax
    import jax.numpy as jnp

    from operators import from_description

    from ..metrics import psnr, ssim
    from ..solvers import SolverFailure, sample_keys

    A = from_description(description)
    B = min(args.batch, N)
    root = jax.random.PRNGKey(args.seed)
    gt = problem.ground_truth
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
    label = f"{solver_cls.__name__}" + (f" (preset {task})" if task else "")
    print(f"solving {pending.size} of {N} samples with {label}, {args.steps} steps, batch {B}, seed {args.seed}, "
          f"prior {prior_path} -> {out}" + (f" ({n_before} already done)" if n_before else ""),
          file=sys.stderr)

    from tqdm.auto import tqdm

    sample_bar = tqdm(total=N, initial=n_before, unit="sample", desc="samples", disable=not show, position=0)
    step_bar = tqdm(total=args.steps, unit="step", desc="steps", leave=False, disable=not show, position=1)
    appended, failed = 0, []

    def on_chunk(solver):
        step_bar.n = solver.step_index
        step_bar.refresh()

    try:
        for b0 in range(0, pending.size, B):
            idx = pending[b0:b0 + B]
            run_idx = np.concatenate([idx, np.repeat(idx[-1:], B - idx.size)])
            t0 = time.perf_counter()
            step_bar.reset(total=args.steps)
            solver = solver_cls(y=problem.measurement[run_idx], A=A, prior=prior, key=sample_keys(root, run_idx),
                                num_steps=int(args.steps), config=config, progress=False)
            try:
                x = solver.solve(callback=on_chunk)
                status = np.zeros(B, np.int32)
            except SolverFailure as e:
                x, status = e.x, np.asarray(e.status)
            x = np.asarray(x, np.float32)
            hist = solver.history()
            dt = (time.perf_counter() - t0) / idx.size
            mets: Dict[str, np.ndarray] = {}
            if gt is not None:
                ref = jnp.asarray(gt[run_idx])
                mets = {"psnr": np.asarray(psnr(jnp.asarray(x), ref)), "ssim": np.asarray(ssim(jnp.asarray(x), ref))}
            if writer is None:
                mode = WriteMode.OVERWRITE if args.overwrite else WriteMode.RESUME
                writer = ResultWriter(out, mode=mode, **writer_kw)
            for j, n in enumerate(idx):
                writer.append(int(n), x[j], metrics={k: v[j] for k, v in mets.items()},
                              history=_sample_history(hist, j), wall_time=dt)
                appended += 1
                if status[j]:
                    failed.append(int(n))
                sample_bar.update(1)
                if kill_after and appended >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
            if not show:
                print(f"  samples {idx[0]}-{idx[-1]} done ({n_before + appended}/{N}, "
                      f"{dt * idx.size:.1f} s)", file=sys.stderr)
    finally:
        step_bar.close()
        sample_bar.close()

    summary = f"solved {appended} samples in {time.perf_counter() - t_start:.1f} s -> {out} ({N}/{N} done)"
    if gt is not None:
        from ..io import read_result

        res = read_result(out)
        ok = res.done & np.isfinite(res.metrics.get("psnr", np.full(N, np.nan)))
        if ok.any():
            summary += (f"; mean PSNR {np.mean(res.metrics['psnr'][ok]):.2f} dB, "
                        f"SSIM {np.mean(res.metrics['ssim'][ok]):.4f}")
    print(summary)
    if failed:
        raise CLIError(f"{len(failed)} of {N} samples failed (non-finite or diverged; stored as NaN with their "
                       f"history): {failed[:20]}{' ...' if len(failed) > 20 else ''}", exit_code=1)
