"""One problem file solved by several processes: shares, part files, a writer's lock, the merge.

Process ``i`` of ``P`` solves the contiguous share ``np.array_split(range(N), P)[i]`` of the
``N`` samples (deterministic, disjoint, sizes within one) into its own result file, the *part*
``OUT.part-i-of-P.h5`` beside ``OUT.h5``. A part is an ordinary result file (same header as the
single-process run's, the other shares' samples pending), so each resumes on its own, and one
process killed and restarted loses no finished sample of any part. :func:`merge` then copies
every sample, in index order, into ``OUT.h5``: reconstructions, metrics, histories and wall
times as the parts recorded them, under the header a single process would have written. It is
a copy rather than an HDF5 virtual dataset so that the merged file stands alone (the parts can
be deleted, the file moved or sent) and keeps the one-file schema every reader of
:mod:`diffprior.io` knows; the parts are small beside the run that made them. The merged file
is written under a temporary name and renamed when complete: a failed merge leaves nothing.

Since samples are independent (each has its own key), processes never talk to each other
while solving; ``jax.distributed`` only tells each its index and the count
(``diffprior solve --coordinator``, or Slurm / Open MPI auto-detection).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np

from .errors import DiffpriorError


class PartError(DiffpriorError, ValueError):
    """A part is missing, foreign (another run's), unfinished, or being written by another process."""


def share(n: int, index: int, count: int) -> np.ndarray:
    """Sample indices of process ``index`` of ``count`` among ``n``."""
    if not 0 <= index < count:
        raise PartError(f"process index {index} is out of range for {count} processes (0 to {count - 1})")
    return np.array_split(np.arange(n), count)[index]


def part_path(out, index: int, count: int) -> Path:
    """``OUT.part-i-of-P.h5`` beside ``OUT.h5``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.part-{index}-of-{count}{out.suffix}")


def find_parts(out) -> tuple[int, dict]:
    """The parts of ``out`` on disk: ``(count, {index: path})``.

    Raises:
        PartError: none found, parts of different counts, or a part missing.
    """
    out = Path(out)
    pattern = re.compile(re.escape(out.stem) + r"\.part-(\d+)-of-(\d+)" + re.escape(out.suffix) + "$")
    found = {}
    for p in out.parent.glob(f"{out.stem}.part-*-of-*{out.suffix}"):
        m = pattern.match(p.name)
        if m:
            found.setdefault(int(m[2]), {})[int(m[1])] = p
    if not found:
        raise PartError(f"no parts of {out} ({part_path(out, 0, 2).name}, ...) in {out.parent}")
    if len(found) > 1:
        raise PartError(f"parts of {out} from runs with different process counts: {sorted(found)}; "
                        "delete the ones that do not belong")
    (count, parts), = found.items()
    missing = [i for i in range(count) if i not in parts]
    if missing:
        raise PartError(f"{out}: part(s) {missing} of {count} missing (expected {part_path(out, missing[0], count)})")
    return count, parts


@contextlib.contextmanager
def exclusive(path):
    """Hold an exclusive lock on ``path`` (a ``.lock`` file beside it) while writing it.

    Raises:
        PartError: another process holds it.
    """
    import fcntl

    lock = Path(path).with_name(f".{Path(path).name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PartError(f"{path} is being written by another process (lock {lock})") from None
        yield
    finally:
        os.close(fd)


_HEADER = ("solver", "hyperparameters", "seed", "problem")


def merge(out, overwrite: bool = False) -> dict:
    """Join the parts of ``out`` into ``out``; return ``{"parts": P, "samples": N}``.

    Raises:
        PartError: a part missing, foreign (header differs from part 0's), unfinished or with
            samples outside its share; ``out`` exists and not ``overwrite``.
    """
    from .io import ResultWriter, WriteMode, read_result, read_samples

    out = Path(out)
    count, paths = find_parts(out)
    if out.exists() and not overwrite:
        raise PartError(f"{out} exists; pass --overwrite to replace it")
    # headers, flags and metrics first; the images are streamed one at a time below, so that
    # merging never holds more than one sample of any part in memory
    results = {i: read_result(paths[i], samples=False) for i in range(count)}
    first = results[0]
    n, shape = first.reconstruction.shape[0], first.reconstruction.shape[1:]
    for i, r in results.items():
        for field in _HEADER:
            if getattr(r, field) != getattr(first, field):
                raise PartError(f"{paths[i]} is foreign: its {field} differs from {paths[0].name}'s")
        if r.reconstruction.shape != first.reconstruction.shape:
            raise PartError(f"{paths[i]} is foreign: {r.reconstruction.shape[0]} samples of "
                            f"{r.reconstruction.shape[1:]}, {paths[0].name} has {n} of {shape}")
        mine = np.zeros(n, bool)
        mine[share(n, i, count)] = True
        if np.any(r.done & ~mine):
            raise PartError(f"{paths[i]} holds samples outside its share: {np.flatnonzero(r.done & ~mine)[:5].tolist()}")
        if not np.all(r.done[mine]):
            raise PartError(f"{paths[i]} is unfinished: {int(r.done[mine].sum())} of {int(mine.sum())} samples "
                            "done (resume its process first)")
    tmp = out.with_name(f".{out.name}.merging{out.suffix}")
    with exclusive(out):
        writer = ResultWriter(tmp, n, shape, first.solver, first.hyperparameters, seed=first.seed,
                              problem=first.problem, mode=WriteMode.OVERWRITE)
        try:
            for i in range(count):
                r = results[i]
                for k, image in read_samples(paths[i], share(n, i, count)):
                    writer.append(k, image, metrics={m: v[k] for m, v in r.metrics.items()},
                                  history=r.history.get(k), wall_time=float(r.wall_time[k]))
            writer.close()
            os.replace(tmp, out)
        except BaseException:
            writer.close()
            tmp.unlink(missing_ok=True)
            raise
    return {"parts": count, "samples": n}
