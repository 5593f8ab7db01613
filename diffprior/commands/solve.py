"""``diffprior solve``: solve every problem of a problem file, resumably.

The operator is rebuilt from the file's stored description, the samples are solved in
batches by the library's runner (:func:`diffprior.runner.solve_problem`, which the
benchmarks use too), and each finished sample is appended to the result file
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
batches; per-sample operators (one kernel or mask per image) are traced data, so they share
that program too. Results therefore do not depend on ``--batch`` or on interruptions (up to
floating-point differences between batch sizes).

Presets: the problem file records the task that made it (schema version 2), and the task
registry (:mod:`diffprior.tasks`) names the solver preset that fits; which preset *table*
applies comes from the prior's own metadata (:func:`diffprior.priors.preset_table`).
``--set NAME=VALUE`` then overrides any field, by dotted name (``--set prompt.iters=1``).

Wall time: the time to solve a batch divided by the number of samples it finished; the
compilation before a process's first batch is timed apart and printed, not counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import CLIError, wrap
from .simulate import _nonneg_int, _pos_int
from ..solvers.registry import SOLVERS
from ..tasks import TASKS

__all__ = ["add_parser", "run", "prior_fingerprint"]

PRESETS = ("auto", "none") + tuple(TASKS)
DEFAULT_STEPS = 1000
DEFAULT_BATCH = 4

_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
_SAMPLE_BYTES = 1 << 20


# ----------------------------------------------------------------------------- helpers
def prior_fingerprint(path) -> str:
    """A cheap identity of a diffusers-layout prior folder (16 hex digits).

    Hashes every file of the components ``unet/ vae/ text_encoder/ tokenizer/ scheduler/``,
    or, in a bare model folder without them (a pixel-space ``UNet2DModel`` with its
    ``config.json`` and weights at the top), every file at the top but the card and pictures:
    names and sizes, the full text of configuration and tokenizer files, and the first and
    last MiB of weight files. Two checkpoints of one architecture (SD v1.4 and v1.5) differ.
    """
    h = hashlib.sha256()
    path = Path(path)
    bare = not any((path / comp).is_dir() for comp in _COMPONENTS)
    for comp in ("",) * bare + tuple(_COMPONENTS):
        d = path / comp if comp else path
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if not f.is_file() or (not comp and f.suffix in (".md", ".png")):
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


def _resolve_prior(arg: Optional[str], pixel: bool = False) -> Path:
    """The prior folder of ``--prior``; without it the bundled prior of the solver's kind
    (``pixel``: the pixel-space one, for DPS, DDS and DiffPIR)."""
    if arg is None:
        from .. import bundled_path

        kind = "pixel" if pixel else "latent"
        path = bundled_path(kind)
        if not path.is_dir():
            raise CLIError(f"the bundled {kind} prior is not installed (expected {path}); pass --prior PATH "
                           "to a diffusers-format folder")
        return path
    path = Path(arg)
    if not path.exists():
        raise CLIError(f"prior folder not found: {path}")
    if not path.is_dir():
        raise CLIError(f"--prior must be a diffusers-format folder (unet/ vae/ text_encoder/ tokenizer/ "
                       f"scheduler/); got the file {path}")
    return path


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


def _incompatible(e, out: Path) -> CLIError:
    """Name the settings in which `out` differs from this run (from the library's comparison)."""
    diffs = [d.removeprefix("hyperparameters.") for d in getattr(e, "differences", [])]
    what = "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "") if diffs else str(e)
    return CLIError(f"{out} holds a run with other settings: {what}. Rerun with the file's settings to "
                    f"resume, or use another --out, or --overwrite to start afresh")


# ----------------------------------------------------------------------------- parser
def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``solve`` on the sub-command parsers `sub`."""
    p = sub.add_parser(
        "solve",
        help="solve every problem of a problem file and append the results (resumable)",
        description=wrap("Solve every sample of a problem file with a registered solver (latent or pixel-space "
                     "diffusion, or ADMM), in batches, "
                     "appending each finished sample (reconstruction, PSNR/SSIM when the file has ground "
                     "truth, wall time, per-step history) and the run's provenance to an HDF5 result file. "
                     "Rerunning the same command resumes: finished samples are skipped. Sample n is solved "
                     "with the key fold_in(PRNGKey(seed), n), whatever the batch."),
        epilog=(wrap("presets (--preset): auto takes the solver preset of the task recorded in the problem file "
                     "(files of 'diffprior simulate'; a file without a task record uses the solver's defaults: "
                     "name the task with --preset); a task name selects its preset (ct: none); none uses the "
                     "solver's defaults. The preset table (searched values for the bundled prior, the paper's "
                     "otherwise) comes from the prior's metadata. --set NAME=VALUE, repeatable, then replaces "
                     "any configuration field by its dotted name: --set step_size=0.3 --set prompt.iters=1 "
                     "--set projection=none --set update=AdamHistory.") +
                "\n\nexamples:\n  diffprior solve problems.h5 --solver p2l --out results.h5 --steps 200 --batch 4"
                "\n  diffprior solve problems.h5 --solver ldps --out r.h5 --steps 25 --set step_size=0.3"
                "\n  diffprior solve problems.h5 --solver tv-admm --out tv.h5 --set lmbda=0.01"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("problem", metavar="PROBLEMS",
                   help="problem file (HDF5) written by 'diffprior simulate' or diffprior.io.write_problem")
    p.add_argument("--solver", required=True, choices=list(SOLVERS), metavar="NAME",
                   help=f"algorithm, one of: {', '.join(SOLVERS)} (P2L is the paper's method; dps, dds and "
                        "diffpir need a pixel-space prior)")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="result file (HDF5); created, or resumed if it exists with the same settings")
    p.add_argument("--prior", default=None, metavar="PATH",
                   help="diffusers-format folder of the diffusion prior (unet/ vae/ text_encoder/ "
                        "tokenizer/ scheduler/ for a latent prior), e.g. a local Stable Diffusion v1.5; "
                        "default: the bundled CIFAR-10 prior of the solver's kind (latent; pixel-space for "
                        "dps, dds and diffpir)")
    p.add_argument("--steps", type=_pos_int, default=None, metavar="N",
                   help=f"reverse diffusion steps (default: the solver's, {DEFAULT_STEPS} as in the papers of "
                        "P2L, the latent baselines and DPS; 50 for DDS, 100 for DiffPIR)")
    p.add_argument("--batch", type=_pos_int, default=DEFAULT_BATCH, metavar="B",
                   help=f"samples solved together (default {DEFAULT_BATCH}); does not change the results")
    p.add_argument("--seed", type=_nonneg_int, default=0, metavar="S",
                   help="seed of the solver's randomness (initial latents, DDIM noise); default 0")
    p.add_argument("--preset", choices=PRESETS, default="auto", metavar="TASK",
                   help=f"hyperparameter preset, one of: {', '.join(PRESETS)} (default auto; see below)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="replace a configuration field after the preset, by dotted name (repeatable), e.g. "
                        "--set step_size=0.3 --set prompt.iters=1")
    p.add_argument("--tiles", choices=("none", "multidiffusion", "mixture"), default="none",
                   help="run the denoiser on the whole latent (none, default; the paper's 'vanilla') or on "
                        "overlapping windows of the prior's native latent size blended by MultiDiffusion (uniform) "
                        "or Mixture of Diffusers (Gaussian) weights, for images larger than the prior's size")
    p.add_argument("--tile-stride", type=_pos_int, default=None, metavar="N",
                   help="offset between windows in latent pixels (default: half a window)")
    p.add_argument("--tile-batch", type=_pos_int, default=None, metavar="N",
                   help="windows per denoiser call (default: all of a step's), to bound memory on large images")
    p.add_argument("--vae-tile", type=_pos_int, default=None, metavar="PX",
                   help="encode and decode in overlapping tiles of PX pixels (default: whole images)")
    p.add_argument("--devices", default=None, metavar="N|all",
                   help="split each batch over N devices (or all of them) of this process; on a CPU, "
                        "XLA_FLAGS=--xla_force_host_platform_device_count=N makes N host devices (default: one)")
    p.add_argument("--num-processes", type=_pos_int, default=None, metavar="P",
                   help="the problems are shared by P processes; this one solves its share into "
                        "OUT.part-I-of-P.h5 (join the parts with 'diffprior merge OUT')")
    p.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process's index, 0 to P-1 (with --num-processes, or given to the coordinator)")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="find the process index and count through jax.distributed (process 0 serves at "
                        "HOST:PORT; also read from JAX_COORDINATOR_ADDRESS); under Slurm or Open MPI "
                        "--distributed alone detects them")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() with what --coordinator/--num-processes/--process-id "
                        "give and the cluster (Slurm, Open MPI) supplies")
    p.add_argument("--overwrite", action="store_true",
                   help="start a fresh result file instead of resuming (discards finished samples)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars over samples and steps (default: when stderr is a terminal; "
                        "otherwise one line per batch)")
    p.set_defaults(func=run)
    return p


# ----------------------------------------------------------------------------- run
def _overrides(items) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise CLIError(f"--set expects NAME=VALUE (e.g. --set step_size=0.3), got {item!r}")
        out[name.strip()] = value
    return out


def _config_fields(solver_cls) -> set:
    cls = getattr(solver_cls, "config_class", None)
    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()


def _solver_task(args, problem) -> Optional[str]:
    """The solver preset (a :class:`diffprior.solvers.Task` value) chosen by ``--preset``."""
    if args.preset == "none":
        return None
    name = problem.task if args.preset == "auto" else args.preset
    if name is None:  # run() says so once everything is checked
        return None
    if name not in TASKS:
        raise CLIError(f"the problem file records the task {name!r}, which this version does not know; "
                       f"pass --preset with one of: {', '.join(PRESETS)}")
    return TASKS[name].solver_task


def _settings(args, problem) -> Tuple[type, Any, Optional[str], Path, Dict[str, Any]]:
    from ..priors import preset_table
    from ..runner import solver_config
    from ..solvers import ConfigError

    solver_cls = SOLVERS[args.solver]
    if args.steps is None:
        args.steps = getattr(solver_cls, "default_num_steps", DEFAULT_STEPS)
    task = _solver_task(args, problem)
    prior_path = _resolve_prior(args.prior, pixel=getattr(solver_cls, "pixel_space", False))
    overrides = _overrides(args.overrides)
    if "noise_sigma" in _config_fields(solver_cls) and "noise_sigma" not in overrides:
        overrides["noise_sigma"] = repr(float(problem.noise_sigma))  # DiffPIR: the file's noise level
    try:
        config = solver_config(solver_cls, task, preset_table(prior_path), overrides)
    except ConfigError as e:
        raise CLIError(f"{solver_cls.__name__}: {e}") from None
    hyper = {
        "config": config.to_json(),
        "num_steps": int(args.steps) if solver_cls.uses_prior else None,
        "preset": task,
        "problem_digest": _digest(problem.measurement),
    }
    if solver_cls.uses_prior:
        hyper["prompt"] = solver_cls.default_prompt
        hyper["prior"] = {"name": prior_path.resolve().name, "fingerprint": prior_fingerprint(prior_path)}
        hyper["tiling"] = {"mode": args.tiles, "stride": args.tile_stride, "tile_batch": args.tile_batch,
                           "vae_tile": args.vae_tile}
    elif args.tiles != "none" or args.vae_tile:
        raise CLIError(f"--tiles and --vae-tile apply to the diffusion solvers; {solver_cls.__name__} uses no prior")
    return solver_cls, config, task, prior_path, hyper


def _process(args):
    """``(index, count)`` of this process among those sharing the problems, or ``None`` (alone).

    With ``--coordinator`` or ``--distributed`` they come from ``jax.distributed.initialize``
    (flags, ``JAX_COORDINATOR_ADDRESS``, or Slurm / Open MPI detection), which is shut down
    again at once: the shares are independent, so the processes need not stay connected (and
    one restarted alone finds its part). Otherwise from ``--num-processes``/``--process-id``.
    """
    given = (args.num_processes, args.process_id)
    if args.coordinator or args.distributed:
        import jax

        try:
            jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                       process_id=args.process_id, initialization_timeout=120)
        except (ValueError, RuntimeError) as e:
            raise CLIError(f"jax.distributed.initialize failed: {str(e).splitlines()[0]}") from None
        from jax._src import distributed as _jd  # the index and count initialize() settled on,

        # read without starting the backends, which then stay local to this process
        index, count = _jd.global_state.process_id, _jd.global_state.num_processes
        jax.distributed.shutdown()
    elif given == (None, None):
        return None
    elif None in given:
        raise CLIError("--num-processes and --process-id go together (or use --coordinator / --distributed)")
    else:
        index, count = args.process_id, args.num_processes
    if not 0 <= index < count:
        raise CLIError(f"--process-id {index} is out of range for {count} processes (0 to {count - 1})")
    return int(index), int(count)


def _devices(value, solver_cls):
    """``--devices`` -> the solvers' ``devices`` argument (a count or 'all'), checked before any work."""
    if value is None:
        return None
    if value != "all":
        try:
            value = int(value)
        except ValueError:
            raise CLIError(f"--devices must be a count or 'all', got {value!r}") from None
    if not solver_cls.uses_prior:
        raise CLIError(f"--devices applies to the diffusion solvers; {solver_cls.__name__} runs on one device")
    from ..solvers.sharding import resolve_devices

    try:
        found = resolve_devices(value)
    except ValueError as e:
        import jax

        hint = (f" (on a CPU, set XLA_FLAGS=--xla_force_host_platform_device_count={value} before starting)"
                if jax.devices()[0].platform == "cpu" and isinstance(value, int) else "")
        raise CLIError(f"--devices: {e}{hint}") from None
    return len(found)


def _check_writable(out: Path) -> None:
    """Refuse an --out whose folder is missing or not writable, before any work."""
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise CLIError(f"--out {out}: the folder {folder} does not exist")
    if out.exists() and not os.access(out, os.W_OK):
        raise CLIError(f"--out {out}: the file is not writable")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".diffprior-write-check-"):
            pass
    except OSError as e:
        raise CLIError(f"--out {out}: cannot write in the folder {folder} ({e.strerror or e})") from None


