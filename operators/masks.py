"""Inpainting mask makers.

Every maker takes an explicit JAX PRNG key (same key, same mask) and returns a float32
``(H, W)`` numpy array with 1 = observed pixel and 0 = hole, ready for
:class:`operators.Inpaint`.
"""

from __future__ import annotations

import functools
from typing import Sequence, Tuple, Union

import numpy as np

import jax
import jax.numpy as jnp

__all__ = ["random_mask", "box_mask", "freeform_mask", "hole_fraction"]


def _check_hw(shape) -> Tuple[int, int]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 2:
        raise ValueError(f"Mask shape must be (H, W); got {shape!r}.")
    if not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(f"Mask shape must be two positive ints (H, W); got {shape!r}.")
    return int(shape[0]), int(shape[1])


def hole_fraction(mask) -> float:
    """Fraction of pixels that are holes (``mask == 0``)."""
    return float(np.mean(np.asarray(mask) == 0))


def random_mask(key: jax.Array, shape: Tuple[int, int], drop: float = 0.8) -> np.ndarray:
    """Mask with a fixed fraction of pixels, chosen uniformly at random, missing.

    Exactly ``round(drop * H * W)`` pixels are dropped (sampling without replacement, as
    DPS's ``mask_generator``), so the hole fraction is `drop` up to rounding.

    Args:
        key: JAX PRNG key.
        shape: ``(H, W)``.
        drop: Fraction of missing pixels in ``[0, 1]``.

    Returns:
        float32 ``(H, W)`` mask, 1 = observed.

    Raises:
        ValueError: For a bad shape or `drop` outside ``[0, 1]``.
    """
    H, W = _check_hw(shape)
    drop = float(drop)
    if not 0.0 <= drop <= 1.0:
        raise ValueError(f"random_mask drop must be in [0, 1]; got {drop}.")
    n_drop = int(round(drop * H * W))
    perm = np.asarray(jax.random.permutation(key, H * W))
    mask = np.ones(H * W, np.float32)
    mask[perm[:n_drop]] = 0.0
    return mask.reshape(H, W)


def box_mask(
    key: jax.Array,
    shape: Tuple[int, int],
    box_size: Union[int, Tuple[int, int]],
    margin: int = 0,
) -> np.ndarray:
    """Mask with one rectangular hole at a uniformly random position.

    DPS and P2L use a 128 x 128 box in 256 x 256 images (``margin=16``).

    Args:
        key: JAX PRNG key.
        shape: ``(H, W)``.
        box_size: Side of a square hole, or ``(bh, bw)``.
        margin: Minimum distance in pixels between the hole and the image border.

    Returns:
        float32 ``(H, W)`` mask, 1 = observed.

    Raises:
        ValueError: If the box (with margins) does not fit in the image.
    """
    H, W = _check_hw(shape)
    bh, bw = (box_size, box_size) if np.isscalar(box_size) else tuple(box_size)
    bh, bw, margin = int(bh), int(bw), int(margin)
    if bh < 1 or bw < 1 or margin < 0:
        raise ValueError(f"box_mask needs box_size >= 1 and margin >= 0; got {box_size}, {margin}.")
    if bh + 2 * margin > H or bw + 2 * margin > W:
        raise ValueError(
            f"box_mask: box {(bh, bw)} with margin {margin} does not fit in image {(H, W)}."
        )
    kt, kl = jax.random.split(key)
    top = int(jax.random.randint(kt, (), margin, H - margin - bh + 1))
    left = int(jax.random.randint(kl, (), margin, W - margin - bw + 1))
    mask = np.ones((H, W), np.float32)
    mask[top : top + bh, left : left + bw] = 0.0
    return mask


_STROKES = 32  # candidate strokes per attempt
_VERTICES = 8  # maximum segments per stroke


