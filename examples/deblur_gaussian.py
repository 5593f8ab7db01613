"""Gaussian deblurring: LDPS vs P2L.

The paper blurs 512x512 images with a 61x61 Gaussian of std 3.0; by default the kernel size
and std scale with the image (at least 7 pixels and std 1.0): 32x32 images get a 7x7 kernel
of std 1.0.

    python examples/deblur_gaussian.py [--prior PATH] [--images PATH] [--steps 50] [--out deblur.png]
"""

import operators
from _compare import main

from diffprior.solvers import Task


def make_operator(args, shape, key):
    h = shape[1]
    size = args.kernel_size or max(7, int(61 * h / 512) | 1)
    std = args.blur_std or max(1.0, 3.0 * h / 512)
    return operators.Blur(shape, operators.gaussian_kernel(size=size, sigma=std))


def options(p):
    p.add_argument("--kernel-size", type=int, default=None, help="odd kernel side (default: scaled from 61 at 512 px)")
    p.add_argument("--blur-std", type=float, default=None, help="kernel std in pixels (default: scaled from 3.0 at 512 px)")


if __name__ == "__main__":
    main(__doc__, Task.DEBLUR_GAUSS, make_operator, options)
