"""Free-form inpainting (brush strokes covering 10-20 % of the image, as in the paper): LDPS vs P2L.

    python examples/inpaint.py [--prior PATH] [--images PATH] [--steps 50] [--out inpaint.png]
"""

import operators
from _compare import main

from diffprior.solvers import Task


def make_operator(args, shape, key):
    return operators.Inpaint(shape, operators.freeform_mask(key, shape[1:3], hole_range=(0.1, 0.2)))


if __name__ == "__main__":
    main(__doc__, Task.INPAINT, make_operator)
