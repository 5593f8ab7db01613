"""Shared pieces of the training loops: cached dataset, logging, graceful interruption, and the
optimiser, EMA and resumable step loop of the diffusion models (latent and pixel)."""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..data import DatasetError, ImageSet, batches, read_dataset, split
from . import checkpoint

#: Name of the decoded-dataset cache a run folder keeps (see :func:`load_train_val`).
DATASET_CACHE = "dataset_cache.npz"


def load_train_val(data_path: str, cache_dir: str | Path) -> tuple[ImageSet, ImageSet]:
    """Read a dataset once, cache the decoded arrays in ``cache_dir``, split train/validation."""
    cache = Path(cache_dir) / DATASET_CACHE
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


def check_data(data_path: str, cache_dir: str | Path) -> None:
    """Raise :class:`~diffprior.data.DatasetError` if ``data_path`` does not exist and
    ``cache_dir`` holds no decoded copy of it: before a run folder is created for nothing."""
    if not (Path(cache_dir) / DATASET_CACHE).is_file() and not Path(data_path).exists():
        raise DatasetError(f"{data_path}: no such file or directory (the training data: an image folder, "
                           ".tar(.gz) or .h5; e.g. ../shared/data/cifar10/train.tar.gz)")


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


# ----------------------------------------------------------------------------- diffusion training
def diffusion_optimizer(lr: float, warmup: int, steps: int):
    """The diffusion models' optimiser and learning-rate schedule ``(tx, sched)``.

    Adam (AdamW without weight decay) after clipping the global gradient norm to 1, the rate
    warmed up linearly from 0 over ``warmup`` steps and constant after. Only the
    structure of the optimiser state matters for reading a checkpoint back.
    """
    import optax

    sched = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(steps, warmup + 1), lr)  # constant after warmup
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=0.0)), sched


def new_train_state(params, tx) -> dict:
    """A fresh state ``{"params", "opt_state", "ema", "step", "wall"}`` (step 0, EMA = ``params``)."""
    import jax.numpy as jnp

    return {"params": params, "opt_state": tx.init(params), "ema": params, "step": jnp.zeros((), jnp.int32),
            "wall": 0.0}


def ema_update(ema, params, step, decay: float):
    """Exponential moving average of the weights, with the decay ramped up early in training:
    :math:`d = \\min(d_{max}, (1 + n) / (10 + n))` at step :math:`n`."""
    import jax
    import jax.numpy as jnp

    n = step.astype(jnp.float32)
    d = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
    return jax.tree_util.tree_map(lambda e, p: d * e + (1 - d) * p, ema, params)


def make_train_step(loss_fn: Callable, tx, ema_decay: float):
    """Jitted step ``(state, *batch, key) -> (state, loss)`` for ``loss_fn(params, *batch, key)``:
    one optimiser update of ``state["params"]`` and of their EMA (:func:`ema_update`)."""
    import jax
    import optax

    @jax.jit
    def step(state, *batch_and_key):
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], *batch_and_key)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        ema = ema_update(state["ema"], params, state["step"], ema_decay)
        return {"params": params, "opt_state": opt_state, "ema": ema, "step": state["step"] + 1,
                "wall": state["wall"]}, loss

    return step


def run_steps(state: dict, train_step: Callable, make_batch: Callable, *, n_items: int, cfg, sched, key,
              ckpt: Path, meta: dict, log: CSVLog, desc: str, progress: bool = True,
              max_steps: int | None = None, flip: bool = False) -> dict:
    """Run a resumable training loop from ``state["step"]`` and checkpoint it; return the state.

    The data order is :func:`diffprior.data.batches` (seeded, positionable), the step's key is
    ``fold_in(key, step)`` and ``make_batch`` is a pure function of ``(step, indices, flips)``,
    so a run stopped and restarted at step ``s`` continues exactly the uninterrupted run.

    Args:
        state: the train state (:func:`new_train_state`), fresh or restored.
        train_step: ``(state, *batch, key) -> (state, loss)`` (:func:`make_train_step`).
        make_batch: ``(step, indices, flips) -> tuple`` of the step's batch arrays.
        n_items: number of training items the indices select from.
        cfg: the run's settings (``steps``, ``batch_size``, ``seed``, ``log_every``, ``ckpt_every``).
        sched: the learning-rate schedule (logged).
        key: the run's ``jax.random`` key.
        ckpt: checkpoint path (without suffix) written every ``cfg.ckpt_every`` steps and at the end.
        meta: JSON-able metadata saved with the checkpoint (``step`` and ``wall_s`` are added).
        log: CSV log with columns ``step, loss, lr, wall_s`` (mean loss over ``log_every`` steps).
        desc: progress-bar label.
        progress: show a progress bar.
        max_steps: stop after this many steps in this call (checkpointing first).
        flip: draw horizontal flips in the batch stream (passed to ``make_batch``).

    A SIGINT or SIGTERM stops the loop after the current step, with a final checkpoint.
    """
    import jax
    from tqdm.auto import tqdm

    step0 = int(state["step"])
    timer = Timer(float(state["wall"]))
    flag = StopFlag()

    def save(step):
        state["wall"] = timer.total
        checkpoint.save(ckpt, state, dict(meta, step=step, wall_s=timer.total))

    bar = tqdm(total=cfg.steps, initial=step0, desc=desc, disable=not progress, dynamic_ncols=True)
    end = cfg.steps if max_steps is None else min(cfg.steps, step0 + max_steps)
    losses = []
    step = step0
    try:
        for step, idx, flips in batches(n_items, cfg.batch_size, cfg.seed, start_step=step0, flip=flip):
            if step >= end or flag.stop:
                break
            state, loss = train_step(state, *make_batch(step, idx, flips), jax.random.fold_in(key, step))
            losses.append(loss)
            bar.update(1)
            done = step + 1
            if done % cfg.log_every == 0 or done == end:
                mean_loss = float(np.mean(jax.device_get(losses)))
                losses = []
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                log.write(step=done, loss=mean_loss, lr=float(sched(step)), wall_s=round(timer.total, 1))
            if done % cfg.ckpt_every == 0:
                save(done)
        save(step)  # the loop always leaves by ``break``: ``step`` steps are complete
    finally:
        bar.close()
        flag.restore()
    return state
