"""The command-line workflow on full-size photographs of mixed orientation and a 16-bit grayscale image.

Takes the first landscape (481 x 321) and the first portrait (321 x 481) photograph of BSDS500
``val/`` as 8-bit RGB PNGs, and the second landscape one as a 16-bit grayscale PNG (its channel
mean), into one folder, then runs, as a user would::

    diffprior simulate FOLDER --task motion-deblur --out problems.h5
    diffprior solve problems-HxWxC.h5 --solver ldps --tiles mixture --tile-batch 64 --steps 25 ...
    diffprior report results-HxWxC.h5 --figure report-HxWxC.png

(``simulate`` writes one problem file per image shape.) It checks that every reconstruction has
its photograph's own shape (nothing stretched, cut or given channels), and writes
``benchmarks/results/any_size/cli_full_size.md`` (the commands, shapes, wall times and each
report's mean scores) and the report figures beside it.

Usage: ``python benchmarks/cli_full_size.py [--steps 25]`` (about 20 minutes on one core).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from any_size import DATA, read_bsds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "any_size"


def _run(cmd: list, log: list) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    log.append((" ".join(str(c) for c in cmd), dt))
    print(f"[{dt:6.0f} s] {' '.join(str(c) for c in cmd)}", flush=True)
    return dt, proc.stdout


def main(argv=None) -> int:
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--work", default=None, help="working folder (default: a new temporary one)")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="cli-full-size-"))
    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    photos = read_bsds("val", Path(args.data), 12)
    land = [i for i, x in enumerate(photos.images) if x.shape[0] < x.shape[1]]
    port = [i for i, x in enumerate(photos.images) if x.shape[0] > x.shape[1]]
    if len(land) < 2 or not port:
        raise SystemExit("need two landscape and one portrait photograph among the first 12 of val/")
    sources = {}
    for i in (land[0], port[0]):
        name = Path(photos.names[i]).stem
        Image.fromarray((photos.images[i] * 255).round().astype(np.uint8)).save(folder / f"{name}.png")
        sources[name] = photos.images[i].shape
    name = Path(photos.names[land[1]]).stem + "-gray16"
    gray = photos.images[land[1]].mean(-1)
    Image.fromarray((gray * 65535).round().astype(np.uint16)).save(folder / f"{name}.png")
    sources[name] = gray.shape + (1,)

    exe = [sys.executable, "-m", "diffprior.cli"]
    log: list = []
    _run(exe + ["simulate", str(folder), "--task", "motion-deblur", "--out", str(work / "problems.h5")], log)
    problems = sorted(work.glob("problems-*.h5"))
    from diffprior.io import read_problem, read_result

    rows = []
    for pf in problems:
        shape_tag = pf.stem.split("-", 1)[1]
        res = work / f"results-{shape_tag}.h5"
        fig = work / f"report-{shape_tag}.png"
        t_solve, _ = _run(exe + ["solve", str(pf), "--solver", "ldps", "--tiles", "mixture", "--tile-batch", "64",
                                 "--steps", str(args.steps), "--batch", "1", "--no-progress", "--out", str(res)], log)
        _, report = _run(exe + ["report", str(res), "--figure", str(fig), "--no-lpips"], log)
        prob, result = read_problem(pf), read_result(res)
        for k, n in enumerate(prob.names):
            want = sources[Path(n).stem]
            got = result.reconstruction[k].shape
            if tuple(got) != tuple(want) or tuple(prob.ground_truth[k].shape) != tuple(want):
                raise SystemExit(f"{n}: source {want}, ground truth {prob.ground_truth[k].shape}, reconstruction {got}")
            rows.append({"image": Path(n).stem, "source": "x".join(map(str, want)), "problem": pf.name,
                         "reconstruction": "x".join(map(str, got)), "psnr": float(result.metrics["psnr"][k]),
                         "ssim": float(result.metrics["ssim"][k]), "solve_s": t_solve})
        OUT.mkdir(parents=True, exist_ok=True)
        shutil.copy(fig, OUT / f"cli_full_size-{shape_tag}.png")
    lines = ["# The CLI on full-size photographs (BSDS500 val) and a 16-bit grayscale PNG", "",
             f"Produced by `python benchmarks/cli_full_size.py --steps {args.steps}` on {time.strftime('%Y-%m-%d %H:%M')}; "
             f"1/5/15-min load average at the end {[round(v, 2) for v in os.getloadavg()]}. LDPS on the bundled "
             "prior with Mixture-of-Diffusers windows; wall times include start-up and compilation.", "",
             "## Commands", ""]
    lines += [f"    {c}    # {t:.0f} s" for c, t in log]
    lines += ["", "## Shapes (H x W x C): no image resized, cut or given channels", "",
              "| image | source | problem file | reconstruction | PSNR | SSIM |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['image']} | {r['source']} | {r['problem']} | {r['reconstruction']} | {r['psnr']:.2f} | "
              f"{r['ssim']:.3f} |" for r in rows]
    lines += ["", "Report figures: " + ", ".join(f"`cli_full_size-{p.stem.split('-', 1)[1]}.png`" for p in problems) + "."]
    (OUT / "cli_full_size.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
