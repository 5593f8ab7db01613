"""Writing a benchmark's record: ``OUT.json`` (everything) and ``OUT.md`` (the table), side by side.

Kept apart from :mod:`_common` so that scripts which only drive subprocesses do not import JAX.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def load_average() -> list:
    """The 1/5/15-minute load average, rounded (printed beside every timing)."""
    return [round(v, 2) for v in os.getloadavg()]


def write_record(out, record: dict, lines: list) -> None:
    """Write ``record`` to ``OUT.json`` and ``lines`` to ``OUT.md`` (folders created)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
