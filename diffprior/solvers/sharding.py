"""A solver's batch over several devices: a 1-D mesh whose axis ``"batch"`` splits the samples.

Samples are independent (each has its own key, measurement, step size and, for operators of
:mod:`operators`, its own kernel or mask), so the batch axis is the natural one to split. The
solver's :class:`~diffprior.solvers.core.Data` and :class:`~diffprior.solvers.core.State` are
placed with ``jax.sharding.NamedSharding``: every array with a sample axis is split along it,
everything else (the prior's weights, the timesteps, an operator's shared arrays) is
replicated, and the same jitted core runs on the sharded arrays (XLA partitions the program;
there is no ``pmap``). A batch that does not divide by the device count is padded by
repeating its last sample, and the padding is dropped from every output.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "batch"


def resolve_devices(devices) -> list | None:
    """``None`` (no sharding), ``"all"``, a count, or a sequence of ``jax.Device`` -> the devices.

    Raises:
        ValueError: a count below 1 or above the devices present, or an unknown word.
        TypeError: anything else.
    """
    if devices is None:
        return None
    present = jax.local_devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be 'all', a count or a list of devices, got {devices!r}")
        return list(present)
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(present):
            raise ValueError(f"devices={devices}, but this process has {len(present)} "
                             f"{present[0].platform} device(s)")
        return list(present[:devices])
    if isinstance(devices, Sequence) and devices and all(isinstance(d, jax.Device) for d in devices):
        if len(set(devices)) != len(devices):
            raise ValueError("devices lists a device twice")
        return list(devices)
    raise TypeError(f"devices must be None, 'all', a count or a list of jax devices, got {devices!r}")


def padded_indices(n: int, count: int) -> np.ndarray:
    """Sample indices of the run: ``0..n-1`` then the last one repeated up to a multiple of ``count``."""
    total = -(-n // count) * count
    return np.concatenate([np.arange(n), np.full(total - n, n - 1)]).astype(np.int64)


def replicate(tree, devices):
    """``tree`` (e.g. a prior's weights) copied to every device of ``devices`` (as
    :class:`BatchSharding` places it), so that solvers built on it do not copy it again."""
    found = resolve_devices(devices)
    if found is None or len(found) < 2:
        return tree
    whole = NamedSharding(Mesh(np.asarray(found), (AXIS,)), PartitionSpec())
    return jax.device_put(tree, jax.tree_util.tree_map(lambda _: whole, tree))


class BatchSharding:
    """Placement of a solver's arrays on a 1-D device mesh.

    Args:
        devices: the devices (two or more).
        n: samples in the run (a multiple of ``len(devices)``).
    """

    def __init__(self, devices: list, n: int):
        if n % len(devices):
            raise ValueError(f"{n} samples do not split over {len(devices)} devices")
        self.devices, self.n = list(devices), int(n)
        self.mesh = Mesh(np.asarray(self.devices), (AXIS,))
        self.split = NamedSharding(self.mesh, PartitionSpec(AXIS))
        self.whole = NamedSharding(self.mesh, PartitionSpec())

    def _by_axis(self, tree):
        """Split the leaves with a leading axis of length ``n``; replicate the others."""
        return jax.tree_util.tree_map(
            lambda a: self.split if getattr(a, "ndim", 0) >= 1 and a.shape[0] == self.n else self.whole, tree)

    def _operator(self, fwd):
        """The forward model's placement: an operator's per-sample fields split, the rest replicated."""
        A = fwd.A
        leaves, treedef = jax.tree_util.tree_flatten(fwd)
        fields = tuple(getattr(A, "data_fields", ()))
        if fwd.batched and fwd.traced and len(fields) == len(leaves):
            per = set(A.per_sample)
            return jax.tree_util.tree_unflatten(treedef, [self.split if f in per else self.whole for f in fields])
        return jax.tree_util.tree_unflatten(treedef, [self.whole] * len(leaves))

    def place_data(self, data):
        """``data`` (a :class:`~diffprior.solvers.core.Data`) put on the mesh."""
        whole = lambda tree: jax.tree_util.tree_map(lambda _: self.whole, tree)  # noqa: E731
        shardings = data._replace(prior=whole(data.prior), fwd=self._operator(data.fwd), y=self.split,
                                  timesteps=self.whole, prev_timesteps=self.whole, step_size=self.split,
                                  keys=self.split, emb0=self.split,
                                  mix=jax.tree_util.tree_map(lambda _: self.split, data.mix))
        return jax.device_put(data, shardings)

    def place_state(self, state):
        """``state`` put on the mesh: per-sample leaves split, scalars (Adam's count) replicated."""
        return jax.device_put(state, self._by_axis(state))
