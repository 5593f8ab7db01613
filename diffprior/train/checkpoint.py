"""Atomic, resumable training checkpoints (msgpack of a pytree + JSON metadata)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from flax import serialization


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(path: str | os.PathLike, state, meta: dict) -> None:
    """Save a pytree ``state`` and JSON-able ``meta`` (step, seed, config, ...)."""
    path = Path(path)
    atomic_write_bytes(path.with_suffix(".msgpack"), serialization.to_bytes(state))
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta, indent=2).encode())


def exists(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.with_suffix(".msgpack").is_file() and path.with_suffix(".json").is_file()


def restore(path: str | os.PathLike, template):
    """Return ``(state, meta)`` restored into the structure of ``template``."""
    path = Path(path)
    state = serialization.from_bytes(template, path.with_suffix(".msgpack").read_bytes())
    meta = json.loads(path.with_suffix(".json").read_text())
    return state, meta
