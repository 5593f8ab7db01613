"""Writing a benchmark's record: ``OUT.json`` (everything) and ``OUT.md`` (the table), side by side.

Kept apart from :mod:`_common` so that scripts which only drive subprocesses do not import JAX.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
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


def source_tree(root, rev: str, prefix: str) -> Path:
    """The files of commit ``rev`` of the repository at ``root`` (``git archive``), extracted into
    ``base/`` of a new temporary folder (whose other entries are the caller's to use)."""
    tree = Path(tempfile.mkdtemp(prefix=prefix)) / "base"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(root), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def checkout_label(root) -> str:
    """This checkout's short commit, with ``+changes`` when tracked files differ from it."""
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head + ("+changes" if dirty else "")
