"""Self-checks of the benchmark scripts and of the results committed beside them.

The library's tests (``tests/``) neither import these scripts nor read ``benchmarks/results``;
this script does, and checks that

* the committed results describe the weights shipped in the package: the validation figures
  (``results/prior_quality.json``, and the model card copied from them) and every search of
  the presets on the diffusion prior (``results/tuning.json``);
* ``diffprior.solvers.tuned`` holds the values the searches in ``results/tuning.json`` chose;
* ``paper_tables.py`` refuses to mix records of other weights or presets, rebuilds its tables
  from the records alone (``--summary-only``), refuses an unknown method before doing anything,
  and compares the speed curve's settings on the same images;
* ``prior_quality.py``'s restoration check resumes after an interruption, scores an image the
  same whichever batch it ran in, shares images between processes (``--shard``) and merges the
  sections of separate runs (a tiny run of 3 images, 1 step, on the bundled prior).

Usage (exit status 1 when a check fails)::

    python benchmarks/selfcheck.py            # every check
    python benchmarks/selfcheck.py tuned      # the checks whose name contains "tuned"
    python benchmarks/selfcheck.py --list
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the scripts import each other as top-level modules
    sys.path.insert(0, str(HERE))

RESULTS = HERE / "results"


# ----------------------------------------------------------------------------- helpers
class CheckFailed(AssertionError):
    pass


def check(cond, message="") -> None:
    if not cond:
        raise CheckFailed(message or "check failed")


def close(a, b, rel=1e-6, abs_=1e-12) -> bool:
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_)


@contextlib.contextmanager
def raises(exc_type, match: str | None = None):
    """Like ``pytest.raises``: the block must raise ``exc_type`` (its message matching ``match``).

    Yields a one-element list that holds the exception afterwards.
    """
    caught = []
    try:
        yield caught
    except exc_type as e:
        if match is not None and not re.search(match, str(e)):
            raise CheckFailed(f"{exc_type.__name__} raised, but {str(e)!r} does not match {match!r}") from e
        caught.append(e)
        return
    raise CheckFailed(f"{exc_type.__name__} not raised")


@contextlib.contextmanager
def patched(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _shipped_fingerprint(kind: str = "latent") -> str:
    from diffprior import bundled_path
    from diffprior.prior import weights_fingerprint

    return weights_fingerprint(bundled_path(kind))


# ----------------------------------------------------------------------------- committed results
def check_validation_figures_are_of_the_shipped_weights(tmp: Path) -> None:
    """``results/prior_quality.json`` (and the model card copied from it) describe the weights in
    the package, not an earlier export."""
    from diffprior import bundled_path

    res = json.loads((RESULTS / "prior_quality.json").read_text())
    check(res.get("fingerprint") == _shipped_fingerprint(), "rerun benchmarks/prior_quality.py")
    card = (bundled_path() / "MODEL_CARD.md").read_text()
    check(f"{res['vae_psnr']['mean']:.2f} dB" in card, "the model card's autoencoder PSNR is not the results file's")
    check((bundled_path() / "samples.png").is_file(), "no samples.png in the bundled prior")


def check_presets_were_searched_on_the_shipped_weights(tmp: Path) -> None:
    """Every search on a diffusion prior behind ``diffprior.solvers.tuned`` ran on the weights in
    the package: the latent solvers' on the latent prior, DPS's, DDS's and DiffPIR's on the pixel
    prior (the ADMM baselines' searches do not use a prior)."""
    from tune import PIXEL

    entries = json.loads((RESULTS / "tuning.json").read_text())
    diffusion = [e for e in entries if e["steps"] > 0]
    check(diffusion, "tuning.json has no search on the diffusion prior")
    fp = {kind: _shipped_fingerprint(kind) for kind in ("latent", "pixel")}
    stale = [(e["solver"], e["task"], e["param"]) for e in diffusion
             if e.get("prior") != fp["pixel" if e["solver"] in PIXEL else "latent"]]
    check(not stale, f"searched on other weights (rerun benchmarks/tune_all.sh latent / pixel): {stale}")


def check_tuned_presets_are_the_searched_values(tmp: Path) -> None:
    """``diffprior.solvers.tuned`` holds the values ``tune.py`` chose (``results/tuning.json``):
    for each solver task, the search on its primary benchmark task."""
    from diffprior.solvers import Task
    from diffprior.solvers.tuned import TUNED
    from diffprior.tasks import TASKS

    entries = json.loads((RESULTS / "tuning.json").read_text())
    primary = {"sr4-avg", "gauss-deblur", "motion-deblur", "inpaint-freeform"}
    # LDPS + prompt tuning is searched on the paper's Table 1 tasks (inpainting: 80 % random drops)
    primary_of = {"ldps-pt": {"sr4-avg", "inpaint-random"}}
    names = {"ldps": "LDPS", "gmldps": "GMLDPS", "psld": "PSLD", "ldir": "LDIR", "p2l": "P2L", "tvadmm": "TVADMM",
             "pnpadmm": "PnPADMM", "ldps-pt": "LDPS+PT", "dps": "DPS", "dds": "DDS", "diffpir": "DiffPIR"}
    checked = 0
    for e in entries:
        if e["task"] not in primary_of.get(e["solver"], primary):
            continue
        key = (names[e["solver"]], Task(TASKS[e["task"]].solver_task))
        check(close(TUNED[key][e["param"]], e["chosen"]), f"{key} {e['param']}: tuned.py has "
              f"{TUNED[key][e['param']]}, tuning.json chose {e['chosen']} (rerun benchmarks/tune.py --write)")
        checked += 1
    check(checked >= 10, f"only {checked} searches on the primary tasks in tuning.json")


# ----------------------------------------------------------------------------- paper_tables.py
def _write_records(path: Path, rows: list) -> None:
    """Per-image records in ``paper_tables.py``'s ``records.csv`` format (columns ``FIELDS``)."""
    import paper_tables

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=paper_tables.FIELDS)
        w.writeheader()
        w.writerows(rows)


