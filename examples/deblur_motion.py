"""Motion deblurring (random camera-shake kernel, intensity 0.5): LDPS vs P2L.

The paper uses 61x61 kernels on 512x512 images; by default the kernel side scales with the
image (at least 7 pixels). The kernel is drawn from ``--seed``.

    python examples/deblur_motion.py [--prior PATH] [--images PATH] [--steps 50] [--out motion.png]
"""

import operators
from _compare import main

from diffprior.solvers import Task


def make_operator(args, shape, key):
    size = args.kernel_size or max(7, int(61 * shape[1] / 512) | 1)
    return operators.Blur(shape, operators.motion_kernel(key, size=size, intensity=0.5))


if __name__ == "__main__":
    main(__doc__, Task.DEBLUR_MOTION, make_operator,
         lambda p: p.add_argument("--kernel-size", type=int, default=None,
                                  help="odd kernel side (default: scaled from 61 at 512 px)"))
