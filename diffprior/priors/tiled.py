"""A prior on images larger than its native size: overlapping latent windows, blended.

A diffusion model is trained at one size (32 x 32 images, 8 x 8 latents for the bundled
prior; 512 x 512 and 64 x 64 for Stable Diffusion v1.x). Run on a larger latent as a whole
(the P2L paper's "vanilla", Sec. 4 and App. D) it meets a size it never saw. The two remedies
the paper compares evaluate the denoiser on overlapping windows of the native latent size and
blend the predictions:

* **MultiDiffusion** (Bar-Tal et al. 2023): every window's noise prediction counts the same;
  each latent position takes the average over the windows that cover it;
* **Mixture of Diffusers** (Jimenez 2023): window :math:`k` weighs its prediction with a
  Gaussian centred on the window, :math:`w_k(p) \\propto \\exp(-\\|p - c_k\\|^2 / 2\\sigma^2)`
  with :math:`\\sigma = 0.1 \\times` the window side (variance 0.01 in units of the side), and
  each position takes :math:`\\sum_k w_k \\epsilon_k / \\sum_k w_k`.

In both, with :math:`W_k` the window's indicator and :math:`w_k` its weights,

.. math::
    \\hat\\epsilon(z_t) = \\frac{\\sum_k W_k^T (w_k \\odot \\epsilon_\\theta(W_k z_t, t, c))}
                              {\\sum_k W_k^T w_k},
    \\qquad \\hat z_0 = \\frac{z_t - \\sqrt{1 - \\bar\\alpha_t}\\,\\hat\\epsilon}{\\sqrt{\\bar\\alpha_t}},

so the blended prediction is a convex combination at every position (the weights sum to one)
and Tweedie's estimate follows from it. :class:`TiledPrior` wraps any prior of the protocol
(:mod:`diffprior.priors.protocol`) and implements it again, so every solver runs on it
unchanged; P2L's projection acts on the whole image (one CG solve, one encoding).

Layout: windows of ``window`` latent pixels (default: the inner prior's native latent size)
start every ``stride`` pixels (default half a window) along each axis, and the last window of a
row or column is moved back to end at the border, so the windows cover the latent exactly
(none is dropped, none sticks out). The windows of one step run through the denoiser as one
batch, or ``tile_batch`` at a time (``lax.map`` over chunks, each chunk rematerialised under
differentiation), so memory stays bounded for large images also in the solvers' gradients;
the chunking does not change the result. Prompt tuning tunes one embedding per image, shared
by all its windows (each window sees the image's embedding).

``mode="none"`` evaluates the whole latent at once (the paper's "vanilla").

The autoencoder: ``vae_tile`` (pixels, default ``None``: the whole image at once) encodes and
decodes in overlapping tiles of that size, blended linearly in their overlap (as diffusers'
tiled VAE), so a large image never passes through the VAE whole (:meth:`TiledPrior.encode`, :meth:`TiledPrior.decode`).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from ..schedule import tweedie
from .wrapper import PriorWrapper

#: Blending modes of :class:`TiledPrior`.
MODES = ("multidiffusion", "mixture", "none")
#: Mixture of Diffusers' Gaussian: standard deviation in units of the window side.
MIXTURE_SIGMA = 0.1


def window_starts(size: int, window: int, stride: int) -> tuple:
    """Start offsets of windows of ``window`` pixels every ``stride`` along an axis of ``size``;
    the last one moved back to end at the border, so that the windows cover ``[0, size)``.

    Raises:
        ValueError: ``window > size``, ``stride < 1`` or ``stride > window`` (gaps).
    """
    size, window, stride = int(size), int(window), int(stride)
    if window < 1 or window > size:
        raise ValueError(f"a window of {window} does not fit an axis of {size} latent pixels")
    if stride < 1 or stride > window:
        raise ValueError(f"the stride ({stride}) must be between 1 and the window ({window}): a larger one leaves gaps")
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return tuple(starts)


def window_weights(window: int, mode: str) -> np.ndarray:
    """One window's blending weights ``(window, window)``: ones (MultiDiffusion) or the
    Mixture of Diffusers Gaussian (:data:`MIXTURE_SIGMA` times the side), peak 1."""
    if mode == "multidiffusion":
        return np.ones((window, window), np.float64)
    if mode == "mixture":
        c = (window - 1) / 2.0
        g = np.exp(-((np.arange(window) - c) ** 2) / (2.0 * (MIXTURE_SIGMA * window) ** 2))
        return np.outer(g, g)
    raise ValueError(f"blending mode must be one of {MODES[:2]}, got {mode!r}")


def layout(shape: Sequence[int], window: int | Sequence[int], stride: int | Sequence[int]) -> list:
    """The windows' ``(row, column)`` starts for a latent ``(h, w)``, row-major."""
    h, w = int(shape[0]), int(shape[1])
    wh, ww = (window, window) if np.ndim(window) == 0 else window
    sh, sw = (stride, stride) if np.ndim(stride) == 0 else stride
    return [(r, c) for r in window_starts(h, wh, sh) for c in window_starts(w, ww, sw)]


