"""Cost of appending samples to a result file (:class:`diffprior.io.ResultWriter`).

Appends ``--samples`` reconstructions (default 1000 of 512x512x3 float32, with two metrics, a
50-step history and a wall time) to a fresh result file, timing every ``append``; then the
journal scan a resuming run makes (``pending_indices``) and the compaction (``close``).
Reports the mean and median time per append of the first and last 100 samples, the final
file size and the machine's load average (``os.getloadavg``: the figures depend on it), and
writes ``benchmarks/results/io_append.json`` and ``.md``.

Exit status 1 if the last-100 mean exceeds ``--max-ratio`` (1.5) times the first-100 mean:
an append must cost the same for sample 1000 as for sample 1.

The run needs about twice the result's size of free disk space (journal plus compacted
copy: ~6.3 GB for the default); the files are deleted afterwards unless ``--keep``.

Usage::

    python benchmarks/io_append.py                      # 1000 samples in a temp folder
    python benchmarks/io_append.py --samples 200 --no-save --dir /scratch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _stats(times):
    return {"mean_s": statistics.fmean(times), "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times), "n": len(times)}


def _load() -> list:
    return [round(x, 2) for x in os.getloadavg()]


def run(samples: int, size: int, folder: Path, window: int) -> dict:
    from diffprior import __version__
    from diffprior.io import ResultWriter, journal_path, read_result

    shape = (size, size, 3)
    path = folder / "io_append_results.h5"
    rng = np.random.default_rng(0)
    pool = rng.random((8,) + shape, dtype=np.float32)  # rotated, so image making costs nothing
    load_before = _load()
    writer = ResultWriter(path, samples, shape, "Benchmark", {"num_steps": 50}, seed=0, mode="overwrite")
    times = []
    t_run = time.perf_counter()
    for n in range(samples):
        rec = pool[n % len(pool)]
        metrics = {"psnr": 20.0 + n % 10, "ssim": 0.5}
        history = {"t": np.arange(50, dtype=np.int32), "residual": pool[0, 0, :50, 0]}
        t0 = time.perf_counter()
        writer.append(n, rec, metrics=metrics, history=history, wall_time=1.0)
        times.append(time.perf_counter() - t0)
        if (n + 1) % 100 == 0:
            print(f"  {n + 1}/{samples}: last append {times[-1] * 1e3:.1f} ms, "
                  f"mean of last 100 {statistics.fmean(times[-100:]) * 1e3:.1f} ms", file=sys.stderr)
    append_total = time.perf_counter() - t_run
    journal_bytes = sum(p.stat().st_size for p in journal_path(path).iterdir())
    t0 = time.perf_counter()
    pending = writer.pending_indices()  # what a resuming run pays to scan the journal
    scan_s = time.perf_counter() - t0
    assert pending.size == 0
    t0 = time.perf_counter()
    writer.close()
    close_s = time.perf_counter() - t0
    file_bytes = path.stat().st_size
    t0 = time.perf_counter()
    res = read_result(path)
    read_s = time.perf_counter() - t0
    assert res.done.all() and res.journal_samples == 0
    np.testing.assert_array_equal(res.reconstruction[samples - 1], pool[(samples - 1) % len(pool)])
    del res
    first, last = _stats(times[:window]), _stats(times[-window:])
    return {
        "samples": samples,
        "image_shape": list(shape),
        "window": window,
        "first": first,
        "last": last,
        "ratio_last_to_first_mean": last["mean_s"] / first["mean_s"],
        "append_total_s": append_total,
        "journal_scan_s": scan_s,
        "close_compaction_s": close_s,
        "read_result_s": read_s,
        "journal_bytes": journal_bytes,
        "file_bytes": file_bytes,
        "loadavg_before": load_before,
        "loadavg_after": _load(),
        "cpus": os.cpu_count(),
        "folder": str(folder),
        "python": platform.python_version(),
        "diffprior": __version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def markdown(r: dict, max_ratio: float) -> str:
    ms = lambda s: f"{s * 1e3:.1f} ms"  # noqa: E731
    f, l = r["first"], r["last"]
    verdict = "pass" if r["ratio_last_to_first_mean"] <= max_ratio else "FAIL"
    return "\n".join([
        "# Result-file appends (`benchmarks/io_append.py`)",
        "",
        f"{r['samples']} samples of {'x'.join(map(str, r['image_shape']))} float32 appended to a fresh result "
        f"file with `ResultWriter.append` (journal entry per sample), then `close()` (compaction). "
        f"{r['date']}, {r['cpus']} CPUs, load average {r['loadavg_before']} before, {r['loadavg_after']} after; "
        f"folder {r['folder']}.",
        "",
        "| | mean | median | min | max |",
        "|---|---|---|---|---|",
        f"| first {r['window']} appends | {ms(f['mean_s'])} | {ms(f['median_s'])} | {ms(f['min_s'])} | "
        f"{ms(f['max_s'])} |",
        f"| last {r['window']} appends | {ms(l['mean_s'])} | {ms(l['median_s'])} | {ms(l['min_s'])} | "
        f"{ms(l['max_s'])} |",
        "",
        f"* last / first mean: **{r['ratio_last_to_first_mean']:.2f}** (target <= {max_ratio}: {verdict})",
        f"* all appends: {r['append_total_s']:.1f} s; journal scan (`pending_indices` over "
        f"{r['samples']} entries): {r['journal_scan_s']:.2f} s",
        f"* compaction (`close`): {r['close_compaction_s']:.1f} s; `read_result` afterwards: "
        f"{r['read_result_s']:.1f} s",
        f"* journal {r['journal_bytes'] / 2**30:.2f} GiB before compaction; final file "
        f"{r['file_bytes'] / 2**30:.2f} GiB",
        "",
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000, help="samples to append (default 1000)")
    ap.add_argument("--size", type=int, default=512, help="image height and width (default 512)")
    ap.add_argument("--dir", type=Path, default=None, help="folder for the result file (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the result file")
    ap.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/io_append.*")
    ap.add_argument("--max-ratio", type=float, default=1.5, help="allowed last/first mean ratio (default 1.5)")
    args = ap.parse_args(argv)
    if args.samples < 2:
        ap.error("--samples must be >= 2")
    window = min(100, args.samples // 2)
    base = args.dir if args.dir is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    need = 2.2 * args.samples * args.size * args.size * 3 * 4
    free = shutil.disk_usage(base).free
    if free < need:
        print(f"error: {base} has {free / 2**30:.1f} GiB free; the run needs ~{need / 2**30:.1f} GiB "
              f"(pass --dir or fewer --samples)", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="io_append_", dir=base))
    print(f"appending {args.samples} samples of {args.size}x{args.size}x3 in {folder} "
          f"(load average {_load()})", file=sys.stderr)
    try:
        r = run(args.samples, args.size, folder, window)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    md = markdown(r, args.max_ratio)
    print(md)
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "io_append.json").write_text(json.dumps(r, indent=2) + "\n")
        (RESULTS / "io_append.md").write_text(md)
        print(f"wrote {RESULTS / 'io_append.json'} and .md", file=sys.stderr)
    return 0 if r["ratio_last_to_first_mean"] <= args.max_ratio else 1


if __name__ == "__main__":
    raise SystemExit(main())
