"""The task registry: named inverse problems, their operators and their solver presets.

``TASKS[name]`` is a :class:`TaskPreset`: how to build the task's forward operator for an
image shape (:meth:`TaskPreset.build` for one image, :meth:`TaskPreset.build_batch` for a
batch with one random draw per image), which image sizes it accepts and which solver preset
(:class:`diffprior.solvers.Task`) fits it. ``diffprior simulate --task`` draws from it, the
problem file records the task's name, and ``diffprior solve`` picks its solver preset from
that record. Adding a task is one :class:`TaskPreset` entry in :data:`TASKS`.

Each preset turns an image shape ``(H, W, C)`` and a JAX key into one operator of
:mod:`operators`. Parameters measured in pixels (blur kernel size and width, CT views) are
the reference values of DPS :cite:`chung2023dps` and P2L :cite:`chung2024p2l` for images of
side :math:`s = \\min(H, W) \\ge 256`; for smaller images (our bundled prior works on
32 x 32 CIFAR-10 images) they shrink in proportion to :math:`s / 256`, with a floor that
keeps the degradation meaningful. Fractions (holes of a mask) do not depend on the size.

====================  =========================================================================
task                  operator and parameters (:math:`s = \\min(H, W)`)
====================  =========================================================================
``sr4``               :class:`operators.Downsample`, factor 4, anti-aliased bicubic; `H`, `W`
                      multiples of 4
``sr4-avg``           :class:`operators.Downsample`, factor 4, average pooling (the P2L
                      paper's SR operator); `H`, `W` multiples of 4
``sr8``               :class:`operators.Downsample`, factor 8, anti-aliased bicubic; `H`, `W`
                      multiples of 8
``gauss-deblur``      :class:`operators.Blur`, zero boundary, Gaussian kernel: 61 x 61,
                      :math:`\\sigma = 3` for :math:`s \\ge 256`; below, side
                      :math:`k(s)` and :math:`\\sigma = \\max(1, 3 s / 256)` (e.g. 7 x 7,
                      :math:`\\sigma = 1` at 32 px; 29 x 29, :math:`\\sigma = 1.5` at 128 px)
``motion-deblur``     :class:`operators.Blur`, zero boundary, random camera-shake kernel
                      (:func:`operators.motion_kernel`, intensity 0.5) of side :math:`k(s)`
                      (61 for :math:`s \\ge 256`)
``inpaint-freeform``  :class:`operators.Inpaint`, random brush-stroke mask
                      (:func:`operators.freeform_mask`) with 10-20 % of the pixels missing
``inpaint-random``    :class:`operators.Inpaint`, 80 % of the pixels missing, uniformly at
                      random (:func:`operators.random_mask`)
``inpaint-box``       :class:`operators.Inpaint`, one square hole of side :math:`s/2` at least
                      :math:`s/16` from the border, at a random position
                      (:func:`operators.box_mask`; DPS's and P2L's 128 x 128 box with a
                      16 px margin at 256 px, 16 x 16 with 2 px at 32 px)
``ct``                :class:`operators.CT`, parallel-beam, per channel, 60 views for
                      :math:`s \\ge 256`, :math:`\\max(8, \\mathrm{round}(60 s / 256))` below
                      (e.g. 8 views at 32 px); measurements are sinograms
====================  =========================================================================

The kernel side is :math:`k(s) = 61` for :math:`s \\ge 256` and otherwise the odd integer at
or below :math:`61 s / 256`, at least 7. Random masks and motion kernels are drawn per
image, as DPS and P2L do (:meth:`TaskPreset.build_batch`: one operator whose kernels or
masks carry a sample axis); ``shared=True`` draws one for the whole batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Optional, Tuple

__all__ = ["REFERENCE_SIDE", "TaskPreset", "TASKS", "get_task", "kernel_side", "gauss_sigma",
           "ct_views", "box_geometry", "stack_operators"]

REFERENCE_SIDE = 256
"""Image side at and above which pixel-sized parameters take the papers' values."""


def kernel_side(side: int) -> int:
    """Blur kernel side for images of side `side`: 61 at or above 256 px, else the odd
    integer at or below ``61 * side / 256``, at least 7."""
    if side >= REFERENCE_SIDE:
        return 61
    k = math.floor(61 * side / REFERENCE_SIDE)
    k -= 1 - k % 2  # the largest odd integer <= 61 side / 256
    return int(min(61, max(7, k)))


