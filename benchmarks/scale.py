"""Throughput on one machine: batch size, devices and processes; and memory over a long run.

Bundled prior, CIFAR-10 validation images, ``sr4-avg`` (sigma = 0.005), the solvers' presets.

``--part throughput``: samples per second of LDPS and P2L (``--steps`` DDIM steps, compilation
excluded, each setting timed on its second call) at batch 1, 8, 32 and 128:

* ``1 device``: one process, one JAX device (XLA's CPU backend uses every core it may);
* ``2 devices``: one process with two forced host devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=2``), the batch split by ``devices=2``;
* ``1 process, 1 core`` and ``2 processes, 1 core each``: the batch, or each half of it, in
  processes pinned with ``taskset`` to one core each, started together; samples per second of
  the pair is the whole batch over the slower process's time.

``--part long``: ``diffprior solve`` of ``--long-n`` problems (LDPS, 25 steps, batch 8) with the
resident memory of the process sampled every half second and the time of every batch read from
the result file: the first and last tenth's seconds per sample and peak memory, which must not
grow with the number of problems.

Run on a quiet machine (the script prints and records the load average); writes
``benchmarks/results/scale/{throughput,long}.{json,md}``. The target of issue #19: two devices or
two processes reach 1.7x the samples per second of one at batch >= 8.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "scale"
BATCHES = (1, 8, 32, 128)


def child(method: str, batch: int, steps: int, devices: int, offset: int) -> None:
    """(Child process) time one batch; print ``RESULT {json}``."""
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import load_validation, solver_config
    from any_size import problem_for

    from diffprior.prior import LatentDiffusionPrior
    from diffprior.runner import problem_operator
    from diffprior.solvers import SOLVERS

    val = load_validation()
    idx = (np.arange(batch) + offset) % len(val.images)
    problem = problem_for("sr4-avg", val.images[idx], [val.names[i] for i in idx])
    cls, prior = SOLVERS[method], LatentDiffusionPrior.bundled()

    def make():
        return cls(y=problem.measurement, A=problem_operator(problem), prior=prior,
                   key=jax.random.split(jax.random.PRNGKey(0), batch), num_steps=steps,
                   config=solver_config(cls, "sr4-avg"), progress=False, devices=devices if devices > 1 else None)

    t0 = time.perf_counter()
    np.asarray(make().solve())  # compiles, and runs once
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    np.asarray(make().solve())
    print("RESULT " + json.dumps({"seconds": time.perf_counter() - t0, "first_call_seconds": first}), flush=True)


def _spawn(method, batch, steps, devices=1, cpu=None, offset=0):
    env = dict(os.environ)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    cmd = [sys.executable, __file__, "--child", method, str(batch), str(steps), str(devices), str(offset)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _result(proc) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"child failed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def throughput(methods, batches, steps) -> list:
    rows = []
    for method in methods:
        for b in batches:
            row = {"method": method, "batch": b}
            row["1 device"] = b / _result(_spawn(method, b, steps))["seconds"]
            if b >= 2:
                row["2 devices"] = b / _result(_spawn(method, b, steps, devices=2))["seconds"]
                row["1 process, 1 core"] = b / _result(_spawn(method, b, steps, cpu=0))["seconds"]
                half = [_spawn(method, b // 2, steps, cpu=c, offset=c * (b // 2)) for c in (0, 1)]
                row["2 processes, 1 core each"] = (b // 2 * 2) / max(_result(p)["seconds"] for p in half)
            print(row, flush=True)
            rows.append(row)
    return rows


def long_run(n: int, steps: int) -> dict:
    """``diffprior solve`` of ``n`` problems; memory sampled, batch times from the result file."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import load_validation
    from any_size import problem_for

    from diffprior.io import read_result

    work = Path(tempfile.mkdtemp(prefix="scale-long-"))
    val = load_validation()
    idx = np.arange(n) % len(val.images)
    problem = problem_for("sr4-avg", val.images[idx], [f"{i}-{val.names[k]}" for i, k in enumerate(idx)])
    _write(problem, work / "p.h5")
    cmd = [sys.executable, "-m", "diffprior.cli", "solve", str(work / "p.h5"), "--solver", "ldps", "--steps",
           str(steps), "--batch", "8", "--no-progress", "--out", str(work / "r.h5")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rss = []
    t0 = time.perf_counter()

    def sample():
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
                rss.append((time.perf_counter() - t0, kb / 1024))
            except (OSError, StopIteration):
                pass
            time.sleep(0.5)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"long run failed:\n{err[-3000:]}")
    res = read_result(work / "r.h5")
    wall = res.wall_time
    tenth = max(1, n // 10)
    t_rss = np.asarray(rss)
    total = t_rss[-1, 0] if len(t_rss) else 0.0
    # memory after start-up and compilation: the second tenth of the run against the last
    first = t_rss[(t_rss[:, 0] >= total * 0.1) & (t_rss[:, 0] <= total * 0.2), 1] if len(t_rss) else np.zeros(1)
    last = t_rss[t_rss[:, 0] >= total * 0.9, 1] if len(t_rss) else np.zeros(1)
    return {"n": n, "steps": steps, "wall_seconds": total,
            "seconds_per_sample_second_tenth": float(np.mean(wall[tenth:2 * tenth])),
            "seconds_per_sample_last_tenth": float(np.mean(wall[-tenth:])),
            "peak_rss_mb_second_tenth": float(first.max(initial=0)), "peak_rss_mb_last_tenth": float(last.max(initial=0)),
            "peak_rss_mb": float(t_rss[:, 1].max()) if len(t_rss) else 0.0,
            "rss_trace": [[round(a, 1), round(b, 1)] for a, b in rss[:: max(1, len(rss) // 200)]]}


def _write(problem, path):
    from diffprior.io import write_problem

    write_problem(path, problem.measurement, problem.operator, problem.noise_sigma, ground_truth=problem.ground_truth,
                  seeds=problem.seeds, names=problem.names, task=problem.task, per_sample=problem.per_sample_keys)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--part", choices=("throughput", "long", "both"), default="both")
    ap.add_argument("--methods", nargs="+", default=["ldps", "p2l"])
    ap.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps of the throughput runs (default 10)")
    ap.add_argument("--long-n", type=int, default=1000)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.child:
        m, b, s, d, o = args.child
        child(m, int(b), int(s), int(d), int(o))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
             "loadavg_before": [round(v, 2) for v in os.getloadavg()]}
    if args.part in ("throughput", "both"):
        rows = throughput(args.methods, args.batches, args.steps)
        rec = dict(stamp, steps=args.steps, rows=rows, loadavg_after=[round(v, 2) for v in os.getloadavg()])
        (out / "throughput.json").write_text(json.dumps(rec, indent=1) + "\n")
        cols = ["1 device", "2 devices", "1 process, 1 core", "2 processes, 1 core each"]
        lines = ["# Samples per second on one machine (bundled prior, sr4-avg, CIFAR-10 validation images)", "",
                 f"Produced by `{command}` on {rec['date']} ({rec['cpus']} CPUs), "
                 f"{args.steps} DDIM steps, compilation excluded; 1/5/15-min load average {rec['loadavg_before']} "
                 f"before, {rec['loadavg_after']} after.", "",
                 "| method | batch | " + " | ".join(cols) + " | 2 devices / 1 device | 2 processes / 1 process |",
                 "|---|---|" + "---|" * (len(cols) + 2)]
        for r in rows:
            cells = [f"{r[c]:.2f}" if c in r else "-" for c in cols]
            ratio_d = f"{r['2 devices'] / r['1 device']:.2f}" if "2 devices" in r else "-"
            ratio_p = (f"{r['2 processes, 1 core each'] / r['1 process, 1 core']:.2f}"
                       if "2 processes, 1 core each" in r else "-")
            lines.append(f"| {r['method']} | {r['batch']} | " + " | ".join(cells) + f" | {ratio_d} | {ratio_p} |")
        (out / "throughput.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    if args.part in ("long", "both"):
        rec = dict(stamp, **long_run(args.long_n, 25), loadavg_after=[round(v, 2) for v in os.getloadavg()])
        (out / "long.json").write_text(json.dumps(rec, indent=1) + "\n")
        lines = [f"# A {rec['n']}-problem `diffprior solve` (LDPS, {rec['steps']} steps, batch 8)", "",
                 f"Produced by `{command}` on {rec['date']}; load average "
                 f"{rec['loadavg_before']} before, {rec['loadavg_after']} after.", "",
                 "| | second tenth | last tenth |", "|---|---|---|",
                 f"| seconds per sample | {rec['seconds_per_sample_second_tenth']:.3f} | "
                 f"{rec['seconds_per_sample_last_tenth']:.3f} |",
                 f"| peak resident memory (MB) | {rec['peak_rss_mb_second_tenth']:.0f} | "
                 f"{rec['peak_rss_mb_last_tenth']:.0f} |", "",
                 f"Wall time {rec['wall_seconds']:.0f} s; peak resident memory over the run {rec['peak_rss_mb']:.0f} MB "
                 "(the trace is in `long.json`)."]
        (out / "long.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
