"""Execute the tutorial notebooks as a user would (their own settings, the bundled prior) and time them.

The test suite runs the notebooks with shortened settings on a tiny random prior; this script
runs them unchanged, so that the claim "each runs in a few minutes on 2 CPU cores" is
measured. Each notebook runs in a fresh kernel, in an empty temporary folder (the files it
writes go there) with an empty XLA compilation cache (as on a first run). Results: ``benchmarks/results/notebooks.md``.

Usage::

    python benchmarks/run_notebooks.py [--only 01 03] [--timeout 900]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main(argv=None):
    import nbformat
    from nbclient import NotebookClient

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=None, help="notebook name prefixes (default: all)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = p.parse_args(argv)

    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.only:
        paths = [q for q in paths if any(q.name.startswith(o) for o in args.only)]
    rows = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as work:
            os.environ["DIFFPRIOR_CACHE"] = cache
            t0 = time.perf_counter()
            status = "ok"
            try:
                NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                               resources={"metadata": {"path": work}}).execute()
            except Exception as e:  # noqa: BLE001 -- recorded, the others still run
                status = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
            secs = time.perf_counter() - t0
        rows.append((path.name, secs, status))
        print(f"{path.name}: {secs:.0f} s, {status}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = ["# Tutorial notebooks on the bundled prior", "",
             "Produced by `python benchmarks/run_notebooks.py`: each notebook with its own settings, a fresh",
             f"kernel and an empty compilation cache, on {len(os.sched_getaffinity(0))} CPU core(s).", "",
             "| notebook | wall time | status |", "|---|---|---|"]
    lines += [f"| {n} | {s / 60:.1f} min | {st} |" for n, s, st in rows]
    (RESULTS / "notebooks.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