def check_paper_tables_refuses_to_mix_records_of_other_weights(tmp: Path) -> None:
    import paper_tables

    now = paper_tables.provenance()
    check(now == {"prior": _shipped_fingerprint()}, f"provenance {now}")
    fresh = tmp / "fresh"
    fresh.mkdir()
    paper_tables.check_provenance(fresh, now)  # a new folder takes any run
    same = tmp / "same"
    same.mkdir()
    (same / "run.json").write_text(json.dumps({**now, "presets": "0" * 12}))
    _write_records(same / "records.csv", [])
    paper_tables.check_provenance(same, now)  # records of these weights: resumes (configs compared per method)
    with raises(SystemExit, match="other weights"):
        paper_tables.check_provenance(same, {"prior": "0" * 12})
    orphan = tmp / "orphan"
    orphan.mkdir()
    (orphan / "records.csv").write_text("method,task\n")
    with raises(SystemExit, match="no run.json"):
        paper_tables.check_provenance(orphan, now)


def check_paper_tables_summarises_only_legacy_rows_whose_configuration_holds(tmp: Path) -> None:
    """With ``legacy_configs.json`` a legacy row enters the summary only when the configuration
    it ran with is the method's configuration today."""
    import paper_tables

    rows = [dict(method=m, task="sr4-avg", image=f"cat/{i}.jpg", seed=i, steps=25, psnr=20.0, ssim=0.5, lpips=0.3,
                 nfe=25, seconds=1.0, compile_s=0.0, peak_rss_mb=900) for m in ("ldps", "psld") for i in range(2)]
    _write_records(tmp / "records.csv", rows)
    configs = {"sr4-avg__ldps": paper_tables.current_config("ldps", "sr4-avg"),
               "sr4-avg__psld": {**paper_tables.current_config("psld", "sr4-avg"), "legacy": "adjoint gluing"}}
    (tmp / "legacy_configs.json").write_text(json.dumps({"configs": configs}))
    check(paper_tables.legacy_carried(tmp) == {("ldps", "sr4-avg")}, f"carried {paper_tables.legacy_carried(tmp)}")
    got = {(r["method"], r["task"]) for r in paper_tables.records(tmp, 25)}
    check(got == {("ldps", "sr4-avg")}, f"summarised {got}")


