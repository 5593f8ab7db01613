"""How long a newcomer's ``diffprior demo`` takes: this checkout against an earlier commit, in one run.

Both demos run here, one after the other, each in a fresh process with an empty compilation cache
(``DIFFPRIOR_CACHE`` pointing at a new folder), as on a fresh clone: the earlier commit's code is
taken from ``git archive BASE`` into a temporary folder and imported from there (the script
checks that it is). Each demo's own defaults are used (4 images, 3 tasks, LDPS and P2L, 25 steps;
at b57c7d7 three tasks at a time, six programs; now the two solvers at a time, one program each
for all three tasks). With ``--warm`` each demo runs a second time on its now filled cache.

Writes ``benchmarks/results/demo_time.{json,md}``: wall seconds of each run, their ratio, the
load average before and after, and the quality table (PSNR / SSIM / LPIPS per task and solver)
of both with the largest difference, since a faster demo must restore the same images as well.

Usage: ``python benchmarks/demo_time.py [--base b57c7d7] [--warm]`` on a quiet machine (both
cores: the demo uses them).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _records import checkout_label, load_average, source_tree, write_record  # noqa: E402
RESULTS = ROOT / "benchmarks" / "results"
LAUNCH = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import diffprior, operators; "
          "root = sys.argv[1]; assert diffprior.__file__.startswith(root), diffprior.__file__; "
          "assert operators.__file__.startswith(root), operators.__file__; "
          "from diffprior.cli import main; sys.argv = ['diffprior'] + sys.argv[2:]; sys.exit(main())")
ROW = re.compile(r"^(\S+)\s+(LDPS|P2L)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def run_demo(tree: Path, out: Path, cache: Path) -> dict:
    """Run ``diffprior demo`` from the source tree ``tree``; wall seconds, table and timing line."""
    env = dict(os.environ, DIFFPRIOR_CACHE=str(cache), PYTHONPATH="")
    cmd = [sys.executable, "-c", LAUNCH, str(tree), str(tree), "demo", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"demo from {tree} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    table = {}
    for line in proc.stdout.splitlines():
        m = ROW.match(line.strip())
        if m:
            table[f"{m[1]} {m[2]}"] = {"psnr": float(m[3]), "ssim": float(m[4]), "lpips": float(m[5]),
                                       "solve_s": float(m[6])}
    timing = next((line for line in proc.stdout.splitlines() if line.startswith("compiling:")), None)
    return {"wall_s": wall, "table": table, "timing_line": timing}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="b57c7d7", help="the earlier commit (default b57c7d7)")
    ap.add_argument("--warm", action="store_true", help="also time a second run of each on its filled cache")
    ap.add_argument("--out", default=str(RESULTS / "demo_time"))
    args = ap.parse_args(argv)
    old = source_tree(ROOT, args.base, "demo-time-")
    tmp = old.parent
    head = checkout_label(ROOT)
    load_before = load_average()
    runs = {}
    for label, tree in ((args.base, old), ("this checkout", ROOT)):
        cache = tmp / f"cache-{len(runs)}"
        runs[label] = {"cold": run_demo(tree, tmp / f"out-{len(runs)}", cache)}
        print(f"{label}: cold demo {runs[label]['cold']['wall_s']:.0f} s", flush=True)
        if args.warm:
            runs[label]["warm"] = run_demo(tree, tmp / f"out-warm-{len(runs)}", cache)
            print(f"{label}: warm demo {runs[label]['warm']['wall_s']:.0f} s", flush=True)
    load_after = load_average()
    a, b = (runs[k]["cold"] for k in runs)
    keys = sorted(set(a["table"]) & set(b["table"]))
    diff = {m: max(abs(a["table"][k][m] - b["table"][k][m]) for k in keys) for m in ("psnr", "ssim", "lpips")}
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "base": args.base, "head": head,
              "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after, "runs": runs,
              "cold_ratio": b["wall_s"] / a["wall_s"], "largest_quality_difference": diff}
    lines = ["# `diffprior demo` wall time, cold compilation cache", "",
             f"Produced by `python benchmarks/demo_time.py` on {record['date']} ({record['cpus']} CPUs): commit "
             f"{args.base} against {record['head']}, one after the other in one run; 1/5/15-min load average "
             f"{load_before} before, {load_after} after.", "",
             "| code | cold wall (s) | " + ("warm wall (s) | " if args.warm else "") + "compile / solve (this checkout) |",
             "|---|---|" + ("---|" if args.warm else "") + "---|"]
    for label, r in runs.items():
        lines.append(f"| {label} | {r['cold']['wall_s']:.0f} | " + (f"{r['warm']['wall_s']:.0f} | " if args.warm else "")
                     + f"{r['cold']['timing_line'] or 'not printed by that version'} |")
    lines += ["", f"Cold wall time ratio, this checkout / {args.base}: **{record['cold_ratio']:.2f}**.", "",
              "## Quality (the demo's table)", "",
              f"| task solver | PSNR {args.base} | PSNR now | SSIM {args.base} | SSIM now | LPIPS {args.base} | LPIPS now |",
              "|---|---|---|---|---|---|---|"]
    for k in keys:
        x, y = a["table"][k], b["table"][k]
        lines.append(f"| {k} | {x['psnr']:.2f} | {y['psnr']:.2f} | {x['ssim']:.3f} | {y['ssim']:.3f} | "
                     f"{x['lpips']:.3f} | {y['lpips']:.3f} |")
    lines += ["", "Largest difference: " + ", ".join(f"{m} {v:.3g}" for m, v in diff.items()) + "."]
    write_record(args.out, record, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
