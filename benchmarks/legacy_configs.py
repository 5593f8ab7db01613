"""Which rows of a ``paper_tables`` folder's previous-format records still hold today.

The records of ``records.csv`` (the format before result files) did not keep their solver
configurations: ``run.json`` names the presets they ran with only by a hash of
:data:`diffprior.solvers.tuned.TUNED`. This script rebuilds each legacy row's configuration
from the presets of the commit whose table has that hash, with today's code and the code
changes that alter a configuration's meaning made explicit (:data:`SEMANTICS`), and writes
``legacy_configs.json`` into the folder. ``paper_tables.py`` then summarises a legacy row only
when its configuration equals the one the method runs with today; the other rows must be run
again (``paper_tables.py --methods ...``).

Usage (once per folder; the commit must have the hash of ``run.json``)::

    python benchmarks/legacy_configs.py --out benchmarks/results/paper_tables --commit 8987686
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

#: Code changes since the legacy records that change what a configuration means although its
#: fields read the same: method -> what the legacy run had. PSLD's gluing (regulariser and the
#: Table 5 projection) was the adjoint formula A^T y + (I - A^T A) x; today it is the projection A^+.
SEMANTICS = {"psld": "adjoint gluing", "p2l-gluing": "adjoint gluing"}


def _legacy_tuned(commit: str, repo: Path):
    """The ``diffprior.solvers.tuned`` module as it was at ``commit`` (loaded beside today's)."""
    import diffprior.solvers  # noqa: F401 -- the relative imports of the old module resolve here

    text = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:diffprior/solvers/tuned.py"], check=True,
                          capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location("diffprior.solvers._legacy_tuned", f.name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def presets_hash(table: dict) -> str:
    """The hash ``run.json`` names the presets by (as the legacy ``provenance()`` computed it)."""
    flat = json.dumps({f"{s}/{t.value}": v for (s, t), v in table.items()}, sort_keys=True)
    return hashlib.sha256(flat.encode()).hexdigest()[:12]


def legacy_config(method: str, task: str, old) -> dict:
    """The JSON configuration a legacy ``method`` ran with on ``task`` under the presets ``old``."""
    import numpy as np

    import diffprior.solvers as S
    import diffprior.solvers.tuned as tuned
    import paper_tables

    saved = tuned.tuned_values
    tuned.tuned_values = old.tuned_values  # SolverConfig.for_task reads it at call time
    try:
        _, cfg, _ = paper_tables.method_spec(method, task, [""] * 10, np.zeros(1, np.int64), ["x"])
    finally:
        tuned.tuned_values = saved
    if method in ("tv-admm", "pnp-admm"):  # the legacy script passed the iterations the weights were searched at
        cfg = dataclasses.replace(cfg, maxiter={"tv-admm": 50, "pnp-admm": 30}[method])
    if SEMANTICS.get(method) == "adjoint gluing":
        if method == "psld":  # its regulariser has no option in the config: mark the JSON instead
            return {**cfg.to_json(), "legacy": "adjoint gluing"}
        cfg = dataclasses.replace(cfg, projection=S.GluingProjection(every=cfg.projection.every, projector="adjoint"))
    return cfg.to_json()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="the paper_tables folder (with records.csv and run.json)")
    p.add_argument("--commit", required=True, help="the commit whose presets the records ran with")
    args = p.parse_args(argv)
    out, repo = Path(args.out), Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    old = _legacy_tuned(args.commit, repo)
    want = json.loads((out / "run.json").read_text())["presets"]
    if presets_hash(old.TUNED) != want:
        raise SystemExit(f"{args.commit}'s presets hash to {presets_hash(old.TUNED)}, run.json names {want}")
    with open(out / "records.csv", newline="") as f:
        pairs = sorted({(r["method"], r["task"]) for r in csv.DictReader(f)})
    configs, skipped = {}, []
    for method, task in pairs:
        try:
            configs[f"{task}__{method}"] = legacy_config(method, task, old)
        except KeyError:  # e.g. the speed curve's p2l-s<steps>-k<K> settings: not table rows
            skipped.append(f"{task}__{method}")
    (out / "legacy_configs.json").write_text(json.dumps(
        {"commit": args.commit, "presets": want, "semantics": SEMANTICS, "configs": configs, "not_rebuilt": skipped},
        indent=1, sort_keys=True) + "\n")
    import paper_tables

    carried = paper_tables.legacy_carried(out)
    print(f"wrote {out}/legacy_configs.json: {len(configs)} rows rebuilt, {len(carried)} still hold today:")
    for method, task in sorted(carried, key=lambda mt: (mt[1], mt[0])):
        print(f"  {task:17s} {method}")
    print("to run again: " + ", ".join(sorted(k for k in configs if tuple(reversed(k.split("__"))) not in carried)))


if __name__ == "__main__":
    main()
