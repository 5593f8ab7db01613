"""A small iteration-statistics table in the style of scico's ``itstat`` (without ``exec``)."""

from __future__ import annotations

import sys
from typing import Sequence


class IterationTable:
    """Print selected rows of a per-iteration table with a header.

    Args:
        columns: ``(title, format)`` pairs, e.g. ``("Iter", "{:>5d}")``.
        display: print anything at all.
        period: print every ``period``-th iteration (and the last).
        stream: where to print (default ``sys.stdout``).
    """

    def __init__(self, columns: Sequence[tuple[str, str]], display: bool = False, period: int = 1, stream=None):
        if int(period) < 1:
            raise ValueError(f"itstat period must be >= 1, got {period}")
        self.columns = list(columns)
        self.display = bool(display)
        self.period = int(period)
        self.stream = stream
        self._widths = [max(len(title), len(fmt.format(*_sample(fmt)))) for title, fmt in self.columns]
        self._header_done = False

    def header(self) -> str:
        titles = "  ".join(f"{title:>{w}}" for (title, _), w in zip(self.columns, self._widths))
        return titles + "\n" + "-" * len(titles)

    def row(self, values: Sequence) -> str:
        return "  ".join(f"{fmt.format(v):>{w}}" for (_, fmt), v, w in zip(self.columns, values, self._widths))

    def wants(self, iteration: int, last: bool = False) -> bool:
        """Whether ``iteration`` (0-based) is printed."""
        return self.display and (last or iteration % self.period == 0)

    def print_row(self, values: Sequence):
        out = self.stream or sys.stdout
        if not self._header_done:
            print(self.header(), file=out)
            self._header_done = True
        print(self.row(values), file=out, flush=True)


def _sample(fmt: str):
    """A representative value for a column format (to size the column)."""
    if "d}" in fmt:
        return (0,)
    if "s}" in fmt:
        return ("",)
    return (0.0,)