def check_paper_tables_image_records_keep_only_todays_configurations(tmp: Path) -> None:
    """``image_records.csv`` (the committed per-image records of result files) is read back with
    numbers, and rows whose configuration digest is not today's preset are left out."""
    import paper_tables

    now = paper_tables.config_digest(paper_tables.current_config("ldps", "sr4-avg"))
    rows = [dict(method="ldps", task="sr4-avg", image=f"cat/{i}.jpg", seed=i, steps=25, psnr=20.0, ssim=0.5,
                 lpips=0.25, nfe=25, seconds=1.0, peak_rss_mb=900.0, residual=1.5, config=now) for i in range(2)]
    rows.append({**rows[0], "method": "psld", "config": "0" * 12})  # made with another configuration
    paper_tables.write_image_records(tmp, rows)
    got = paper_tables.records(tmp, 25)
    check(sorted((r["method"], r["image"]) for r in got) == [("ldps", "cat/0.jpg"), ("ldps", "cat/1.jpg")],
          f"records {[(r['method'], r['image']) for r in got]}")
    check(all(r["residual"] == 1.5 and r["steps"] == 25 and np.isnan(r["emb_drift"]) for r in got), f"values {got}")


def check_paper_tables_legacy_row_partly_rerun_for_its_residual(tmp: Path) -> None:
    """A legacy row re-run on its first images: the re-run's records replace those images' legacy
    records, the residual cell states its own number of images, and the summary reports how far
    the re-run is from the legacy records of the same images."""
    import paper_tables

    legacy = [dict(method="ldps", task="sr4-avg", image=f"cat/{i}.jpg", seed=i, steps=25, psnr=20.0, ssim=0.5,
                   lpips=0.3, nfe=25, seconds=1.0, compile_s=0.0, peak_rss_mb=900) for i in range(4)]
    _write_records(tmp / "records.csv", legacy)
    (tmp / "legacy_configs.json").write_text(json.dumps(
        {"configs": {"sr4-avg__ldps": paper_tables.current_config("ldps", "sr4-avg")}}))
    now = paper_tables.config_digest(paper_tables.current_config("ldps", "sr4-avg"))
    rerun = [{**legacy[i], "lpips": 0.3 + 0.01 * i, "residual": 1.0 + i, "config": now} for i in range(2)]
    paper_tables.write_image_records(tmp, rerun)
    (row,) = paper_tables.summarize(tmp, 25)
    check((row["n"], row["residual_n"]) == (4, 2) and close(row["residual"], 1.5), f"summary row {row}")
    check(close(row["lpips"], (0.3 * 3 + 0.31) / 4), f"summary row {row}: re-run records replace legacy ones")
    md = (tmp / "summary.md").read_text()
    check("| 1.500 ± 0.500 (n = 2) |" in md, "summary.md: residual cell of a partly re-run row")
    check("| sr4-avg | ldps | 2 | 0.01 | 0 |" in md, "summary.md: legacy agreement")


def check_paper_tables_paired_differences(tmp: Path) -> None:
    """The paired section: first minus second over the images both ran, with its standard error
    and the count of images the first is better on."""
    import paper_tables

    rec = lambda m, i, lp, db: dict(method=m, task="sr4-avg", image=f"cat/{i}.jpg", lpips=lp, psnr=db)
    recs = [rec("p2l", i, 0.2 + 0.01 * i, 20.0) for i in range(3)] + [rec("ldps", i, 0.3, 19.0) for i in range(4)]
    (p,) = [p for p in paper_tables.paired(recs) if (p["first"], p["second"]) == ("p2l", "ldps")]
    check((p["n"], p["better"], p["equal"]) == (3, 3, 0) and close(p["d_lpips"], -0.09) and close(p["d_psnr"], 1.0)
          and close(p["d_lpips_se"], 0.01 / 3 ** 0.5), f"paired {p}")