def _load_prior(path: Path):
    from ..priors import load

    return load(path)


def run(args) -> None:
    """Run ``diffprior solve`` with parsed arguments."""
    from ..io import read_problem

    t_start = time.perf_counter()
    problem_path = Path(args.problem)
    problem = read_problem(problem_path)
    N = problem.n_samples
    image_shape = tuple(int(s) for s in np.asarray(problem.operator["input_shape"]).ravel()[-3:])
    solver_cls, config, task, prior_path, hyper = _settings(args, problem)
    process = _process(args)  # before anything starts JAX's backends
    devices = _devices(args.devices, solver_cls)
    out = Path(args.out)
    if process is not None:
        from ..parts import part_path

        out = part_path(out, *process)
    if out.resolve() == problem_path.resolve():
        raise CLIError("--out must differ from the problem file")
    from ..parts import PartError, exclusive, share

    mine = share(N, *process) if process is not None else np.arange(N)

    _check_writable(out)
    try:
        with exclusive(out):  # a second process writing the same file is refused
            _solve_locked(args, problem, problem_path, out, N, image_shape, solver_cls, config, task, prior_path,
                          hyper, devices, process, mine, t_start)
    except PartError as e:
        raise CLIError(str(e)) from None


def _solve_locked(args, problem, problem_path, out, N, image_shape, solver_cls, config, task, prior_path, hyper,
                  devices, process, mine, t_start) -> None:
    """The part of ``run`` done while holding ``out``'s lock."""
    from ..io import IncompatibleResultError, ResultWriter, WriteMode
    from ..runner import solve_problem

    writer_kw = dict(n_samples=N, image_shape=image_shape, solver=solver_cls.__name__, hyperparameters=hyper,
                     seed=args.seed, problem=str(problem_path.resolve()))
    writer = None
    if out.exists() and not args.overwrite:
        try:
            writer = ResultWriter(out, mode=WriteMode.RESUME, **writer_kw)
        except IncompatibleResultError as e:
            raise _incompatible(e, out) from None
        pending = np.intersect1d(writer.pending_indices(), mine)
        if pending.size == 0:
            writer.close()
            print(f"nothing to do: all {mine.size} samples of {out} are done" + (
                f" (when every part is: diffprior merge {args.out})" if process else
                f" (see: diffprior report {out})"))
            return
    else:
        pending = mine
    n_before = mine.size - pending.size
    prior = _load_prior(prior_path) if solver_cls.uses_prior else None  # a bad prior fails before any write
    notes = []
    if prior is not None:
        from ..solvers import PriorMismatchError

        try:  # a solver (or option) for another kind of prior fails before any write too
            solver_cls.check_prior_kind(prior, config)
        except PriorMismatchError as e:
            raise CLIError(str(e)) from None
        from ..priors.adapt import prior_for_images

        try:
            prior, notes = prior_for_images(prior, image_shape, args.tiles, args.tile_stride, args.tile_batch,
                                            args.vae_tile)
        except ValueError as e:
            raise CLIError(str(e)) from None
    if writer is None:
        writer = ResultWriter(out, mode=WriteMode.OVERWRITE if args.overwrite else WriteMode.RESUME, **writer_kw)
    B = min(args.batch, N)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    if args.preset == "auto" and problem.task is None:
        print("note: the problem file records no task (schema version 1 or written by hand), so the solver's "
              "defaults apply: pass --preset TASK for a task's preset", file=sys.stderr)
    label = f"{solver_cls.__name__}" + (f" (preset {task})" if task else "")
    steps = f"{args.steps} steps, " if solver_cls.uses_prior else ""
    print(f"solving {pending.size} of {mine.size} samples" + (f" (process {process[0]} of {process[1]})" if process else "")
          + f" with {label}, {steps}batch {B}, seed {args.seed}"
          + (f", prior {prior_path}" if solver_cls.uses_prior else "") + f" -> {out}"
          + (f" ({n_before} already done)" if n_before else ""), file=sys.stderr)
    for note in notes:
        print(f"  {note}", file=sys.stderr)

    from tqdm.auto import tqdm

    sample_bar = tqdm(total=mine.size, initial=n_before, unit="sample", desc="samples", disable=not show, position=0)
    step_bar = tqdm(total=args.steps, unit="step", desc="steps", leave=False,
                    disable=not (show and solver_cls.uses_prior), position=1)
    done = [n_before]

    def on_chunk(solver):
        step_bar.n = solver.step_index
        step_bar.refresh()

    def on_batch(report):
        done[0] += report.indices.size
        sample_bar.update(report.indices.size)
        step_bar.reset(total=args.steps)
        if not show:
            compiled = f", compiled in {report.compile_seconds:.1f} s first" if report.compile_seconds > 1 else ""
            print(f"  samples {report.indices[0]}-{report.indices[-1]} done ({done[0]}/{mine.size}, "
                  f"{report.seconds:.1f} s{compiled})", file=sys.stderr)

    try:
        summary = solve_problem(problem, solver_cls, config, writer, prior=prior, num_steps=int(args.steps),
                                seed=args.seed, batch=B, indices=pending, on_batch=on_batch, on_chunk=on_chunk,
                                devices=devices)
    finally:
        step_bar.close()
        sample_bar.close()
        writer.close()
    failed = summary["failed"]
    line = (f"solved {summary['appended']} samples in {time.perf_counter() - t_start:.1f} s -> {out} "
            f"({mine.size}/{mine.size} done)")
    if problem.ground_truth is not None:
        from ..io import read_result

        res = read_result(out)
        ok = res.done & np.isfinite(res.metrics.get("psnr", np.full(N, np.nan)))
        if ok.any():
            line += (f"; mean PSNR {np.mean(res.metrics['psnr'][ok]):.2f} dB, "
                     f"SSIM {np.mean(res.metrics['ssim'][ok]):.4f}")
    print(line)
    if process:
        print(f"process {process[0]} of {process[1]} done; when every part is: diffprior merge {args.out}")
    if failed:
        raise CLIError(f"{len(failed)} of {N} samples failed (non-finite or diverged; stored as NaN with their "
                       f"history): {failed[:20]}{' ...' if len(failed) > 20 else ''}", exit_code=1)
