"""4x super-resolution (average pooling, the paper's SR operator): LDPS vs P2L.

    python examples/sr.py [--prior PATH] [--images PATH] [--steps 50] [--out sr.png]
"""

import operators
from _compare import main

from diffprior.solvers import Task


def make_operator(args, shape, key):
    return operators.Downsample(shape, factor=args.factor, method="average")


if __name__ == "__main__":
    main(__doc__, Task.SR, make_operator,
         lambda p: p.add_argument("--factor", type=int, default=4, help="downsampling factor (default 4)"))
