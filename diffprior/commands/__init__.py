"""The ``diffprior simulate``, ``solve`` and ``report`` commands: the HDF5 workflow.

One module per command, each with ``add_parser(subparsers)`` (its options, all documented)
and ``run(args)``; :mod:`diffprior.cli` registers them. The task presets that ``simulate``
draws its forward operators from live in :mod:`diffprior.tasks`.

Expected failures raise :class:`CLIError` (or a library error such as
:class:`diffprior.io.DiffpriorIOError`); :func:`diffprior.cli.main` prints them as one line.
"""

from __future__ import annotations

from ..errors import DiffpriorError


class CLIError(DiffpriorError):
    """An expected, user-facing failure of a command: printed as one line.

    Args:
        message: What went wrong and, where possible, what to do.
        exit_code: Process exit status (default 2, as for usage errors).
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = int(exit_code)


def wrap(text: str, width: int = 88) -> str:
    """Fill a paragraph for ``--help`` (the commands' formatter keeps line breaks as written)."""
    import textwrap

    return textwrap.fill(" ".join(text.split()), width)


__all__ = ["CLIError", "wrap"]