def check_paper_tables_summary_only_rebuilds_the_tables_from_the_records(tmp: Path) -> None:
    """``--summary-only`` solves nothing: it rewrites summary.csv/md from records.csv (mean and
    standard error per method and task, only the records of the requested number of steps)."""
    import paper_tables

    rows = [dict(method="ldps", task="sr4-avg", image=f"cat/{i}.jpg", seed=i, steps=25, psnr=20.0 + i, ssim=0.5,
                 lpips=0.2 + 0.1 * i, nfe=25, seconds=1.0, compile_s=0.0, peak_rss_mb=900) for i in range(3)]
    rows.append({**rows[0], "steps": 50, "lpips": 9.0})  # another step count: left out
    rows.append({**rows[0], "task": "inpaint-freeform"})  # a Tables 2-3 task: not listed under Table 1
    _write_records(tmp / "records.csv", rows)
    paper_tables.main(["--summary-only", "--out", str(tmp), "--steps", "25"])
    with open(tmp / "summary.csv") as f:
        free, row = list(csv.DictReader(f))
    check((row["method"], row["task"], int(row["n"])) == ("ldps", "sr4-avg", 3), f"summary row {row}")
    check((free["task"], int(free["n"])) == ("inpaint-freeform", 1), f"summary row {free}")
    check(close(row["lpips"], 0.3) and close(row["lpips_se"], 0.1 / 3 ** 0.5), f"summary row {row}")
    md = (tmp / "summary.md").read_text()
    check("| sr4-avg | ldps | 3 | 0.3000 ± 0.0577 |" in md, "summary.md")
    table1, table23 = md.split("## table23")[0], md.split("## table23")[1].split("## table5")[0]
    check("| inpaint-freeform | ldps |" not in table1 and "| inpaint-freeform | ldps |" in table23,
          "summary.md: inpaint-freeform under the wrong table")
    # claims.md: the paper's ImageNet figure beside ours, and the rows not run yet say so
    claims = (tmp / "claims.md").read_text()
    # (legacy records keep no residual: "-", beside sigma sqrt(m) = 0.005 sqrt(8 * 8 * 3))
    check('| sr4-avg | ldps | "" | 0.397 / 23.49 dB | 0.3000 ± 0.0577 / 21.00 dB | - (0.069) | 3 |' in claims,
          "claims.md")
    check("| gauss-deblur | p2l | P2L | 0.325 / 25.11 dB | not run |  | 0 |" in claims, "claims.md: rows not run")
    check(not (tmp / "run.json").exists(), "--summary-only wrote run.json")
    with raises(SystemExit, match="nothing to summarise"):
        paper_tables.main(["--summary-only", "--out", str(tmp / "missing")])


def check_paper_tables_refuses_an_unknown_method(tmp: Path) -> None:
    """``--methods`` names only the tables' methods; a typo stops the run before anything is
    loaded or written."""
    import paper_tables

    err = io.StringIO()
    with raises(SystemExit) as caught, contextlib.redirect_stderr(err):
        paper_tables.main(["--methods", "p2l", "p2L-gluing", "--out", str(tmp / "out")])
    check(caught[0].code == 2 and "p2L-gluing" in err.getvalue(), f"exit {caught[0].code}: {err.getvalue()!r}")
    check(not (tmp / "out").exists(), "the output folder was created")


