"""The paper's arbitrary-resolution experiment (Sec. 4, Fig. 3, Fig. 7, App. D) on the bundled prior.

The bundled prior is trained on 32 x 32 images (8 x 8 latents). Here it restores BSDS500
photographs made 1.5x (48 x 48: the paper's ratio of 768 to 512) and 3x (96 x 96) its size by
downscaling the shorter side and cutting the centre, on the tasks ``sr4-avg``,
``motion-deblur`` and ``inpaint-freeform`` at sigma = 0.005, with:

* ``ldps`` -- LDPS on the whole latent (the paper's "vanilla"), one UNet evaluation per step;
* ``ldps-md`` / ``ldps-mod`` -- LDPS on overlapping 8 x 8 latent windows, stride 4, blended by
  MultiDiffusion / Mixture of Diffusers (:class:`diffprior.priors.tiled.TiledPrior`);
* ``p2l`` -- P2L (prompt tuning, K = 3, and projection) on the whole latent, its projection on
  the whole image: 1 + K UNet evaluations per step;
* ``p2l-md`` -- the same with MultiDiffusion windows (the paper's Fig. 7);
* ``p2l-proj`` / ``p2l-proj-md`` -- P2L without prompt tuning (its latent step and projection
  only): 1 UNet evaluation per step on the whole latent, as in the paper's Fig. 3, and the
  same on MultiDiffusion windows;
* ``tv-admm``, ``pnp-admm`` -- the classic baselines, for scale.

Presets: the ``Dataset.CIFAR10`` presets of every solver (searched at 32 px on CIFAR-10; not
searched again at these sizes). Images: ``val/`` of ``../shared/data/bsds500/train_val.tar.gz``
(100 photographs; ``train/`` is for tuning and is not used here). Each (size, task, method) is
one result file, ``OUT/results/<size>__<task>__<method>.h5`` (resumable image by image); the
summary ``any_size.md`` / ``any_size.json`` has mean LPIPS, PSNR and SSIM ± standard error, the
measurement residual, UNet evaluations per image, seconds per image and peak RSS.

``--cost`` instead times LDPS and P2L (one image each, mixture tiles and whole latent) at 64,
128 and 256 pixels and on one full 481 x 321 photograph (cut to 480 x 320 for the 4x pooling),
into ``cost.md``, and draws that photograph's SR x4 restoration (``full_size.png``).

Usage::

    python benchmarks/any_size.py --sizes 48 96 --n 100          # hours of CPU; resumable
    python benchmarks/any_size.py --cost
    python benchmarks/any_size.py --summary-only
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np

from _common import RESULTS, ROOT, SIGMA, PeakRSS, measure, result_means, run_result, solver_config

DATA = ROOT.parent / "shared" / "data" / "bsds500" / "train_val.tar.gz"
TASKS = ("sr4-avg", "motion-deblur", "inpaint-freeform")
METHODS = ("ldps", "ldps-md", "ldps-mod", "p2l-proj", "p2l-proj-md", "p2l", "p2l-md", "tv-admm", "pnp-admm")
#: method -> (solver registry name, tiling mode)
SPECS = {"ldps": ("ldps", "none"), "ldps-md": ("ldps", "multidiffusion"), "ldps-mod": ("ldps", "mixture"),
         "p2l": ("p2l", "none"), "p2l-md": ("p2l", "multidiffusion"), "p2l-proj": ("p2l", "none"),
         "p2l-proj-md": ("p2l", "multidiffusion"), "tv-admm": ("tv-admm", None), "pnp-admm": ("pnp-admm", None)}
#: methods run without prompt tuning (``prompt=None`` in the solver's preset)
NO_PROMPT = ("p2l-proj", "p2l-proj-md")


@dataclasses.dataclass
class Photos:
    images: list
    names: list


def read_bsds(split: str = "val", data: Path = DATA, limit: int | None = None) -> Photos:
    """The ``split`` photographs of the BSDS500 archive as float32 ``(H, W, 3)`` in ``[0, 1]``,
    sorted by name."""
    from PIL import Image

    if not Path(data).is_file():
        raise SystemExit(f"any_size: no BSDS500 archive at {data} (see ../shared/data/bsds500/README.md)")
    items = []
    with tarfile.open(data) as tar:
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if m.isfile() and len(parts) >= 2 and parts[-2] == split and m.name.lower().endswith(".jpg"):
                items.append((parts[-1], tar.extractfile(m).read()))
    items.sort()
    items = items[:limit] if limit else items
    return Photos([np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), np.float32) / 255.0 for _, b in items],
                  [n for n, _ in items])


def square(image: np.ndarray, size: int) -> np.ndarray:
    """Downscale so that the shorter side is ``size`` (bicubic), then cut the centred square."""
    from PIL import Image

    h, w = image.shape[:2]
    s = size / min(h, w)
    im = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    a = np.asarray(im, np.float32) / 255.0
    r, c = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
    return a[r:r + size, c:c + size]


def problem_for(task: str, images: np.ndarray, names, seed: int = 0):
    """A :class:`diffprior.io.Problem` of ``images`` (one operator draw per image, keyed by its
    index) with sigma = 0.005 noise keyed by the image's name."""
    import jax

    from operators import describe

    from diffprior.io import Problem
    from diffprior.tasks import TASKS as PRESETS

    shape = images.shape[1:]
    A = PRESETS[task].build_batch(shape, jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(task.encode())),
                                  len(images))
    y = np.stack([np.asarray(m) for m in _measure_each(A, images, names)])
    return Problem(measurement=y, operator=describe(A), noise_sigma=SIGMA, ground_truth=images,
                   seeds=np.arange(len(images)), names=list(names), task=task,
                   per_sample_keys=tuple(A.data_fields) if A.per_sample else ())


