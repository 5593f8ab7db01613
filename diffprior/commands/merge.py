"""``diffprior merge``: join the result parts of processes that shared a problem file.

``diffprior solve ... --num-processes P --process-id I`` (or ``--coordinator`` /
``--distributed``) writes ``OUT.part-I-of-P.h5``; when all P parts are finished,
``diffprior merge OUT`` writes ``OUT`` with every sample, as one process would have
(:mod:`diffprior.parts`). A missing, foreign or unfinished part is refused and nothing is
written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import CLIError, wrap

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``merge`` on the sub-command parsers ``sub``."""
    p = sub.add_parser(
        "merge", help="join the result parts written by several processes into one result file",
        description=wrap("Join OUT.part-I-of-P.h5 (I = 0 .. P-1), written by 'diffprior solve' in P processes, "
                         "into the result file OUT, sample by sample in index order. Every part must be "
                         "present, finished and from the same run; otherwise nothing is written."),
        epilog="example:\n  diffprior solve problems.h5 --solver ldps --out r.h5 --num-processes 2 --process-id 0\n"
               "  diffprior solve problems.h5 --solver ldps --out r.h5 --num-processes 2 --process-id 1\n"
               "  diffprior merge r.h5",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="OUT", help="the result file the parts belong to (the solve's --out)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)
    return p


def run(args) -> None:
    from ..parts import PartError, merge

    try:
        got = merge(Path(args.out), overwrite=args.overwrite)
    except PartError as e:
        raise CLIError(str(e)) from None
    print(f"merged {got['parts']} parts into {args.out} ({got['samples']} samples)")