def blend_normaliser(shape: Sequence[int], window: int, stride: int, mode: str) -> np.ndarray:
    """:math:`\\sum_k W_k^T w_k`, the per-position sum of the windows' weights ``(h, w)``."""
    wgt = window_weights(window, mode)
    total = np.zeros(tuple(int(s) for s in shape[:2]), np.float64)
    for r, c in layout(shape, window, stride):
        total[r:r + window, c:c + window] += wgt
    return total


def _chunks(n: int, size: int | None) -> int:
    return 1 if size is None or size >= n else -(-n // int(size))


def _window_index(starts, tile: int, width: int, scale: int = 1) -> np.ndarray:
    """Flat positions ``(K, tile, tile)`` of the windows at ``starts`` (times ``scale``) in a
    row-major canvas ``width`` wide: one gather or scatter serves all windows, so the compiled
    program does not grow with their number."""
    r0 = np.array([r * scale for r, _ in starts])[:, None, None]
    c0 = np.array([c * scale for _, c in starts])[:, None, None]
    rows = r0 + np.arange(tile)[None, :, None]
    cols = c0 + np.arange(tile)[None, None, :]
    return (rows * width + cols).astype(np.int32)


def _blend(pieces, starts, tile: int, weights: np.ndarray, out_hw: Sequence[int], scale: int = 1):
    """:math:`\\sum_k W_k^T (w \\odot p_k) / \\sum_k W_k^T w`: the pieces ``(N, K, tile, tile, C)``
    put back at ``starts`` (times ``scale``) on an ``out_hw`` canvas (one scatter-add) and
    normalised."""
    n, k, c = pieces.shape[0], pieces.shape[1], pieces.shape[-1]
    h, w = int(out_hw[0]), int(out_hw[1])
    idx = _window_index(starts, tile, w, scale)
    weighted = pieces * jnp.asarray(weights, pieces.dtype)[None, None, :, :, None]
    canvas = jnp.zeros((n, h * w, c), pieces.dtype).at[:, idx.ravel()].add(weighted.reshape(n, k * tile * tile, c))
    total = np.bincount(idx.ravel(), weights=np.broadcast_to(weights, idx.shape).ravel(), minlength=h * w)
    return (canvas / jnp.asarray(total, pieces.dtype)[None, :, None]).reshape(n, h, w, c)


def _cut(a, starts, tile: int, scale: int = 1):
    """The windows ``(N, K, tile, tile, C)`` of ``a`` at ``starts`` (times ``scale``), one gather."""
    n, h, w, c = a.shape
    idx = _window_index(starts, tile, w, scale)
    return a.reshape(n, h * w, c)[:, idx.ravel()].reshape((n,) + idx.shape + (c,))


def linear_ramp_weights(size: int, overlap: int) -> np.ndarray:
    """Tile weights for the tiled autoencoder ``(size, size)``: 1 inside, falling linearly to
    ``1 / (overlap + 1)`` across ``overlap`` pixels at each edge (never 0, so a border pixel
    covered by one tile keeps its value)."""
    ramp = np.ones(size, np.float64)
    if overlap > 0:
        edge = np.arange(1, overlap + 1) / (overlap + 1)
        ramp[:overlap] = np.minimum(ramp[:overlap], edge)
        ramp[-overlap:] = np.minimum(ramp[-overlap:], edge[::-1])
    return np.outer(ramp, ramp)


@struct.dataclass
class TiledPrior(PriorWrapper):
    """``inner`` evaluated on overlapping latent windows (see the module documentation).

    Attributes:
        inner: the prior (a pytree implementing :class:`~diffprior.priors.DiffusionPrior`).
        window: window side in latent pixels (``None``: the inner prior's native latent size).
        stride: offset between windows (``None``: half the window).
        mode: ``"multidiffusion"``, ``"mixture"`` or ``"none"`` (the whole latent at once).
        tile_batch: windows per denoiser call (``None``: all of a step's at once).
        vae_tile: tile side in pixels for the autoencoder (``None``: whole images); tiles
            overlap by a quarter of their side and are blended linearly.
    """

    inner: Any
    window: int | None = struct.field(pytree_node=False, default=None)
    stride: int | None = struct.field(pytree_node=False, default=None)
    mode: str = struct.field(pytree_node=False, default="multidiffusion")
    tile_batch: int | None = struct.field(pytree_node=False, default=None)
    vae_tile: int | None = struct.field(pytree_node=False, default=None)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"tiling mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("window", "stride", "tile_batch", "vae_tile"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {v!r}")
        if self.window is not None and self.stride is not None and self.stride > self.window:
            raise ValueError(f"the stride ({self.stride}) is larger than the window ({self.window}): "
                             "the windows would leave gaps")

    # ------------------------------------------------------------------ windows
    def native_window(self) -> int:
        """The window side in latent pixels: ``window``, else the inner prior's native latent size."""
        if self.window is not None:
            return int(self.window)
        size = getattr(self.inner.metadata, "image_size", None)
        if size is None:
            raise ValueError("the inner prior does not state its native image size (metadata.image_size): "
                             "pass window=")
        f = int(getattr(self.inner, "downsample_factor", 1))
        return int(min(size)) // f

    def windows(self, latent_hw: Sequence[int]) -> tuple:
        """``(window, stride, starts)`` for a latent of ``(h, w)``.

        Raises:
            ValueError: the window is larger than the latent (say which), or the stride is
                larger than the window.
        """
        win = self.native_window()
        stride = int(self.stride) if self.stride is not None else max(1, win // 2)
        h, w = int(latent_hw[0]), int(latent_hw[1])
        if win > min(h, w):
            raise ValueError(f"the tiling window ({win} latent pixels) is larger than the latent ({h} x {w}); "
                             f"use mode='none' or a smaller window")
        return win, stride, layout((h, w), win, stride)

    def evaluations(self, latent_hw: Sequence[int]) -> int:
        """Denoiser evaluations (windows) per step for a latent of ``(h, w)``."""
        return 1 if self.mode == "none" else len(self.windows(latent_hw)[2])

    # ------------------------------------------------------------------ protocol
    def eps_and_x0(self, z, t, emb):
        """Blended noise prediction over the windows, and Tweedie's estimate from it."""
        if self.mode == "none":
            return self.inner.eps_and_x0(z, t, emb)
        n = z.shape[0]
        win, stride, starts = self.windows(z.shape[1:3])
        k = len(starts)
        t_n = jnp.broadcast_to(jnp.asarray(t), (n,))
        emb_n = jnp.broadcast_to(emb, (n,) + emb.shape[1:])
        # every window of image i carries image i's timestep and embedding
        t_k = jnp.repeat(t_n, k)
        emb_k = jnp.repeat(emb_n, k, axis=0)

        def denoise(batch):
            tiles, tt, ee = batch
            return self.inner.eps_and_x0(tiles, tt, ee)[0]

        flat = _cut(z, starts, win).reshape((n * k, win, win, z.shape[3]))
        m = _chunks(n * k, self.tile_batch)
        if m == 1:
            eps = denoise((flat, t_k, emb_k))
        else:  # bounded memory: tile_batch windows per call, each chunk recomputed under grad
            size = -(-(n * k) // m)
            pad = m * size - n * k

            def chunked(a):
                a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a
                return a.reshape((m, size) + a.shape[1:])

            eps = lax.map(jax.checkpoint(denoise), (chunked(flat), chunked(t_k), chunked(emb_k)))
            eps = eps.reshape((m * size,) + eps.shape[2:])[: n * k]
        eps = _blend(eps.reshape((n, k) + eps.shape[1:]), starts, win, window_weights(win, self.mode), z.shape[1:3])
        return eps, tweedie(self.schedule, z, eps, t)

    def encode(self, x):
        if self.vae_tile is None or max(x.shape[1:3]) <= self.vae_tile:
            return self.inner.encode(x)
        return self._tiled_vae(self.inner.encode, x, self.vae_tile, down=True)

    def decode(self, z):
        f = int(getattr(self.inner, "downsample_factor", 1))
        if self.vae_tile is None or max(z.shape[1:3]) * f <= self.vae_tile:
            return self.inner.decode(z)
        return self._tiled_vae(self.inner.decode, z, self.vae_tile // f, down=False)

    def _tiled_vae(self, fn, a, tile: int, down: bool):
        """Encode (``down``) or decode ``a`` in overlapping tiles: ``tile`` input pixels, a
        quarter of it overlapping, laid out on the latent grid and blended linearly in the
        output (:func:`linear_ramp_weights`)."""
        f = int(getattr(self.inner, "downsample_factor", 1))
        hw = a.shape[1:3]
        lat = (hw[0] // f, hw[1] // f) if down else tuple(hw)  # the latent grid
        t_lat = max(1, min(tile // f if down else tile, *lat))
        starts = layout(lat, t_lat, max(1, t_lat - t_lat // 4))
        t_in, t_out = (t_lat * f, t_lat) if down else (t_lat, t_lat * f)
        s_in, s_out = (f, 1) if down else (1, f)
        tiles = _cut(a, starts, t_in, s_in)  # (N, K, t_in, t_in, C)
        pieces = lax.map(fn, jnp.moveaxis(tiles, 1, 0))  # one autoencoder call per tile, in sequence
        pieces = jnp.moveaxis(pieces, 0, 1)
        overlap = (t_lat // 4) * s_out
        out_hw = (lat[0] * s_out, lat[1] * s_out)
        return _blend(pieces, starts, t_out, linear_ramp_weights(t_out, overlap), out_hw, scale=s_out)


__all__ = ["TiledPrior", "MODES", "MIXTURE_SIGMA", "window_starts", "window_weights", "layout", "blend_normaliser",
           "linear_ramp_weights"]