def _measure_each(A, images, names):
    for i in range(len(images)):
        Ai = A.sample(i) if len(A.input_shape) == 4 else A
        yield measure(Ai, images[i:i + 1], names[i:i + 1])[0]


def method_setup(method: str, task: str, prior, shape, tile_batch: int | None = None):
    """``(solver class, config, prior or None, UNet evaluations per step)`` of a method."""
    from diffprior.priors.adapt import prior_for_images
    from diffprior.solvers import SOLVERS

    name, tiles = SPECS[method]
    cls = SOLVERS[name]
    cfg = solver_config(cls, task)
    if method in NO_PROMPT:
        cfg = dataclasses.replace(cfg, prompt=None)
    if tiles is None:
        return cls, cfg, None, 0
    p, _ = prior_for_images(prior, shape, tiles, tile_batch=tile_batch)
    f = int(prior.downsample_factor)
    windows = p.evaluations((shape[0] // f, shape[1] // f)) if hasattr(p, "evaluations") else 1
    return cls, cfg, p, windows


def nfe(cfg, steps: int, windows: int) -> int:
    pt = getattr(cfg, "prompt", None)
    per = 1 + (pt.iters if pt is not None else 0)
    return steps * per * windows


def run_setting(prior, size: int, task: str, method: str, photos: Photos, steps: int, batch: int, out: Path,
                tile_batch=None) -> None:
    from _common import image_keys

    images = np.stack([square(x, size) for x in photos.images])
    problem = problem_for(task, images, photos.names)
    cls, cfg, p, windows = method_setup(method, task, prior, images.shape[1:], tile_batch)
    hyper = {"method": method, "task": task, "size": size, "config": cfg.to_json(), "images": photos.names,
             "tiles": SPECS[method][1], "windows": windows, "nfe": nfe(cfg, steps, windows) if p is not None else 0}
    if p is not None:
        hyper["steps"] = steps
    run_result(out / "results" / f"{size}__{task}__{method}.h5", problem, cls, cfg, hyperparameters=hyper, prior=p,
               steps=steps, keys=image_keys(photos.names), batch=batch, label=f"{method} {task} {size}px")


def _kept(store: Path, key, fresh: list) -> list:
    """The rows of a committed summary ``store`` that ``fresh`` does not recompute (their result
    files are not here: result files are not committed), so that a run on another machine, or
    after the result files are gone, adds to the summary instead of shrinking it."""
    if not store.exists():
        return []
    have = {key(r) for r in fresh}
    return [r for r in json.loads(store.read_text()) if key(r) not in have]


def summarize(out: Path) -> list:
    rows = []
    for path in sorted((out / "results").glob("*__*__*.h5")):
        got = result_means(path)
        if got is not None:
            h, stats = got
            rows.append({"size": h["size"], "task": h["task"], "method": h["method"], "steps": h.get("steps"),
                         "nfe": h["nfe"], "windows": h["windows"], **stats})
    rows += _kept(out / "any_size.json", lambda r: (r["size"], r["task"], r["method"]), rows)
    rows.sort(key=lambda r: (r["size"], TASKS.index(r["task"]), METHODS.index(r["method"])))
    (out / "any_size.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["# Larger images than the prior's (bundled prior, BSDS500 val, sigma = 0.005)", "",
             "Produced by `python benchmarks/any_size.py`. Mean ± standard error over images; `nfe`: UNet "
             "evaluations per image (windows x steps x (1 + K)); `s/img`: wall seconds per image, solving only; "
             "`RSS`: peak resident memory of the process (MB); `|y-Ax|`: measurement residual.", "",
             "| size | task | method | steps | n | LPIPS | PSNR | SSIM | \\|y-Ax\\| | nfe | s/img | RSS |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['task']} | {r['method']} | {r['steps'] or '-'} | {r['n']} | {r['lpips']:.4f} ± {r['lpips_se']:.4f} "
                     f"| {r['psnr']:.2f} ± {r['psnr_se']:.2f} | {r['ssim']:.3f} ± {r['ssim_se']:.3f} "
                     f"| {r['residual']:.3f} | {r['nfe']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    (out / "any_size.md").write_text("\n".join(lines) + "\n")
    return rows


#: Appendix D's statements, each as (label, the paper's words, method A, methods B, expected sign of
#: mean LPIPS(A) - min over B of mean LPIPS(B)): "<" A better, "<=" A comparable or better.
CLAIMS = (
    ("D1", "processing a larger latent whole (\"vanilla\") is worse than processing it in patches",
     "ldps", ("ldps-md", "ldps-mod"), ">"),
    ("D3", "projection alone (1 evaluation per step, whole latent) is comparable or superior to the patch methods",
     "p2l-proj", ("ldps-md", "ldps-mod"), "<="),
    ("D4a", "patches and projection together do best (against projection alone)",
     "p2l-proj-md", ("p2l-proj",), "<"),
    ("D4b", "patches and projection together do best (against the LDPS patch methods)",
     "p2l-proj-md", ("ldps-md", "ldps-mod"), "<"),
    ("D4c", "P2L with prompt tuning on patches does best (against P2L on the whole latent)",
     "p2l-md", ("p2l",), "<"),
)


def _lpips(out: Path, size: int, task: str, method: str):
    from diffprior.io import read_result

    path = out / "results" / f"{size}__{task}__{method}.h5"
    if not path.exists():
        return None
    r = read_result(path)
    return np.where(r.done, r.metrics.get("lpips", np.full(len(r.done), np.nan)), np.nan)


def claims(out: Path) -> list:
    """``claims.md``: each of Appendix D's comparisons, per size and task, as the paired mean
    LPIPS difference (method minus the better of its rivals) over the images both finished, with
    its standard error, and a verdict: *holds* (the difference has the claimed sign and is over
    two standard errors), *comparable* (within two standard errors: holds for a "comparable or
    superior" claim, not for a "better" one), *fails* (the opposite sign, over two standard
    errors). The cost claim (D2) is the ``nfe`` column of ``any_size.md`` and ``cost.md``."""
    from _common import se

    rows, lines = [], ["# Appendix D's statements on the bundled prior (paired LPIPS differences)", "",
                       "Produced by `python benchmarks/any_size.py --summary-only` from the result files. "
                       "`diff`: mean over images of LPIPS(method) - LPIPS(rival), the rival being the one of the "
                       "listed methods with the lower mean LPIPS (among those run); `n`: images finished by both; negative is better for the method. `holds`: the "
                       "claimed sign, over 2 s.e.; `comparable`: within 2 s.e.; `fails`: the opposite sign, over "
                       "2 s.e.", "",
                       "| claim | size | task | method | rival | n | diff ± s.e. | verdict |",
                       "|---|---|---|---|---|---|---|---|"]
    sizes = sorted({int(p.name.split("__")[0]) for p in (out / "results").glob("*__*__*.h5")})
    for label, words, a, rivals, sign in CLAIMS:
        for size in sizes:
            for task in TASKS:
                la = _lpips(out, size, task, a)
                got = [(b, _lpips(out, size, task, b)) for b in rivals]
                got = [(b, lb) for b, lb in got if lb is not None]
                if la is None or not got:  # a rival not run (yet) is left out and named below
                    continue
                both = np.isfinite(la) & np.all([np.isfinite(lb) for _, lb in got], axis=0)
                if both.sum() < 2:
                    continue
                b, lb = min(got, key=lambda g: np.mean(g[1][both]))
                d = la[both] - lb[both]
                m, e = float(d.mean()), se(d)
                if abs(m) <= 2 * e:
                    verdict = "holds (comparable)" if sign == "<=" else "comparable"
                elif (m < 0) == (sign in ("<", "<=")):
                    verdict = "holds"
                else:
                    verdict = "fails"
                missing = [r for r in rivals if r not in dict(got)]
                rows.append({"claim": label, "statement": words, "size": size, "task": task, "method": a,
                             "rival": b, "rivals_not_run": missing, "n": int(both.sum()), "diff": m, "diff_se": e,
                             "verdict": verdict})
    rows += _kept(out / "claims.json", lambda r: (r["claim"], r["size"], r["task"]), rows)
    order = [c[0] for c in CLAIMS]
    rows.sort(key=lambda r: (order.index(r["claim"]), r["size"], TASKS.index(r["task"])))
    for r in rows:
        shown = r["rival"] + (f" ({', '.join(r['rivals_not_run'])} not run)" if r["rivals_not_run"] else "")
        lines.append(f"| {r['claim']} | {r['size']} | {r['task']} | {r['method']} | {shown} | {r['n']} "
                     f"| {r['diff']:+.4f} ± {r['diff_se']:.4f} | {r['verdict']} |")
    lines += ["", "Statements:", ""] + [f"* {label}: {words}." for label, words, *_ in CLAIMS]
    (out / "claims.md").write_text("\n".join(lines) + "\n")
    (out / "claims.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


#: the cost table's rows (image label, method, tiles), the 4 GB check (LDPS, 256 px, tiles) first
COST_IMAGES = ("64x64", "128x128", "256x256", "full")
#: The cost rows in the order they run: 256 px LDPS with tiles first (the < 4 GB check), the
#: full photograph's whole-latent P2L last (the most memory: > 13 GB).
COST_ROWS = [("256x256", "LDPS", "mixture")] + [
    (img, m, t) for img in COST_IMAGES for m in ("LDPS", "P2L") for t in ("none", "mixture")
    if (img, m, t) not in (("256x256", "LDPS", "mixture"), ("full", "P2L", "none"))] + [("full", "P2L", "none")]


def _cost_image(photos: Photos, label: str) -> np.ndarray:
    full = photos.images[0]
    if label == "full":  # cut to a multiple of 4 for the pooling
        return full[: full.shape[0] // 4 * 4, : full.shape[1] // 4 * 4]
    return square(full, int(label.split("x")[0]))


def cost(out: Path, steps: int, data: Path) -> None:
    """``cost.md``: s/image and peak RSS of LDPS and P2L (whole latent and mixture tiles) on one
    image at 64, 128 and 256 px and one full photograph; ``full_size.png``: its SR x4.

    Each row runs in a process of its own (:func:`cost_row`), so that its peak resident memory
    is its own and not what earlier rows left behind. Resumable row by row: finished rows are
    kept in ``cost.json`` (with the load average at their end) and skipped by a rerun;
    ``cost.md`` is rewritten after every row."""
    store = out / "cost.json"
    rows = json.loads(store.read_text()) if store.exists() else []
    for label, method, tiles in COST_ROWS:
        key = (label, method, tiles)
        if any((r["image"], r["method"], r["tiles"]) == key and "failed" not in r for r in rows):
            continue
        row = _run_cost_row(out, steps, data, label, method, tiles)
        rows = [r for r in rows if (r["image"], r["method"], r["tiles"]) != key] + [row]
        store.write_text(json.dumps(rows, indent=1) + "\n")
        _cost_markdown(out, rows)
        print(f"{label} {method} {tiles}: " + (f"FAILED ({row['failed']})" if "failed" in row else
                                               f"{row['seconds']:.1f} s") + f", {row['peak_rss_mb']:.0f} MB", flush=True)
    _cost_markdown(out, rows)


def _run_cost_row(out: Path, steps: int, data: Path, label: str, method: str, tiles: str) -> dict:
    """One cost row in a process of its own; a row whose process fails (e.g. killed by the kernel
    for want of memory) is a row too, with the reason and the peak RSS it had reached, so that the
    later rows still run (a rerun tries it again)."""
    import subprocess
    import sys
    import tempfile

    from _records import load_average

    cmd = [sys.executable, __file__, "--cost-row", label, method, tiles, "--steps", str(steps), "--data", str(data),
           "--out", str(out)]
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS even if it was killed
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        stdout, stderr = fo.read(), fe.read()
    if rc == 0:
        return json.loads(stdout.strip().splitlines()[-1])
    if rc < 0:
        why = f"killed by signal {-rc}" + (" (SIGKILL: out of memory?)" if rc == -9 else "")
    else:
        why = f"exit status {rc}: " + (stderr.strip().splitlines() or [""])[-1][:200]
    print(f"cost row {label} {method} {tiles} failed ({why}):\n{stderr[-3000:]}", flush=True)
    return {"image": label, "shown": label, "method": method, "tiles": tiles, "failed": why,
            "peak_rss_mb": usage.ru_maxrss / 1024, "cpus": 1, "load_average": load_average()}


def cost_row(out: Path, steps: int, data: Path, label: str, method: str, tiles: str) -> dict:
    """One row of the cost table, in this process (see :func:`cost`); the full photograph's
    P2L + mixture row also draws ``full_size.png``."""
    import jax

    from diffprior.metrics import psnr
    from diffprior.prior import LatentDiffusionPrior
    from diffprior.priors.adapt import prior_for_images
    from diffprior.runner import problem_operator
    from diffprior.solvers import LDPS, P2L

    from _records import load_average

    photos = read_bsds("val", data, 1)
    image = _cost_image(photos, label)
    problem = problem_for("sr4-avg", image[None], photos.names[:1])
    prior = LatentDiffusionPrior.bundled()
    cls = {"LDPS": LDPS, "P2L": P2L}[method]
    with PeakRSS() as mem:
        p, _ = prior_for_images(prior, image.shape, tiles, tile_batch=16)
        s = cls(y=problem.measurement, A=problem_operator(problem), prior=p, key=jax.random.PRNGKey(0),
                num_steps=steps, config=solver_config(cls, "sr4-avg"), progress=False)
        s.compile()
        t0 = time.perf_counter()
        x = np.asarray(s.solve())
        dt = time.perf_counter() - t0
        rss = mem.take()
    win = p.evaluations((image.shape[0] // 4, image.shape[1] // 4)) if hasattr(p, "evaluations") else 1
    if label == "full" and method == "P2L" and tiles == "mixture":
        _full_size_figure(out / "full_size.png", problem.measurement[0], x[0], image)
    shown = label if label != "full" else f"{image.shape[1]}x{image.shape[0]} (full)"
    return {"image": label, "shown": shown, "method": method, "tiles": tiles, "windows": int(win), "seconds": dt,
            "peak_rss_mb": rss, "psnr": float(psnr(x[0], image)), "cpus": len(os.sched_getaffinity(0)),
            "load_average": load_average()}


def _cost_markdown(out: Path, rows: list) -> None:
    lines = ["# Cost of larger images (bundled prior, one image, sr4-avg, 25 DDIM steps)", "",
             "Produced by `python benchmarks/any_size.py --cost` (resumable row by row): wall seconds for one "
             "image (compilation excluded), the process's peak resident memory during the solve (its whole "
             "resident set, each row in a fresh process: interpreter, libraries, weights, the compiled "
             "program and the solve), and the PSNR of the restoration; mixture tiles in batches of 16 windows. `load`: the "
             "1-minute load average at the row's end, on a 2-core machine: above 1 another job shared the "
             "machine (each process pinned to its own core), so the seconds are an upper bound.", "",
             "| image | method | tiles | windows | s/image | peak RSS (MB) | PSNR | CPUs | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = {(img, m, t): k for k, (img, m, t) in enumerate(
        (img, m, t) for img in COST_IMAGES for m in ("LDPS", "P2L") for t in ("none", "mixture"))}
    rows = sorted(rows, key=lambda r: order[(r["image"], r["method"], r["tiles"])])
    lines += [f"| {r['shown']} | {r['method']} | {r['tiles']} | {r['windows']} | {r['seconds']:.1f} "
              f"| {r['peak_rss_mb']:.0f} | {r['psnr']:.2f} | {r['cpus']} | {r['load_average'][0]} |" if "failed" not in r
              else f"| {r['shown']} | {r['method']} | {r['tiles']} | - | failed: {r['failed']} "
                   f"| {r['peak_rss_mb']:.0f} (when it stopped) | - | {r['cpus']} | {r['load_average'][0]} |" for r in rows]
    (out / "cost.md").write_text("\n".join(lines) + "\n")


def _full_size_figure(path: Path, y, x, truth) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = truth.shape[:2]
    fig, ax = plt.subplots(1, 3, figsize=(3 * w / 100, h / 100 + 0.4))
    for a, im, t in zip(ax, (np.kron(y, np.ones((4, 4, 1))), x, truth),
                        ("measurement (4x pooled, shown enlarged)", "P2L + mixture tiles", "ground truth")):
        a.imshow(np.clip(im, 0, 1))
        a.set_title(t, fontsize=9)
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    shrink_png(path)


def shrink_png(path: Path) -> None:
    """Rewrite a PNG with a 256-colour palette (about a third of the bytes; the figure is for
    the eye, the numbers are in the tables)."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--sizes", type=int, nargs="+", default=[48, 96])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--n", type=int, default=100, help="val photographs (all 100 by default)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tile-batch", type=int, default=None)
    p.add_argument("--out", default=str(RESULTS / "any_size"))
    p.add_argument("--cost", action="store_true", help="the cost table and the full-size figure only")
    p.add_argument("--cost-row", nargs=3, metavar=("IMAGE", "METHOD", "TILES"), help=argparse.SUPPRESS)
    p.add_argument("--summary-only", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.cost_row:
        print(json.dumps(cost_row(out, args.steps, Path(args.data), *args.cost_row)))
        return
    if args.cost:
        out.mkdir(parents=True, exist_ok=True)
        cost(out, args.steps, Path(args.data))
        return
    if not args.summary_only:
        from diffprior.prior import LatentDiffusionPrior

        prior = LatentDiffusionPrior.bundled()
        photos = read_bsds("val", Path(args.data), args.n)
        out.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            for task in args.tasks:
                for m in args.methods:
                    run_setting(prior, size, task, m, photos, args.steps, args.batch, out, args.tile_batch)
                summarize(out)
    rows = summarize(out)
    claims(out)
    print((out / "any_size.md").read_text())
    print((out / "claims.md").read_text())
    print(f"wrote {out}/any_size.md ({len(rows)} rows)")


if __name__ == "__main__":
    main()
