"""The base class of the errors a user can meet and fix.

Every exception the library raises for bad input that comes from outside the program -- a
file that is missing, corrupt or of a newer schema, an incomplete prior folder, a weight of
the wrong shape, an image it cannot read, a configuration override that does not fit --
derives from :class:`DiffpriorError` (and, where it always did, from ``ValueError`` or
``FileNotFoundError`` too). The command line prints these as one line and exits with status
2; any other exception is a bug of the library and is reported as one (exit status 1, with
``--debug`` for the traceback).
"""

from __future__ import annotations

__all__ = ["DiffpriorError"]


class DiffpriorError(Exception):
    """An error in the user's input, files or settings (not a bug of the library)."""
