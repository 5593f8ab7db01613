"""Images the prior was not made for: other channel counts, sizes off the autoencoder's grid.

:class:`ImageAdapter` wraps a prior and implements the prior protocol again for images of
``channels`` channels and any height and width, so every solver runs on them unchanged (the
forward operator acts on the user's images, never on the prior's):

* **Channel map.** A grayscale image :math:`g` (``(N, H, W, 1)``: CT slices, microscopy) goes
  into an RGB prior replicated, :math:`R g = (g, g, g)`, and the prior's images come back
  averaged, :math:`R^+ x = \\tfrac13 \\sum_c x_c`. :math:`R` is linear with adjoint
  :math:`R^T x = \\sum_c x_c`; :math:`R^+ = R^T / 3` is its pseudo-inverse, so
  :math:`R^+ R = I` and a gray image survives the round trip exactly. In general, ``channels``
  = 1 into any prior of ``C`` channels replicates and averages; ``channels`` equal to the
  prior's is the identity; other pairs are refused.
* **Padding.** An image whose height or width is not a multiple of ``multiple`` (the
  autoencoder's factor, or whatever the denoiser needs: a whole-latent evaluation of a UNet
  with ``d`` downsamplings needs ``factor * 2**d``) is padded by reflection at the bottom and
  right edges before encoding, and decoded images are cropped back; the latent covers the
  padded image. Reflection keeps the padded border statistically like the image, so the prior
  sees no artificial edge. Images smaller than ``multiple`` are refused (reflection needs the
  image to be at least as large as the padding).

``diffprior solve`` applies the adapter by itself when the problem's images are grayscale or
off the grid, and says so.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
from flax import struct

from .wrapper import PriorWrapper


@struct.dataclass
class ImageAdapter(PriorWrapper):
    """``inner`` seen through a channel map and reflect padding (see the module documentation).

    Attributes:
        inner: the prior (a pytree implementing :class:`~diffprior.priors.DiffusionPrior`).
        prior_channels: the channels the inner prior's images have (3 for the priors we ship).
        channels: the channels of the user's images (1 or ``prior_channels``).
        multiple: pad height and width up to a multiple of this (1: no padding).
        image_hw: the user's image size ``(H, W)``: decoded images are cropped to it (``None``:
            no crop, for images already on the grid).
    """

    inner: Any
    prior_channels: int = struct.field(pytree_node=False, default=3)
    channels: int = struct.field(pytree_node=False, default=3)
    multiple: int = struct.field(pytree_node=False, default=1)
    image_hw: tuple | None = struct.field(pytree_node=False, default=None)

    def __post_init__(self):
        if self.channels not in (1, self.prior_channels):
            raise ValueError(f"images of {self.channels} channels cannot go into a prior of {self.prior_channels}: "
                             f"only 1 (replicated into every channel, averaged back) or {self.prior_channels}")
        if self.multiple < 1:
            raise ValueError(f"multiple must be >= 1, got {self.multiple}")
        if self.image_hw is not None:
            object.__setattr__(self, "image_hw", tuple(int(v) for v in self.image_hw))
            self.padded_size(*self.image_hw)  # refuses an image smaller than the grid

    # ------------------------------------------------------------------ geometry
    def padded_size(self, h: int, w: int) -> tuple:
        """The size the image is padded to: ``(H, W)`` rounded up to ``multiple``.

        Raises:
            ValueError: the image is smaller than ``multiple`` (names both).
        """
        m = int(self.multiple)
        if h < m or w < m:
            raise ValueError(f"an image of {h} x {w} pixels is smaller than the prior's grid of {m} pixels "
                             f"(its autoencoder factor and denoiser): nothing to pad it from")
        return (-(-h // m) * m, -(-w // m) * m)

    def latent_shape(self, image_shape: Sequence[int]):
        n, h, w, c = image_shape
        if c != self.channels:
            raise ValueError(f"images have {c} channels, the adapter expects {self.channels}")
        return self.inner.latent_shape((n, *self.padded_size(h, w), self.prior_channels))

    # ------------------------------------------------------------------ the maps
    def to_prior(self, x):
        """User images ``(N, H, W, channels)`` -> prior images ``(N, H', W', prior_channels)``:
        replicated (gray) and reflect-padded to the grid."""
        h, w = x.shape[1:3]
        ph, pw = self.padded_size(h, w)
        if (ph, pw) != (h, w):
            x = jnp.pad(x, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="reflect")
        if self.channels != self.prior_channels:
            x = jnp.repeat(x, self.prior_channels, axis=-1)
        return x

    def from_prior(self, x, hw: Sequence[int]):
        """Prior images -> user images ``(N, *hw, channels)``: cropped and channel-averaged."""
        x = x[:, : int(hw[0]), : int(hw[1])]
        if self.channels != self.prior_channels:
            x = jnp.mean(x, axis=-1, keepdims=True)
        return x

    def encode(self, x):
        return self.inner.encode(self.to_prior(x))

    def decode(self, z):
        """Decode, crop to ``image_hw`` and map the channels back."""
        x = self.inner.decode(z)
        return self.from_prior(x, self.image_hw if self.image_hw is not None else x.shape[1:3])


def adapter_for(prior, image_shape: Sequence[int], multiple: int | None = None):
    """``prior`` itself when it takes images of ``image_shape`` ``(H, W, C)`` as they are, else an
    :class:`ImageAdapter` with the channel map and padding they need (``multiple``: the grid,
    default the autoencoder's factor)."""
    h, w, c = (int(v) for v in image_shape)
    f = int(getattr(prior, "downsample_factor", 1))
    m = int(multiple or f)
    prior_c = 3
    if c == prior_c and h % m == 0 and w % m == 0:
        return prior
    return ImageAdapter(prior, prior_channels=prior_c, channels=c, multiple=m, image_hw=(h, w))


def prior_for_images(prior, image_shape: Sequence[int], tiles: str = "none", stride=None, tile_batch=None,
                     vae_tile=None):
    """The prior a solver runs on for images ``(H, W, C)``: ``prior`` itself, or wrapped in a
    :class:`~diffprior.priors.tiled.TiledPrior` (``tiles`` "multidiffusion" or "mixture",
    ``stride``, ``tile_batch``, ``vae_tile``) and an :class:`ImageAdapter` (grayscale images;
    sizes off the grid, reflect-padded to a multiple of the autoencoder's factor and, for a
    whole-latent evaluation, of the UNet's downsamplings too). ``diffprior solve`` and the
    benchmarks use it.

    Returns:
        ``(prior, notes)``: the prior and what was done, one line each.

    Raises:
        ValueError: a setting does not fit the images (one line naming the values).
    """
    from .tiled import TiledPrior

    notes = []
    h, w, c = (int(v) for v in image_shape)
    f = int(getattr(prior, "downsample_factor", 1))
    levels = len(getattr(getattr(getattr(prior, "unet", None), "config", None), "block_out_channels", (0,)))
    multiple = f if tiles != "none" else f * 2 ** max(0, levels - 1)
    inner = prior
    if tiles != "none" or vae_tile:
        inner = TiledPrior(prior, stride=stride, mode=tiles, tile_batch=tile_batch, vae_tile=vae_tile)
    out = adapter_for(inner, (h, w, c), multiple=multiple)
    ph, pw = (h, w) if out is inner else out.padded_size(h, w)
    if tiles != "none":
        win, st, starts = inner.windows((ph // f, pw // f))
        notes.append(f"tiles: {tiles}, {len(starts)} windows of {win} x {win} latent pixels, stride {st}")
    if out is not inner:
        what = []
        if c != 3:
            what.append(f"{c}-channel images replicated into the prior's 3 channels and averaged back")
        if (ph, pw) != (h, w):
            what.append(f"{h} x {w} reflect-padded to {ph} x {pw} and cropped back")
        notes.append("images adapted to the prior: " + "; ".join(what))
    return out, notes


__all__ = ["ImageAdapter", "adapter_for", "prior_for_images"]