def gauss_sigma(side: int) -> float:
    """Gaussian blur width: 3 px at or above 256 px, else ``max(1, 3 * side / 256)``."""
    return 3.0 if side >= REFERENCE_SIDE else max(1.0, 3.0 * side / REFERENCE_SIDE)


def ct_views(side: int) -> int:
    """CT view count: 60 at or above 256 px, else ``max(8, round(60 * side / 256))``."""
    return 60 if side >= REFERENCE_SIDE else max(8, int(round(60 * side / REFERENCE_SIDE)))


@dataclasses.dataclass(frozen=True)
class TaskPreset:
    """A named inverse problem: how to build its operator for an image shape.

    Attributes:
        name: Preset name (``--task`` value).
        summary: One line for listings.
        size_multiple: `H` and `W` must be multiples of this.
        solver_task: Value of :class:`diffprior.solvers.Task` whose solver presets fit, or
            ``None`` (the solvers' defaults).
        random: Whether the operator is drawn from the key (mask, motion kernel).
    """

    name: str
    summary: str
    size_multiple: int
    solver_task: Optional[str]
    random: bool
    _parameters: Callable[[int], Dict[str, Any]] = dataclasses.field(repr=False)
    _build: Callable[..., Any] = dataclasses.field(repr=False)

    def parameters(self, image_shape: Tuple[int, int, int]) -> Dict[str, Any]:
        """The preset's parameters for images of shape ``(H, W, C)`` (no random draw)."""
        return self._parameters(min(int(image_shape[0]), int(image_shape[1])))

    def check_shape(self, image_shape: Tuple[int, int, int]) -> None:
        """Raise ``ValueError`` if the preset cannot act on images of this shape."""
        H, W = int(image_shape[0]), int(image_shape[1])
        m = self.size_multiple
        if H % m or W % m:
            raise ValueError(f"task {self.name} needs image sides that are multiples of {m}; "
                             f"got {H}x{W} (resize with --size)")

    def build(self, image_shape: Tuple[int, int, int], key):
        """Build the operator for one image ``(H, W, C)``; random parts are drawn from `key`.

        Raises:
            ValueError: If the image shape does not suit the preset.
        """
        image_shape = tuple(int(s) for s in image_shape)
        self.check_shape(image_shape)
        return self._build(image_shape, key, self.parameters(image_shape))

    def build_batch(self, image_shape: Tuple[int, int, int], key, n: int, shared: bool = False, indices=None):
        """The operator for a batch of ``n`` images ``(H, W, C)``.

        A random task draws one kernel or mask per image, from ``fold_in(key, i)`` for image
        ``i`` (``indices[i]`` when given: the images' indices in a larger collection, so that
        a draw does not depend on how the collection is split), and returns one operator on
        ``(n, H, W, C)`` whose arrays carry the sample axis; with ``shared=True`` (or for a
        task without randomness) one operator on ``(H, W, C)`` is drawn from ``key`` and
        applied to every image.

        Raises:
            ValueError: If the image shape does not suit the preset or ``n < 1``.
        """
        if int(n) < 1:
            raise ValueError(f"a batch needs at least one image; got n={n}")
        if shared or not self.random:
            return self.build(image_shape, key)
        import jax

        idx = range(int(n)) if indices is None else [int(i) for i in indices]
        if len(idx) != int(n):
            raise ValueError(f"got {len(idx)} indices for {n} images")
        return stack_operators([self.build(image_shape, jax.random.fold_in(key, i)) for i in idx])


