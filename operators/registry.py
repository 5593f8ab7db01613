"""Registry of every operator type and variant, with paper-default parameters.

``REGISTRY[name](input_shape, key)`` builds the operator. Randomised variants (masks,
motion kernels) draw from `key`; the others ignore it. One parametrised test runs through
the whole registry (adjoint, shapes, batching, jit), so a new operator is tested by adding
it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import jax

from ._base import ImageOperator, check_image_shape
from .blur import Blur
from .ct import CT
from .downsample import Downsample
from .inpaint import Inpaint
from .kernels import gaussian_kernel, motion_kernel
from .masks import box_mask, freeform_mask, random_mask

__all__ = ["OperatorFactory", "REGISTRY", "make_operator"]


@dataclass(frozen=True)
class OperatorFactory:
    """A named way to build an operator for a given image shape.

    Attributes:
        build: ``build(input_shape, key) -> operator``.
        size_multiple: `H` and `W` must be multiples of this (the downsampling factor).
        summary: One line for listings.
    """

    build: Callable[[Tuple[int, ...], jax.Array], ImageOperator]
    size_multiple: int = 1
    summary: str = ""

    def __call__(self, input_shape: Tuple[int, ...], key: jax.Array) -> ImageOperator:
        return self.build(check_image_shape(input_shape), key)


def _hw(shape):
    return tuple(shape[-3:-1])


REGISTRY: Dict[str, OperatorFactory] = {
    "sr_average_x2": OperatorFactory(
        lambda s, k: Downsample(s, 2, "average"), 2, "x2 super-resolution, average pooling"
    ),
    "sr_average_x4": OperatorFactory(
        lambda s, k: Downsample(s, 4, "average"), 4, "x4 super-resolution, average pooling"
    ),
    "sr_bicubic_x2": OperatorFactory(
        lambda s, k: Downsample(s, 2, "bicubic"), 2, "x2 super-resolution, anti-aliased bicubic"
    ),
    "sr_bicubic_x4": OperatorFactory(
        lambda s, k: Downsample(s, 4, "bicubic"), 4, "x4 super-resolution, anti-aliased bicubic"
    ),
    "blur_gaussian": OperatorFactory(
        lambda s, k: Blur(s, gaussian_kernel(61, 3.0), "same"),
        1,
        "Gaussian deblurring, 61x61 kernel, sigma 3, zero boundary",
    ),
    "blur_gaussian_circular": OperatorFactory(
        lambda s, k: Blur(s, gaussian_kernel(61, 3.0), "circular"),
        1,
        "Gaussian deblurring, 61x61 kernel, sigma 3, periodic boundary",
    ),
    "blur_motion": OperatorFactory(
        lambda s, k: Blur(s, motion_kernel(k, 61, 0.5), "same"),
        1,
        "motion deblurring, random 61x61 kernel of intensity 0.5, zero boundary",
    ),
    "inpaint_random": OperatorFactory(
        lambda s, k: Inpaint(s, random_mask(k, _hw(s), 0.8)),
        1,
        "inpainting, 80 % of pixels missing",
    ),
    "inpaint_box": OperatorFactory(
        lambda s, k: Inpaint(s, box_mask(k, _hw(s), (s[-3] // 2, s[-2] // 2), min(_hw(s)) // 16)),
        1,
        "inpainting, random box of half the image side",
    ),
    "inpaint_freeform": OperatorFactory(
        lambda s, k: Inpaint(s, freeform_mask(k, _hw(s), (0.1, 0.2))),
        1,
        "inpainting, free-form brush strokes covering 10-20 %",
    ),
    "ct": OperatorFactory(lambda s, k: CT(s, 60), 1, "sparse-view parallel-beam CT, 60 views"),
}
"""Every operator type and variant, by name."""


def make_operator(name: str, input_shape: Tuple[int, ...], key: jax.Array) -> ImageOperator:
    """Build the registered operator `name` for `input_shape`.

    Raises:
        KeyError: If `name` is not registered (the message lists the names).
        ValueError: If `input_shape` is invalid for the operator.
    """
    if name not in REGISTRY:
        raise KeyError(f"Unknown operator {name!r}; registered: {sorted(REGISTRY)}.")
    return REGISTRY[name](input_shape, key)