def check_paper_tables_speed_curve_compares_the_same_images(tmp: Path) -> None:
    """``speed.md``: LDPS enters on the curve's own images only, and the cheapest P2L setting
    within one standard error of the reference (twice the steps) is named."""
    import paper_tables

    def rec(method, i, lpips, seconds, steps=25):
        return dict(method=method, task="sr4-avg", image=f"cat/{i}.jpg", seed=i, steps=steps, psnr=20.0, ssim=0.5,
                    lpips=lpips, nfe=25, seconds=seconds, compile_s=0.0, peak_rss_mb=900)

    rows = [rec("p2l-s50-k3", i, 0.25 + 0.01 * i, 18.0, 50) for i in range(4)]
    rows += [rec("p2l-s25-k1", i, 0.253 + 0.01 * i, 4.0) for i in range(4)]  # 0.268: within 1 s.e. (0.0065)
    rows += [rec("p2l-s12-k1", i, 0.40, 2.0, 12) for i in range(4)]  # cheaper but worse
    rows += [rec("ldps", i, 0.30 if i < 4 else 0.90, 2.0) for i in range(8)]  # 4 images off the curve
    _write_records(tmp / "records.csv", rows)
    paper_tables.plot_speed(tmp, "sr4-avg", 25)
    md = (tmp / "speed.md").read_text()
    check("| ldps (25 steps) | 4 | 0.3000 ± 0.0000 |" in md, "speed.md: LDPS row")
    check("| p2l-s12-k1 | 4 | 0.4000 ± 0.0000 | 2.00 | 25 | no |" in md, "speed.md: p2l-s12-k1 row")
    check("**`p2l-s25-k1`**, 4.00 s per image (4.5x cheaper)" in md, "speed.md: the cheapest setting")
    check((tmp / "speed.png").stat().st_size > 0, "empty speed.png")


