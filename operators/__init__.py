"""Forward models of imaging inverse problems as :class:`scico.linop.LinearOperator`.

Images are float32, channel-last ``(H, W, C)`` or ``(N, H, W, C)``, with values in
``[0, 1]``; noise levels are in the same units. Adjoints are exact (derived by
:func:`jax.linear_transpose`, or scico's matched X-ray back projector).

Operators: :class:`Downsample`, :class:`Blur`, :class:`Inpaint`, :class:`CT`; :class:`Select`
measures each sample of a batch by an operator of its own choice (several tasks in one batch).
Generators: :func:`gaussian_kernel`, :func:`motion_kernel`, :func:`load_kernel`,
:func:`random_mask`, :func:`box_mask`, :func:`freeform_mask`.
Noise: :func:`add_noise`, :func:`simulate`. Serialisation: :func:`describe`,
:func:`from_description`; :func:`register_operator` makes a new class known to both.
Operators are JAX pytrees whose arrays are traced (see :class:`ImageOperator`); the task
presets that build them live in :mod:`diffprior.tasks`.
"""

from ._base import ImageOperator, register_operator
from .blur import Blur, BlurBoundary, check_kernel
from .ct import CT
from .describe import OPERATOR_CLASSES, describe, from_description
from .downsample import Downsample, DownsampleMethod
from .inpaint import Inpaint, check_mask
from .kernels import gaussian_kernel, load_kernel, motion_kernel, normalize_kernel
from .masks import box_mask, freeform_mask, hole_fraction, random_mask
from .noise import add_noise, simulate
from .select import Select

__all__ = [
    "ImageOperator",
    "Downsample",
    "DownsampleMethod",
    "Blur",
    "BlurBoundary",
    "Inpaint",
    "CT",
    "Select",
    "check_kernel",
    "check_mask",
    "gaussian_kernel",
    "motion_kernel",
    "load_kernel",
    "normalize_kernel",
    "random_mask",
    "box_mask",
    "freeform_mask",
    "hole_fraction",
    "add_noise",
    "simulate",
    "describe",
    "from_description",
    "OPERATOR_CLASSES",
    "register_operator",
]