@functools.partial(jax.jit, static_argnames=("H", "W"))
def _freeform_attempt(key, H: int, W: int, lo, hi):
    S, V = _STROKES, _VERTICES
    s = float(min(H, W))
    k = jax.random.split(key, 6)
    n_seg = jax.random.randint(k[0], (S,), 1, V + 1)
    start = jax.random.uniform(k[1], (S, 2)) * jnp.array([H, W], jnp.float32)
    angle0 = jax.random.uniform(k[2], (S, 1), maxval=2 * jnp.pi)
    # Brush direction turns by up to +-60 degrees per vertex (smooth, scribble-like strokes).
    turns = jax.random.uniform(k[3], (S, V), minval=-jnp.pi / 3, maxval=jnp.pi / 3)
    angles = angle0 + jnp.cumsum(turns, axis=1)
    lengths = jax.random.uniform(k[4], (S, V), minval=0.05 * s, maxval=0.25 * s)
    widths = jnp.maximum(jax.random.uniform(k[5], (S,), minval=0.02 * s, maxval=0.1 * s), 1.0)
    steps = lengths[..., None] * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)
    verts = start[:, None, :] + jnp.concatenate(
        [jnp.zeros((S, 1, 2)), jnp.cumsum(steps, axis=1)], 1
    )
    grid = jnp.stack(
        jnp.meshgrid(jnp.arange(H) + 0.5, jnp.arange(W) + 0.5, indexing="ij"), axis=-1
    )  # (H, W, 2) pixel centres

    def stroke_hole(a, b, valid, width):
        # Pixels within width/2 of any valid segment (capsule union = round brush).
        ab = b - a  # (V, 2)
        ap = grid[None] - a[:, None, None, :]  # (V, H, W, 2)
        t = jnp.clip(
            jnp.sum(ap * ab[:, None, None, :], -1)
            / jnp.maximum(jnp.sum(ab * ab, -1), 1e-9)[:, None, None],
            0.0,
            1.0,
        )
        d2 = jnp.sum((ap - t[..., None] * ab[:, None, None, :]) ** 2, -1)
        return jnp.any((d2 <= (width / 2) ** 2) & valid[:, None, None], axis=0)

    def body(hole, inp):
        v, ns, w = inp
        valid = jnp.arange(V) < ns
        new = hole | stroke_hole(v[:-1], v[1:], valid, w)
        accept = (jnp.mean(hole) < lo) & (jnp.mean(new) <= hi)
        return jnp.where(accept, new, hole), None

    hole, _ = jax.lax.scan(body, jnp.zeros((H, W), bool), (verts, n_seg, widths))
    return hole


def freeform_mask(
    key: jax.Array,
    shape: Tuple[int, int],
    hole_range: Tuple[float, float] = (0.1, 0.2),
    max_attempts: int = 50,
) -> np.ndarray:
    """Free-form brush-stroke mask, in the spirit of Palette and LaMa.

    Strokes are polylines of 1-8 segments with random start, direction changes of up to
    60 degrees per vertex, segment lengths of 5-25 % and round-brush widths of 2-10 % of
    the shorter image side. Strokes are added one at a time while the hole fraction is
    below ``hole_range[0]``, skipping any stroke that would push it above
    ``hole_range[1]``; if 32 candidate strokes do not reach the range, a fresh attempt
    (key folded with the attempt number) starts. The result is deterministic given `key`.

    Args:
        key: JAX PRNG key.
        shape: ``(H, W)``.
        hole_range: ``(lo, hi)``, the hole fraction is in ``[lo, hi]``.
        max_attempts: Attempts before giving up.

    Returns:
        float32 ``(H, W)`` mask, 1 = observed.

    Raises:
        ValueError: For an invalid range or shape.
        RuntimeError: If no attempt lands in `hole_range` (range too narrow for the size).
    """
    H, W = _check_hw(shape)
    lo, hi = (float(v) for v in hole_range)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(
            f"freeform_mask hole_range must satisfy 0 <= lo <= hi <= 1; got {hole_range}."
        )
    for attempt in range(int(max_attempts)):
        hole = np.asarray(_freeform_attempt(jax.random.fold_in(key, attempt), H, W, lo, hi))
        frac = hole.mean()
        if lo <= frac <= hi:
            return (~hole).astype(np.float32)
    raise RuntimeError(
        f"freeform_mask: no mask with hole fraction in [{lo}, {hi}] for shape {(H, W)} after "
        f"{max_attempts} attempts; widen hole_range."
    )