# ----------------------------------------------------------------------------- prior_quality.py
def check_prior_quality_restoration_resumes_and_does_not_depend_on_batching(tmp: Path) -> None:
    """The validation script's restoration check appends every solved batch to its result file,
    continues from it after an interruption, scores an image the same whichever batch (or
    process) it ran in (per-image noise and solver keys), and reports the tuning images' share
    separately."""
    import _common
    import prior_quality as pq
    from _common import Validation

    from diffprior.io import read_result
    from diffprior.prior import LatentDiffusionPrior

    names = ("airplane/4900.jpg", "bird/4995.jpg", "cat/4901.jpg")  # the second is a tuning image
    images = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    val = Validation(images, np.zeros(3, int), ("a",), names)
    prior = LatentDiffusionPrior.bundled()
    whole = pq.restore(prior, val, "sr4", 1, tmp / "whole.npz", chunk=3)
    check(whole is not None and whole["n_images"] == 3, "the uninterrupted run gave no figures")

    real, batches = _common.scores, []  # the solvers' per-batch scores: one call per solved batch

    def stops_on_the_second_batch(x, gt):
        batches.append(len(x))
        if len(batches) == 2:
            raise KeyboardInterrupt
        return real(x, gt)

    with patched(_common, "scores", stops_on_the_second_batch), raises(KeyboardInterrupt):
        pq.restore(prior, val, "sr4", 1, tmp / "parts.npz", chunk=2)
    first = read_result(pq.result_path(tmp / "parts.npz", "ldps"))
    check(first.done_indices.tolist() == [0, 1], f"kept after the first batch: {first.done_indices.tolist()}")
    batches.clear()

    def counts(x, gt):
        batches.append(len(x))
        return real(x, gt)

    with patched(_common, "scores", counts):
        resumed = pq.restore(prior, val, "sr4", 1, tmp / "parts.npz", chunk=2)
    # one batch: only the third image was left (the runner pads a short batch to the batch size)
    check(len(batches) == 1, f"resumed with {len(batches)} batches: only the third image was left")
    a = read_result(pq.result_path(tmp / "whole.npz", "ldps"))
    b = read_result(pq.result_path(tmp / "parts.npz", "ldps"))
    for k in ("lpips", "psnr"):
        np.testing.assert_allclose(a.metrics[k], b.metrics[k], rtol=1e-4, atol=1e-4, err_msg=k)
    # nothing redone: the images solved before the interruption are those written then
    np.testing.assert_array_equal(b.reconstruction[:2], first.reconstruction[:2])
    np.testing.assert_array_equal(b.wall_time[:2], first.wall_time[:2])
    check(resumed["n_images"] == 3 and resumed["held_out"]["n"] == 2, "image counts")
    paired = resumed["paired"]
    check(0.0 <= paired["ldps_better"] <= 1.0 and np.isfinite(paired["lpips_ldps_minus_baseline"]["mean"]),
          f"paired figures {paired}")
    check(close(paired["lpips_ldps_minus_baseline"]["mean"],
                resumed["ldps"]["lpips"]["mean"] - resumed["bicubic"]["lpips"]["mean"], rel=1e-6, abs_=1e-6),
          "the paired LPIPS difference is not the difference of the means")
    check(close(resumed["ldps"]["lpips"]["mean"], whole["ldps"]["lpips"]["mean"], rel=0, abs_=1e-4),
          "the resumed run's mean LPIPS is not the uninterrupted run's")
    with raises(SystemExit):  # a file of other images is refused
        pq.restore(prior, val.subset([2, 1, 0]), "sr4", 1, tmp / "parts.npz", chunk=2)
    # two processes sharing the images out: the last to finish reports on all of them
    for bad in ("2/2", "1", "a/b"):
        with raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            pq.main(["--shard", bad])
    check(pq.restore(prior, val, "sr4", 1, tmp / "shared.npz", shard=(1, 2)) is None,
          "the first shard to finish reported")
    both = pq.restore(prior, val, "sr4", 1, tmp / "shared.npz", shard=(0, 2))
    check(both is not None and both["n_images"] == 3 and both["held_out"]["n"] == 2, "shared run's image counts")
    check(close(both["ldps"]["lpips"]["mean"], whole["ldps"]["lpips"]["mean"], rel=0, abs_=1e-4),
          "the shared run's mean LPIPS is not the single run's")

    # sections run by separate processes end up in one file; other weights' figures are dropped
    out = tmp / "q.json"
    out.write_text(json.dumps({"fingerprint": "f1", "restoration": {"sr4": {"ldps": {}}, "n_images": 200}}))
    first = pq.merge_results(out, {"fingerprint": "f1", "n_validation": 3, "vae_psnr": {"mean": 27.0, "se": 0.1, "n": 3}})
    check("restoration" not in first, "figures of another validation size were kept")
    pq.merge_results(out, {"fingerprint": "f1", "n_validation": 3, "restoration": {"sr4": resumed}})
    box = {**resumed, "tv_admm": resumed["bicubic"]}
    merged = pq.merge_results(out, {"fingerprint": "f1", "n_validation": 3, "restoration": {"inpaint_box": box}})
    check(set(merged["restoration"]) == {"sr4", "inpaint_box"} and merged["vae_psnr"]["mean"] == 27.0,
          "sections were not merged")
    md = out.with_suffix(".md").read_text()
    check("| sr4 | 3 | 1, 1.0 | ldps |" in md and "| inpaint_box | 3 | 1, 1.0 | tv_admm |" in md and "(n = 2)" in md,
          "q.md restoration table")
    check("- sr4: LDPS minus bicubic, image by image" in md, "q.md paired figures")
    check("vae_psnr" not in pq.merge_results(out, {"fingerprint": "f2", "n_validation": 3}),
          "figures of other weights were kept")


CHECKS = {name[len("check_"):]: f for name, f in globals().items() if name.startswith("check_")}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--list" in argv:
        print("\n".join(CHECKS))
        return 0
    if any(a.startswith("-") for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    selected = {n: f for n, f in CHECKS.items() if not argv or any(a in n for a in argv)}
    if not selected:
        print(f"no check matches {argv}; --list names them", file=sys.stderr)
        return 2
    failed = []
    t_all = time.perf_counter()
    for name, f in selected.items():
        t0 = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="selfcheck-") as tmp:
                f(Path(tmp))
        except Exception as e:  # report every check, then fail
            failed.append(name)
            print(f"FAIL  {name} ({time.perf_counter() - t0:.1f} s): {type(e).__name__}: {e}", flush=True)
            if not isinstance(e, CheckFailed):
                traceback.print_exc()
        except SystemExit as e:  # raised where a check did not expect it
            failed.append(name)
            print(f"FAIL  {name} ({time.perf_counter() - t0:.1f} s): unexpected {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
        else:
            print(f"ok    {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
    total = time.perf_counter() - t_all
    print(f"{len(selected) - len(failed)}/{len(selected)} benchmark self-checks passed in {total:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
