"""Shared pieces of the training loops: cached dataset, logging, graceful interruption."""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

import numpy as np

from ..data import ImageSet, read_dataset, split


def load_train_val(data_path: str, cache_dir: str | Path) -> tuple[ImageSet, ImageSet]:
    """Read a dataset once, cache the decoded arrays in ``cache_dir``, split train/validation."""
    cache = Path(cache_dir) / "dataset_cache.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        data = ImageSet(z["images"], z["labels"], tuple(z["classes"].tolist()), tuple(z["names"].tolist()))
    else:
        data = read_dataset(data_path)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name("dataset_cache.tmp.npz")
        np.savez(tmp, images=data.images, labels=data.labels, classes=np.array(data.classes),
                 names=np.array(data.names))
        tmp.replace(cache)
    return split(data)


def record_command(folder: str | Path) -> None:
    """Append this process's command line to ``folder/commands.txt`` (provenance for model cards)."""
    import shlex
    import sys

    line = " ".join(shlex.quote(a) for a in ["diffprior" if sys.argv[0].endswith("diffprior") else sys.argv[0],
                                              *sys.argv[1:]])
    with open(Path(folder) / "commands.txt", "a") as f:
        f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n")


class CSVLog:
    """Append-only CSV log that survives restarts (header written once)."""

    def __init__(self, path: str | Path, fields: list[str]):
        self.path = Path(path)
        self.fields = fields
        if not self.path.is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(fields)

    def write(self, **row):
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])


class StopFlag:
    """Set by SIGINT/SIGTERM so a loop can checkpoint and exit cleanly."""

    def __init__(self):
        self.stop = False
        self._old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass

    def _handle(self, signum, frame):
        self.stop = True

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Timer:
    """Wall-clock accumulated across restarts (stored in checkpoint metadata)."""

    def __init__(self, already: float = 0.0):
        self.already = already
        self.start = time.time()

    @property
    def total(self) -> float:
        return self.already + time.time() - self.start


class RunLock:
    """Exclusive lock on a run folder, so two trainers never write the same checkpoints."""

    def __init__(self, folder: str | Path):
        import fcntl

        self.path = Path(folder) / ".lock"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w")
        try:
            fcntl.flock(self._f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.close()
            raise BlockingIOError(f"{folder} is in use by another training process (let it finish or stop it first)") from None

    def release(self):
        import fcntl

        fcntl.flock(self._f, fcntl.LOCK_UN)
        self._f.close()