def stack_operators(ops):
    """One operator on ``(n, H, W, C)`` from ``n`` single-image operators of one class.

    The data fields (kernels, masks) are stacked along a new sample axis; the other
    parameters must agree.

    Raises:
        ValueError: If the operators differ in class, image shape or a static parameter, or
            a data field differs in shape.
    """
    ops = list(ops)
    if not ops:
        raise ValueError("stack_operators needs at least one operator")
    first = ops[0]
    cls, shape = type(first), tuple(first.input_shape)
    params = first._parameters()
    for A in ops[1:]:
        if type(A) is not cls or tuple(A.input_shape) != shape:
            raise ValueError(f"cannot stack {type(A).__name__}{tuple(A.input_shape)} with {cls.__name__}{shape}")
        other = A._parameters()
        for k, v in params.items():
            if k not in cls.data_fields and other[k] != v:
                raise ValueError(f"cannot stack {cls.__name__} operators with different {k}: {v!r} and {other[k]!r}")
    import numpy as np

    stacked = dict(params)
    for f in cls.data_fields:
        arrays = [np.asarray(A._parameters()[f]) for A in ops]
        if len({a.shape for a in arrays}) != 1:
            raise ValueError(f"cannot stack {cls.__name__} operators whose {f} shapes differ: "
                             f"{sorted({a.shape for a in arrays})}")
        stacked[f] = np.stack(arrays)
    return cls((len(ops),) + shape, **stacked)


def _sr(factor, method="bicubic"):
    def build(shape, key, p):
        from operators import Downsample

        return Downsample(shape, p["factor"], p["method"])

    name, what = (f"sr{factor}", "anti-aliased bicubic") if method == "bicubic" else (f"sr{factor}-avg", "average pooling")
    return TaskPreset(name, f"x{factor} super-resolution, {what}", factor, "sr",
                      False, lambda s: {"factor": factor, "method": method}, build)


def _gauss_build(shape, key, p):
    from operators import Blur, gaussian_kernel

    return Blur(shape, gaussian_kernel(p["kernel_size"], p["sigma"]), p["boundary"])


def _motion_build(shape, key, p):
    from operators import Blur, motion_kernel

    return Blur(shape, motion_kernel(key, p["kernel_size"], p["intensity"]), p["boundary"])


def _freeform_build(shape, key, p):
    from operators import Inpaint, freeform_mask

    return Inpaint(shape, freeform_mask(key, shape[:2], tuple(p["hole_range"])))


def _random_build(shape, key, p):
    from operators import Inpaint, random_mask

    return Inpaint(shape, random_mask(key, shape[:2], p["drop"]))


def box_geometry(side: int) -> Dict[str, int]:
    """Box inpainting at image side `side`: a hole of side ``side // 2`` at least
    ``side // 16`` pixels from the border (DPS's and P2L's 128 and 16 at 256 px)."""
    return {"box_size": max(1, side // 2), "margin": side // 16}


def _box_build(shape, key, p):
    from operators import Inpaint, box_mask

    return Inpaint(shape, box_mask(key, shape[:2], p["box_size"], margin=p["margin"]))


def _ct_build(shape, key, p):
    from operators import CT

    return CT(shape, p["n_angles"])


TASKS: Dict[str, TaskPreset] = {
    t.name: t
    for t in (
        _sr(4),
        _sr(4, "average"),
        _sr(8),
        TaskPreset("gauss-deblur", "Gaussian deblurring, zero boundary", 1, "deblur_gauss", False,
                   lambda s: {"kernel_size": kernel_side(s), "sigma": gauss_sigma(s), "boundary": "same"},
                   _gauss_build),
        TaskPreset("motion-deblur", "motion deblurring (random camera shake), zero boundary", 1,
                   "deblur_motion", True,
                   lambda s: {"kernel_size": kernel_side(s), "intensity": 0.5, "boundary": "same"},
                   _motion_build),
        TaskPreset("inpaint-freeform", "inpainting, free-form brush strokes covering 10-20 %", 1,
                   "inpaint", True, lambda s: {"hole_range": [0.1, 0.2]}, _freeform_build),
        TaskPreset("inpaint-random", "inpainting, 80 % of the pixels missing at random", 1, "inpaint",
                   True, lambda s: {"drop": 0.8}, _random_build),
        TaskPreset("inpaint-box", "inpainting, one square hole of half the image side", 1, "inpaint",
                   True, box_geometry, _box_build),
        TaskPreset("ct", "sparse-view parallel-beam CT, per channel", 1, None, False,
                   lambda s: {"n_angles": ct_views(s)}, _ct_build),
    )
}
"""Every task preset, by name."""


def get_task(name: str) -> TaskPreset:
    """The preset called `name`.

    Raises:
        KeyError: If there is none (the message lists the names).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None
