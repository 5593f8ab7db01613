"""The paper's claims (Tables 1, 2-3, 5) tested on the bundled prior, with quality, cost and memory.

Tasks (presets of ``diffprior.tasks``, 32 x 32 CIFAR-10 validation images, sigma =
0.005): ``sr4-avg`` (4x super-resolution by average pooling), ``gauss-deblur`` (7 x 7,
sigma 1 px: the paper's 61 x 61, sigma 3 at 256 px scaled to 32 px with a floor),
``motion-deblur`` (7 x 7 camera-shake kernel, intensity 0.5), ``inpaint-freeform`` (10-20 %
missing) and ``inpaint-random`` (80 % missing).

Methods (every diffusion method runs the same number of DDIM steps, ``--steps``, with one
DDIM eta per task; solver hyperparameters are the ``Dataset.CIFAR10`` presets of
:mod:`diffprior.solvers.tuned`, chosen on separate tuning images under the same rules for every
solver; nothing is selected against the ground truth):

* Table 1 analog, LDPS with a fixed prompt: ``ldps`` (""), ``ldps-photo`` ("a photo"),
  ``ldps-oracle`` ("a photo of a <true class>"), ``ldps-wrong`` (a wrong class, fixed per
  image), ``ldps-pt`` (LDPS's preset plus prompt tuning from "", its K and learning rate
  searched for it: the paper's "tuned" row, LDPS with the tuned prompt and no projection) and
  ``p2l-photo`` (P2L, prompt tuning and projection, started from "a photo");
* Tables 2-3 analog: ``p2l`` (initial prompt "A high quality photo"), ``ldps``, ``gmldps``,
  ``psld`` (its gluing the orthogonal projection onto the measurement set), ``ldir``, the
  image-domain solvers ``dps``, ``dds``, ``diffpir`` (on the bundled pixel prior, a DDPM trained on
  the same CIFAR-10 images, each at its own number of steps, :data:`PIXEL_STEPS`), ``tv-admm``,
  ``pnp-admm`` (scico DnCNN applied per colour channel);
* Table 5 analog: ``ldps``, ``ldps-pt`` (prompt tuning only), ``p2l-proj-only`` (no prompt
  tuning), ``p2l`` (both), ``p2l-gluing`` (the gluing projection instead of the proximal one)
  and ``p2l-adam-carry`` (P2L with Adam's moments carried between reverse steps instead of
  restarted: whether the restart matters).

The prompt-tuning methods also record, per image, how far the tuned embedding moved from its
start and from the class prompts (:func:`embedding_drift`); every method records the
measurement residual :math:`\\|y - A\\hat x\\|`, shown beside :math:`\\sigma\\sqrt{m}`.

Tables run on the paper's tasks (``TABLE_TASKS``): Table 1 on ``sr4-avg`` and
``inpaint-random`` (the paper: SR and 80 % random inpainting), Tables 2-3 on all five, the
Table 5 ablation on ``sr4-avg`` (the paper: FFHQ SR); ``--all-tasks`` runs every table on every
task.

Each (method, task) is solved by the library's runner (:func:`diffprior.runner.solve_problem`,
batches of ``--batch`` images, per-image keys ``_common.image_keys``) into one result file,
``OUT/results/<task>__<method>.h5`` (:class:`diffprior.io.ResultWriter`): per image the
reconstruction, PSNR, SSIM, LPIPS, ``peak_rss_mb`` (peak resident memory of the process during
the image's batch, compilation included), the wall seconds (solving only) and the per-step
history. Every finished image is appended at once, so an interrupted run resumes where it
stopped (the file's pending images). The file's hyperparameters record the method, the task,
the DDIM steps (diffusion methods), the solver configuration (``to_json``), the prompt(s), the
UNet evaluations per image (``nfe``), the image names and :func:`provenance` (the prior's
weights and the presets of :mod:`diffprior.solvers.tuned`); the runner refuses to resume a file
written with other ones (pass another ``--out``), and a run refuses to add to a folder whose
results came from other weights or presets (:func:`check_provenance`). The summary
(``summary.csv``, ``summary.md``: mean and standard error) and the figure (``examples.png``: the
first images of each task) are rebuilt from the result files at the end (``--summary-only``
rewrites the summary alone, from whatever results are there); ``claims.md`` puts the paper's
figures (:data:`PAPER`) beside ours. ``--speed`` adds P2L runs on ``sr4-avg`` (the first
``--speed-n`` images) with more and fewer steps, smaller K and less frequent prompt tuning
(methods ``p2l-s<steps>-k<K>[-e<m>]``), for the cost/quality curve (``speed.png``) and the
cheapest setting within one standard error of the longest run (``speed.md``).

Previous format: runs before the result files appended per-image rows to ``OUT/records.csv``
(columns :data:`FIELDS`), with ``OUT/run.json`` naming the weights and presets and
``OUT/examples/*.npz`` the first reconstructions. These are read but no longer written: the
summaries merge the records of ``records.csv`` with the result files (a result file's image
replaces the same record), and a run refuses to add to a folder whose ``run.json`` names other
weights. When the presets change, ``benchmarks/legacy_configs.py`` writes
``OUT/legacy_configs.json``, the configuration each legacy row ran with; a legacy row is then
summarised only if that configuration is still the method's (:func:`legacy_carried`), and a
result file whose configuration is no longer the preset is left out (:func:`stale_results`),
so a table never mixes presets. Legacy rows keep no residual (shown as ``-``).

Usage (the documented subset; measured: 18.6 and 15.9 minutes of wall time as two processes,
one per core, ``taskset -c 0 ... --speed --tasks sr4-avg`` and ``taskset -c 1 ... --tasks
gauss-deblur motion-deblur inpaint-freeform inpaint-random``, sharing one ``--out``;
``--methods`` splits one task between two such processes)::

    python benchmarks/paper_tables.py --n 10 --steps 25 --speed --out benchmarks/results/paper_tables_subset
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from _common import (RESULTS, bundled_prior, evaluation_set, image_keys, load_validation, nfe_per_image, prior_fingerprint,
                     run_result, se, seed_of, solver_config, task_problem)

TASKS = ("sr4-avg", "gauss-deblur", "motion-deblur", "inpaint-freeform", "inpaint-random")
TABLES = {
    "table1": ("ldps", "ldps-photo", "ldps-oracle", "ldps-wrong", "ldps-pt", "p2l-photo"),
    "table23": ("p2l", "ldps", "gmldps", "psld", "ldir", "dps", "dds", "diffpir", "tv-admm", "pnp-admm"),
    "table5": ("ldps", "ldps-pt", "p2l-proj-only", "p2l", "p2l-gluing", "p2l-adam-carry"),
}
#: The image-domain solvers, on the bundled pixel prior (``diffprior.bundled_path("pixel")``), each at
#: its own number of steps: by default the paper's (DPS 1000 DDIM steps, DDS and DiffPIR 100),
#: ``--pixel-steps`` to change them (the result files and tables record the steps run).
PIXEL_STEPS = {"dps": 1000, "dds": 100, "diffpir": 100}
#: Methods that tune the prompt: their result files also record the embedding's drift
#: (:func:`embedding_drift`).
PROMPT_TUNED = ("ldps-pt", "p2l", "p2l-photo", "p2l-gluing", "p2l-adam-carry")
#: The paired comparisons of ``summary.md`` (first minus second, image by image, on every task
#: where both ran): each claim's question, asked of the same images.
PAIRS = (("ldps-pt", "ldps"), ("ldps-oracle", "ldps"), ("ldps-wrong", "ldps"), ("p2l-photo", "p2l"),
         ("gmldps", "ldps"), ("psld", "ldps"), ("ldir", "ldps"), ("ldir", "p2l"), ("p2l", "ldps"),
         ("p2l-proj-only", "p2l"), ("p2l-gluing", "p2l"), ("p2l-adam-carry", "p2l"), ("tv-admm", "p2l"),
         ("pnp-admm", "p2l"), ("dps", "p2l"), ("dds", "p2l"), ("diffpir", "p2l"))
#: The tasks of each table, as in the paper: Table 1 on SR and 80 % random inpainting, Tables
#: 2-3 on every task, the Table 5 ablation on SR (``--all-tasks`` runs every table on every task).
TABLE_TASKS = {"table1": ("sr4-avg", "inpaint-random"), "table23": TASKS, "table5": ("sr4-avg",)}
#: Columns of the previous format's ``records.csv`` (read by :func:`read_legacy_records`, no longer written).
FIELDS = ["method", "task", "image", "seed", "steps", "psnr", "ssim", "lpips", "nfe", "seconds", "compile_s",
          "peak_rss_mb"]
EXAMPLES = 4  # images per task kept for the figure
#: Per-image values of the result files beyond :data:`FIELDS` that the summaries average: the
#: data fit :math:`\\|y - A\\hat x\\|` and the prompt-tuning methods' embedding drift
#: (:func:`embedding_drift`). Legacy records have none of them.
EXTRA = ("residual", "emb_drift", "emb_to_class", "emb_nearest_true")
#: The committed per-image records of the result files (:func:`write_image_records`), and their columns.
IMAGE_RECORDS = "image_records.csv"
IMAGE_FIELDS = ["method", "task", "image", "seed", "steps", "psnr", "ssim", "lpips", "nfe", "seconds", "peak_rss_mb",
                *EXTRA, "config"]

#: The paper's ImageNet figures (its Table 3, LPIPS / PSNR) of the image-domain solvers DPS, DDS
#: and DiffPIR, which ran on ADM (ImageNet 512 px) since no pixel model shares SD's training data.
PAPER_PIXEL = {
    "sr4-avg": ("0.544 / 20.70 dB", "1.213 / 12.72 dB", "1.182 / 13.44 dB"),
    "motion-deblur": ("0.599 / 19.62 dB", "0.925 / 14.52 dB", "0.622 / 19.32 dB"),
    "gauss-deblur": ("0.910 / 15.05 dB", "0.835 / 16.58 dB", "0.755 / 20.55 dB"),
    "inpaint-freeform": ("0.360 / 15.15 dB", "0.354 / 17.03 dB", "0.300 / 20.11 dB"),
}
#: The paper's ImageNet numbers (Stable Diffusion v1.4, 1000 DDIM steps, 512 px) beside which
#: ``claims.md`` puts ours: ``(table, task, our method, the paper's row, its figures)``. Table 1
#: is LDPS with fixed prompts and with the tuned prompt (LPIPS / PSNR; its "tuned" row is LDPS
#: plus prompt tuning, *without* projection); Tables 2-3 are the solvers (LPIPS / PSNR; its
#: "Inpaint" column is 10-20 % free-form masks); Table 5 is the ablation on SR (FID / PSNR: the
#: paper reports no LPIPS there), and the gluing row is its noise-level study (FFHQ SR). Rows
#: whose figures are ``None`` have no counterpart in the paper.
PAPER = [("table1", task, m, label, figures)
         for task, per_method in (
             ("sr4-avg", ("0.397 / 23.49 dB", "0.396 / 23.51 dB", "0.388, 0.387 / 23.57 dB", "0.402 / 0.394 / 0.403",
                          "0.386 / 23.57 dB", "0.386 / 23.57 dB")),
             ("inpaint-random", ("0.350 / 26.20 dB", "0.350 / 26.26 dB", "0.355, 0.348 / 26.26, 26.17 dB",
                                 "0.355 / 0.354 / 0.352", "0.314 / 26.29 dB", "0.314 / 26.29 dB")))
         for m, label, figures in zip(
             ("ldps", "ldps-photo", "ldps-oracle", "ldps-wrong", "p2l-photo", "ldps-pt"),
             ('""', '"A high quality photo"', "PaLI captions (two variants)", '"... of a cat" / "dog" / "face"',
              "tuned prompt (LDPS + prompt tuning; ours: full P2L)",
              "tuned prompt (LDPS + prompt tuning; ours: the same)"), per_method)
         ] + [("table23", task, m, label, figures)
     for task, per_method in (
         ("sr4-avg", ("0.386 / 23.38 dB", "0.475 / 23.21 dB", "0.456 / 23.21 dB", "0.471 / 23.17 dB", "0.480 / 22.23 dB")),
         ("gauss-deblur", ("0.325 / 25.11 dB", "0.392 / 24.91 dB", "0.377 / 25.44 dB", "0.376 / 25.42 dB", "0.506 / 22.45 dB")),
         ("motion-deblur", ("0.360 / 24.79 dB", "0.441 / 23.32 dB", "0.403 / 24.35 dB", "0.398 / 24.21 dB", "0.475 / 21.37 dB")),
         ("inpaint-freeform", ("0.229 / 21.99 dB", "0.332 / 21.54 dB", "0.294 / 21.12 dB", "0.251 / 20.92 dB", "0.313 / 23.28 dB")),
         ("inpaint-random", (None,) * 5))
     for m, label, figures in zip(("p2l", "ldps", "gmldps", "psld", "ldir", "dps", "dds", "diffpir", "tv-admm",
                                   "pnp-admm"),
                                  ("P2L", "LDPS", "GML-DPS", "PSLD", "LDIR", "DPS (ADM, 1000 steps)",
                                   "DDS (ADM, 100 steps)", "DiffPIR (ADM, 100 steps)", None, None),
                                  per_method + PAPER_PIXEL.get(task, (None,) * 3) + (None, None))
     ] + [
    ("table5", "sr4-avg", "ldps", "neither (LDPS)", "FID 78.68 / 23.49 dB"),
    ("table5", "sr4-avg", "ldps-pt", "prompt tuning only", "FID 76.40 / 23.52 dB"),
    ("table5", "sr4-avg", "p2l-proj-only", "projection only (rows 3-4)", "FID 74.22, 74.01 / 23.16, 23.32 dB"),
    ("table5", "sr4-avg", "p2l", "both, proximal (P2L)", "FID 70.08 / 23.48 dB"),
    ("table5", "sr4-avg", "p2l-gluing", "gluing vs proximal, FFHQ SR, sigma 0.01", "FID 56.47 vs 55.68 / 26.39 vs 26.43 dB"),
    ("table5", "sr4-avg", "p2l-adam-carry", None, None),
]


def method_spec(name: str, task: str, classes, labels, names):
    """``(solver class, config, prompt)`` of a method on ``task`` for the images ``names``
    (``labels``: their classes among ``classes``); ``prompt`` is None (the solver's), one string
    or one per image. The ADMM baselines are their ``Dataset.CIFAR10`` presets (iterations
    included)."""
    import diffprior.solvers as S

    wrong = (labels + 1 + np.array([seed_of(n) % (len(classes) - 1) for n in names])) % len(classes)
    if name == "ldps-pt":  # LDPS's preset plus prompt tuning (K and lr searched for it), from LDPS's prompt
        from diffprior.tasks import TASKS

        return S.LDPS, S.LDPSConfig.with_prompt_tuning(S.Task(TASKS[task].solver_task)), None
    if name.startswith("ldps"):
        cfg = solver_config(S.LDPS, task)
        prompt = {"ldps": None, "ldps-photo": "a photo",
                  "ldps-oracle": [f"a photo of a {classes[k]}" for k in labels],
                  "ldps-wrong": [f"a photo of a {classes[k]}" for k in wrong]}[name]
        return S.LDPS, cfg, prompt
    if name in ("gmldps", "psld", "ldir"):
        cls = {"gmldps": S.GMLDPS, "psld": S.PSLD, "ldir": S.LDIR}[name]
        return cls, solver_config(cls, task), None
    if name.startswith("p2l"):
        cfg = solver_config(S.P2L, task)
        change = {"p2l": {}, "p2l-photo": {}, "p2l-prompt-only": {"projection": None},
                  "p2l-proj-only": {"prompt": None},
                  "p2l-gluing": {"projection": S.GluingProjection(every=cfg.projection.every)},
                  "p2l-adam-carry": {"prompt": dataclasses.replace(cfg.prompt, reset=False)}}[name]
        return S.P2L, dataclasses.replace(cfg, **change), ("a photo" if name == "p2l-photo" else None)
    if name in ("tv-admm", "pnp-admm"):
        cls = {"tv-admm": S.TVADMM, "pnp-admm": S.PnPADMM}[name]
        return cls, solver_config(cls, task), None
    if name in PIXEL_STEPS:  # DiffPIR's rho_t needs the measurement noise: the benchmark's
        from _common import SIGMA

        cls = {"dps": S.DPS, "dds": S.DDS, "diffpir": S.DiffPIR}[name]
        return cls, solver_config(cls, task, **({"noise_sigma": SIGMA} if name == "diffpir" else {})), None
    raise KeyError(name)


def read_legacy_records(out: Path) -> list:
    """The previous format's per-image records, ``out/records.csv`` (columns :data:`FIELDS`, values
    as text; ``[]`` when there is none): read for the summaries, no longer written."""
    path = out / "records.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def result_files(out: Path) -> list:
    """The result files of ``out`` (``results/<task>__<method>.h5``)."""
    return sorted((out / "results").glob("*__*.h5"))


def config_digest(config_json: dict) -> str:
    """A short digest of a configuration's JSON (the ``config`` column of ``image_records.csv``)."""
    return hashlib.sha256(json.dumps(config_json, sort_keys=True).encode()).hexdigest()[:12]


def result_records(out: Path) -> list:
    """One record per done image of every result file of ``out`` whose configuration is today's
    preset, with the fields of :data:`IMAGE_FIELDS` (``steps`` None for the ADMM baselines, whose
    results do not depend on it)."""
    from diffprior.io import read_result

    rows = []
    stale = set(stale_results(out))
    for path in result_files(out):
        if path in stale:
            print(f"paper_tables: {path.name} ran with another configuration than today's preset: left out")
            continue
        r = read_result(path)
        h = r.hyperparameters
        if "method" not in h:
            continue
        nan = np.full(len(r.done), np.nan)
        digest = config_digest(h["config"]) if h.get("config") is not None else ""
        for n in np.flatnonzero(r.done):
            rows.append({"method": h["method"], "task": h["task"], "image": h["images"][n],
                         "seed": seed_of(h["images"][n]), "steps": h.get("steps"),
                         **{k: float(r.metrics.get(k, nan)[n]) for k in ("psnr", "ssim", "lpips", "peak_rss_mb")},
                         "nfe": int(h["nfe"]), "seconds": float(r.wall_time[n]),
                         **{k: float(v[n]) for k, v in r.metrics.items() if k in EXTRA}, "config": digest})
    return rows


def read_image_records(out: Path) -> list:
    """The committed per-image records of result files, ``out/image_records.csv`` (written by
    :func:`write_image_records`), keeping only rows whose configuration digest is today's preset
    (values as numbers; missing ones NaN)."""
    path = out / IMAGE_RECORDS
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    want = {}
    out_rows = []
    for r in rows:
        mt = (r["method"], r["task"])
        if mt not in want:
            try:
                want[mt] = config_digest(current_config(*mt))
            except KeyError:
                want[mt] = None
        if r["config"] != want[mt]:
            continue
        row = dict(r, steps=None if r["steps"] in ("", "None") else int(r["steps"]))
        for k in ("psnr", "ssim", "lpips", "peak_rss_mb", "seconds") + EXTRA:
            row[k] = float(r[k]) if r.get(k) not in (None, "") else float("nan")
        row["nfe"] = int(r["nfe"])
        out_rows.append(row)
    return out_rows


def write_image_records(out: Path, rows: list) -> None:
    """``out/image_records.csv``: the per-image records of the result files (the result files
    themselves, 3 MB each, stay out of the repository), so that the summaries can be rebuilt
    from a clone."""
    with open(out / IMAGE_RECORDS, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=IMAGE_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in sorted(rows, key=lambda r: (r["task"], r["method"], str(r["steps"]), r["image"])):
            w.writerow({k: ("" if v is None or (isinstance(v, float) and not np.isfinite(v)) else v)
                        for k, v in r.items()})


def new_records(out: Path) -> list:
    """The records of this format: the local result files', then the committed
    ``image_records.csv``'s for method/task pairs without a local result file."""
    new = result_records(out)
    local = {(r["method"], r["task"]) for r in new}
    return new + [r for r in read_image_records(out) if (r["method"], r["task"]) not in local]


def records(out: Path, steps: int | None = None) -> list:
    """Every per-image record of ``out``, newest first: the result files, then the committed
    ``image_records.csv`` (for method/task pairs without a local result file), then the legacy
    ``records.csv`` (a newer record replaces the legacy one of the same method, task, image and
    steps); with ``steps``, only records at that many DDIM steps (and the ADMM baselines')."""
    key = lambda r: (r["method"], r["task"], r["image"], None if r["steps"] in (None, "") else int(r["steps"]))
    new = new_records(out)
    seen = {key(r) for r in new}
    legacy = read_legacy_records(out)
    if (out / "legacy_configs.json").exists():  # only the rows whose configuration is today's
        carried = legacy_carried(out)
        legacy = [r for r in legacy if (r["method"], r["task"]) in carried]
    # a legacy record of an ADMM baseline carries the run's steps: replaced by a result at any steps
    seen_any = {k[:3] for k in seen if k[3] is None}
    rows = [r for r in legacy if key(r) not in seen and key(r)[:3] not in seen_any] + new
    if steps is not None:  # the pixel solvers keep their own steps (one result file per method and task)
        rows = [r for r in rows if r["steps"] in (None, "") or int(r["steps"]) == steps or r["method"] in PIXEL_STEPS]
    return rows


def legacy_agreement(out: Path, steps: int | None = None) -> list:
    """For every (method, task) of the previous format re-run on some of its images (e.g. for the
    residual column): how far the re-run's per-image LPIPS and PSNR are from the legacy records of
    the same images, ``{"method", "task", "n", "lpips_max", "psnr_max"}`` (maximum absolute
    differences; 0 when the re-run reproduces them exactly). Only pairs whose legacy configuration
    is today's (:func:`legacy_carried`) are compared."""
    legacy = read_legacy_records(out)
    if not legacy:
        return []
    carried = legacy_carried(out) if (out / "legacy_configs.json").exists() else None
    key = lambda r: (r["method"], r["task"], r["image"])
    old = {key(r): r for r in legacy if carried is None or (r["method"], r["task"]) in carried}
    if steps is not None:
        old = {k: r for k, r in old.items() if r["steps"] in (None, "") or int(r["steps"]) == steps}
    pairs = {}
    for r in new_records(out):
        o = old.get(key(r))
        if o is not None:
            pairs.setdefault((r["method"], r["task"]), []).append(
                (abs(float(r["lpips"]) - float(o["lpips"])), abs(float(r["psnr"]) - float(o["psnr"]))))
    return [{"method": m, "task": t, "n": len(d), "lpips_max": max(a for a, _ in d), "psnr_max": max(b for _, b in d)}
            for (m, t), d in sorted(pairs.items())]


def provenance() -> dict:
    """What every result depends on besides its own configuration: the weights (fingerprint) of
    the bundled prior it ran on (the pixel methods record the pixel prior's, see ``main``). Each
    result file records its solver configuration (``config``), so a change of the presets of
    :mod:`diffprior.solvers.tuned` touches only the methods it changes (see
    :func:`current_config` and :func:`stale_results`)."""
    return {"prior": prior_fingerprint()}


def _stored_hyperparameters(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["hyperparameters"])


def check_provenance(out: Path, now: dict) -> None:
    """Refuse to add results to ``out`` when those already there came from other weights: the
    ``provenance`` of its result files' hyperparameters, and the previous format's
    ``out/run.json`` (written by the run that made ``records.csv``)."""
    path = out / "run.json"
    if path.exists():
        was = json.loads(path.read_text()).get("prior")
        if was != now["prior"]:
            raise SystemExit(f"{out} holds records made with other weights ({was}; now {now['prior']}): "
                             f"pass another --out, or delete {out} to start again")
    elif (out / "records.csv").exists():
        raise SystemExit(f"{out}/records.csv has no run.json naming the weights it came from: "
                         f"pass another --out, or delete {out} to start again")
    for f in result_files(out):
        h = _stored_hyperparameters(f)
        if h.get("method") in PIXEL_STEPS:  # the pixel prior's weights: checked when the method runs
            continue
        was = (h.get("provenance") or {}).get("prior")
        if was != now["prior"]:
            raise SystemExit(f"{f} was made with other weights ({was}; now {now['prior']}): "
                             f"pass another --out, or delete {out} to start again")


def current_config(method: str, task: str) -> dict:
    """The JSON configuration ``method`` runs with on ``task`` under today's presets."""
    n = 1
    _, cfg, _ = method_spec(method, task, [""] * 10, np.zeros(n, np.int64), ["x"] * n)
    return cfg.to_json()


def legacy_carried(out: Path) -> set:
    """The ``(method, task)`` pairs of the previous format's ``records.csv`` whose configuration
    is today's: ``out/legacy_configs.json`` holds the configuration each legacy row ran with
    (written by ``benchmarks/legacy_configs.py`` from the presets of the commit named in
    ``run.json``), and only rows whose configuration equals :func:`current_config` are summarised."""
    path = out / "legacy_configs.json"
    if not path.exists():
        return set()
    was = json.loads(path.read_text())["configs"]
    carried = set()
    for key, cfg in was.items():
        task, method = key.split("__")
        try:
            if cfg == current_config(method, task):
                carried.add((method, task))
        except KeyError:  # a method no table runs any more
            pass
    return carried


def stale_results(out: Path) -> list:
    """Result files whose configuration is not today's preset (left out of the summaries)."""
    stale = []
    for f in result_files(out):
        h = _stored_hyperparameters(f)
        if "method" not in h or h.get("config") is None:
            continue
        try:
            if h["config"] != current_config(h["method"], h["task"]):
                stale.append(f)
        except KeyError:
            pass
    return stale


def embedding_drift(prior, classes, labels):
    """``solver_metrics`` for the prompt-tuning methods: per image, how far the tuned embedding
    :math:`c_T` moved, ``emb_drift`` :math:`= \\|c_T - c_0\\| / \\|c_0\\|`; how it stands to the
    embedding :math:`e_k` of "a photo of a <class k>" of the image's true class,
    ``emb_to_class`` :math:`= \\|c_T - e_{true}\\| / \\|c_0 - e_{true}\\|` (below 1: it moved
    towards it); and ``emb_nearest_true``, 1 when the nearest of the class embeddings is the
    true class's."""
    import jax.numpy as jnp

    e = np.asarray(prior.embed([f"a photo of a {c}" for c in classes]), np.float64)  # (K, L, D)
    labels = np.asarray(labels)

    def metrics(solver, idx):
        c = np.asarray(solver.state.emb, np.float64)
        c0 = np.asarray(solver.data.emb0, np.float64)
        norm = lambda a: np.sqrt(np.sum(a.reshape(a.shape[0], -1) ** 2, axis=1))
        true = e[labels[idx]]
        dist = np.sqrt(((c[:, None] - e[None]) ** 2).reshape(len(c), len(e), -1).sum(-1))  # (B, K)
        return {"emb_drift": norm(c - c0) / norm(c0),
                "emb_to_class": norm(c - true) / np.maximum(norm(c0 - true), 1e-12),
                "emb_nearest_true": (dist.argmin(axis=1) == labels[idx]).astype(np.float64)}

    del jnp
    return metrics


def run_method(prior, name, task, val, problem, steps, batch, out: Path, spec=None, now: dict | None = None):
    """Solve ``problem`` (the task on the images ``val``) with one method into
    ``out/results/<task>__<method>.h5``, resuming from its pending images."""
    cls, cfg, prompt = spec or method_spec(name, task, val.classes, val.labels, val.names)
    hyper = {"method": name, "task": task, "config": cfg.to_json(), "prompt": prompt,
             "nfe": nfe_per_image(cfg, steps) if cls.uses_prior else 0, "images": list(val.names),
             "keys": "image_keys", "provenance": now or provenance()}
    if cls.uses_prior:
        hyper["steps"] = int(steps)
    drift = embedding_drift(prior, val.classes, val.labels) if name in PROMPT_TUNED else None
    run_result(out / "results" / f"{task}__{name}.h5", problem, cls, cfg, hyperparameters=hyper,
               prior=prior if cls.uses_prior else None, steps=steps, keys=image_keys(val.names), batch=batch,
               prompt=prompt, solver_metrics=drift, label=f"{name} {task}")


def summarize(out: Path, steps: int) -> list:
    recs = records(out, steps)
    if result_files(out):  # keep the committed per-image records in step with the result files
        write_image_records(out, [r for r in records(out) if "config" in r])
    groups = {}
    for r in recs:
        groups.setdefault((r["method"], r["task"]), []).append(r)
    rows = []
    for (m, t), rs in sorted(groups.items()):
        f = lambda k: np.array([float(r[k]) for r in rs])
        row = {"method": m, "task": t, "n": len(rs), "failed": int(np.isnan(f("psnr")).sum())}
        for k in ("psnr", "ssim", "lpips"):
            v = f(k)[~np.isnan(f(k))]
            row[k], row[k + "_se"] = float(v.mean()) if len(v) else float("nan"), se(v)
        # a failed sample's record has NaN metrics (its peak memory too): the other samples' peak
        row["nfe"], row["seconds"], rss = int(f("nfe")[0]), float(f("seconds").mean()), f("peak_rss_mb")
        row["peak_rss_mb"] = float(np.nanmax(rss)) if np.isfinite(rss).any() else float("nan")
        row["steps"] = rs[0]["steps"]
        for k in EXTRA:  # only result files have them; NaN for legacy rows
            v = np.array([float(r[k]) for r in rs if k in r])
            v = v[np.isfinite(v)]
            row[k], row[k + "_se"] = (float(v.mean()), se(v)) if len(v) else (float("nan"), float("nan"))
            row[k + "_n"] = len(v)  # fewer than n: a legacy row partly re-run for its residual
        row["noise_floor"] = noise_floor_of(t)
        rows.append(row)
    with open(out / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]) if rows else ["method"])
        w.writeheader()
        w.writerows(rows)
    (out / "summary.md").write_text(to_markdown(rows, steps, legacy_agreement(out, steps), paired(recs)))
    (out / "claims.md").write_text(claims_markdown(rows, steps))
    return rows


def paired(recs: list) -> list:
    """The :data:`PAIRS` on the records ``recs``: per task where both methods ran, over their
    common images, the mean difference (first minus second) of LPIPS and PSNR ± its standard
    error and how many images the first is better on (lower LPIPS)."""
    by = {}
    for r in recs:
        by.setdefault((r["method"], r["task"]), {})[r["image"]] = r
    out = []
    for a, b in PAIRS:
        for t in TASKS:
            ra, rb = by.get((a, t)), by.get((b, t))
            common = sorted(set(ra or ()) & set(rb or ()))
            if not common:
                continue
            d = {k: np.array([float(ra[i][k]) - float(rb[i][k]) for i in common]) for k in ("lpips", "psnr")}
            ok = np.isfinite(d["lpips"]) & np.isfinite(d["psnr"])
            out.append({"first": a, "second": b, "task": t, "n": int(ok.sum()),
                        **{f"d_{k}": float(v[ok].mean()) for k, v in d.items()},
                        **{f"d_{k}_se": se(v[ok]) for k, v in d.items()},
                        "better": int((d["lpips"][ok] < 0).sum()), "equal": int((d["lpips"][ok] == 0).sum())})
    return out


def noise_floor_of(task: str) -> float:
    """:math:`\\sigma\\sqrt{m}` of a task on the 32 x 32 benchmark images (the residual the
    ground truth itself leaves, ``m`` values per measurement)."""
    from _common import SIGMA, build_operator

    from diffprior.metrics import noise_floor

    return noise_floor(SIGMA, build_operator(task, (32, 32, 3)).output_shape)


def _fit(r) -> str:
    """The residual cell: mean ± s.e., with its own number of images when only some of the row's
    images have it (a legacy row re-run on its first images), or "-" when none has."""
    if not np.isfinite(r.get("residual", np.nan)):
        return "-"
    n = int(r.get("residual_n", r["n"]))
    return f"{r['residual']:.3f} ± {r['residual_se']:.3f}" + (f" (n = {n})" if n < r["n"] else "")


def claims_markdown(rows, steps) -> str:
    """``claims.md``: each row of :data:`PAPER` (the paper's ImageNet figures) beside ours
    (LPIPS ± standard error / PSNR, and the number of images); rows we have not run say so."""
    by = {(r["method"], r["task"]): r for r in rows}
    heads = {"table1": "Table 1: fixed prompts against the tuned prompt (LDPS; LPIPS / PSNR)",
             "table23": "Tables 2-3: the solvers (LPIPS / PSNR)",
             "table5": "Table 5: the ablation on SR (paper: FID / PSNR; ours: LPIPS / PSNR)"}
    lines = [f"# The paper's claims: its ImageNet figures beside ours ({steps} DDIM steps)", "",
             "Produced by `python benchmarks/paper_tables.py` (rows: `PAPER` in the script). Paper: Stable "
             "Diffusion v1.4 at 512 px, 1000 DDIM steps, ImageNet test images. Ours: the bundled CIFAR-10 prior, "
             "32 px validation images, LPIPS on images resized to 64 px, mean ± standard error over n images; "
             "DPS, DDS and DiffPIR on the bundled pixel prior (a DDPM trained on the same images), at the steps "
             "their rows name.", ""]
    for table in TABLES:
        lines += [f"## {heads[table]}", "", "| task | our method | the paper's row | paper | ours | \\|y-Ax\\| "
                  "(sigma sqrt(m)) | n |", "|---|---|---|---|---|---|---|"]
        for t, task, m, label, theirs in (p for p in PAPER if p[0] == table):
            r = by.get((m, task))
            ours = f"{r['lpips']:.4f} ± {r['lpips_se']:.4f} / {r['psnr']:.2f} dB" if r else "not run"
            fit = f"{_fit(r)} ({r['noise_floor']:.3f})" if r else ""
            n = (f"{r['n']}" + (f" ({r['failed']} failed: not in the means)" if r.get("failed") else "")) if r else "0"
            lines.append(f"| {task} | {_label(r) if r else m} | {label if theirs else '(not in the paper)'} | {theirs or ''} | {ours} "
                         f"| {fit} | {n} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _label(r) -> str:
    """A row's method, with its own step count for the pixel solvers (which do not run ``--steps``)."""
    return f"{r['method']} ({r['steps']} steps)" if r["method"] in PIXEL_STEPS and r.get("steps") else r["method"]


def to_markdown(rows, steps, agreement=(), pairs=()) -> str:
    by = {(r["method"], r["task"]): r for r in rows}
    tasks = [t for t in TASKS if any(k[1] == t for k in by)]
    lines = [f"# Paper-claims benchmark on the bundled prior ({steps} DDIM steps, sigma = 0.005)", "",
             "Produced by `python benchmarks/paper_tables.py`. Mean ± standard error over images; "
             "`nfe`: UNet evaluations per image; `s/img`: wall seconds per image on this machine, solving only "
             "(batches of `--batch` images; compilation, once per method and task, excluded); "
             "`RSS`: peak resident memory of the process during the method's batches (MB); "
             "`|y-Ax|`: the measurement residual of the reconstruction (image units), beside `sigma sqrt(m)`, "
             "the residual the ground truth itself leaves (`-`: a row carried from the previous records format, "
             "which did not keep it; `(n = k)`: the mean over the row's first k images, re-run for it, the "
             "other images' records being that format's).", ""]
    for table, methods in TABLES.items():
        lines += [f"## {table}", "", "| task | method | n | LPIPS | PSNR | SSIM | \\|y-Ax\\| | sigma sqrt(m) | nfe "
                  "| s/img | RSS |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        # a table lists its own tasks, and others only where one of its own methods ran there
        # (``--all-tasks``): not LDPS's free-form row under Table 1 just because Tables 2-3 ran it
        own = set(methods) - {m for other, ms in TABLES.items() if other != table for m in ms}
        for t in tasks:
            if t not in TABLE_TASKS[table] and not any((m, t) in by for m in own):
                continue
            for m in methods:
                r = by.get((m, t))
                if r:
                    lines.append(f"| {t} | {_label(r)} | {r['n']}{' (' + str(r['failed']) + ' failed)' if r['failed'] else ''} | "
                                 f"{r['lpips']:.4f} ± {r['lpips_se']:.4f} | {r['psnr']:.2f} ± {r['psnr_se']:.2f} | "
                                 f"{r['ssim']:.3f} ± {r['ssim_se']:.3f} | {_fit(r)} | {r['noise_floor']:.3f} | "
                                 f"{r['nfe']} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} |")
        lines.append("")
    drift = [r for r in rows if np.isfinite(r.get("emb_drift", np.nan))]
    if drift:
        lines += ["## prompt drift", "",
                  "The tuned embedding c_T against its start c_0 and the embeddings e_k of \"a photo of a <class k>\": "
                  "`drift` = |c_T - c_0| / |c_0|; `to true class` = |c_T - e_true| / |c_0 - e_true| (below 1: "
                  "moved towards the image's own class prompt); `nearest is true` = share of images whose nearest "
                  "class embedding is their own class's (chance 0.1).", "",
                  "| task | method | n | drift | to true class | nearest is true |", "|---|---|---|---|---|---|"]
        for r in sorted(drift, key=lambda r: (TASKS.index(r["task"]), r["method"])):
            lines.append(f"| {r['task']} | {r['method']} | {r['n']} | {r['emb_drift']:.3f} ± {r['emb_drift_se']:.3f} | "
                         f"{r['emb_to_class']:.3f} ± {r['emb_to_class_se']:.3f} | {r['emb_nearest_true']:.2f} |")
        lines.append("")
    if pairs:
        lines += ["## paired differences", "",
                  "First method minus second, image by image over the images both ran: mean ± standard error "
                  "(negative LPIPS: the first is better); `better`: images where the first has the lower LPIPS "
                  "(`equal`: identical LPIPS).", "",
                  "| task | first - second | images | d LPIPS | d PSNR (dB) | better | equal |",
                  "|---|---|---|---|---|---|---|"]
        for p in sorted(pairs, key=lambda p: TASKS.index(p["task"])):
            lines.append(f"| {p['task']} | {p['first']} - {p['second']} | {p['n']} | {p['d_lpips']:+.4f} ± "
                         f"{p['d_lpips_se']:.4f} | {p['d_psnr']:+.2f} ± {p['d_psnr_se']:.2f} | {p['better']} | "
                         f"{p['equal']} |")
        lines.append("")
    if agreement:
        lines += ["## legacy rows re-run", "",
                  "Rows of the previous records format re-run on their first images (for the residual): the "
                  "largest difference, image by image, between the re-run and the legacy record of the same "
                  "image (0: reproduced exactly).", "",
                  "| task | method | images | max \\|d LPIPS\\| | max \\|d PSNR\\| (dB) |", "|---|---|---|---|---|"]
        for a in sorted(agreement, key=lambda a: (TASKS.index(a["task"]), a["method"])):
            lines.append(f"| {a['task']} | {a['method']} | {a['n']} | {a['lpips_max']:.2g} | {a['psnr_max']:.2g} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def example_images(out: Path, task: str, method: str, count: int) -> dict:
    """The reconstructions of images ``0 .. count - 1`` of a method on a task: from its result
    file, else from the previous format's ``examples/*.npz``."""
    from diffprior.io import read_result

    path = out / "results" / f"{task}__{method}.h5"
    if path.is_file():
        r = read_result(path)
        return {i: r.reconstruction[i] for i in range(min(count, len(r.done))) if r.done[i]}
    files = sorted((out / "examples").glob(f"{task}__{method}__*.npz"))
    return {int(i): x for fh in files for x, i in zip(np.load(fh)["x"], np.load(fh)["index"]) if int(i) < count}


def figure(out: Path, val, ys, methods) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TASKS if t in ys]
    examples = {(t, m): example_images(out, t, m, 2) for t in tasks for m in methods}
    cols = ["measurement"] + list(methods) + ["ground truth"]
    fig, axes = plt.subplots(len(tasks) * 2, len(cols), figsize=(1.2 * len(cols), 2.6 * len(tasks)), squeeze=False)
    for ti, t in enumerate(tasks):
        for r in range(2):
            row = axes[ti * 2 + r]
            if r >= len(ys[t]):  # fewer than two images (--n 1)
                for ax in row:
                    ax.axis("off")
                continue
            y = ys[t][r]
            meas = y if y.shape == val.images.shape[1:] else np.repeat(np.repeat(y, 32 // y.shape[0], 0), 32 // y.shape[1], 1)
            panels = [meas]
            for m in methods:
                panels.append(examples[t, m].get(r, np.full_like(val.images[0], np.nan)))
            panels.append(val.images[r])
            for c, p in enumerate(panels):
                row[c].imshow(np.clip(np.nan_to_num(p), 0, 1), interpolation="nearest")
                row[c].set_xticks([])
                row[c].set_yticks([])
                if ti == 0 and r == 0:
                    row[c].set_title(cols[c], fontsize=6)
            row[0].set_ylabel(t if r == 0 else "", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "examples.png", dpi=110)
    plt.close(fig)


def speed_settings(steps: int) -> list:
    """P2L's (steps, K, prompt-tuning period) settings of the cost/quality curve; the first,
    twice the benchmark's steps with the preset's K, is the reference ("longest run")."""
    half = max(5, steps // 2)
    return [(2 * steps, 3, 1), (steps, 3, 1), (steps, 1, 1), (steps, 3, 2), (steps, 3, 4), (half, 3, 1), (half, 1, 1)]


def speed_name(steps: int, k: int, every: int) -> str:
    return f"p2l-s{steps}-k{k}" + (f"-e{every}" if every > 1 else "")


def speed_curve(prior, val, task, problem, out: Path, batch: int, settings, now: dict | None = None) -> None:
    """P2L at (steps, K, period) settings, recorded as method :func:`speed_name`."""
    import diffprior.solvers as S

    for steps, k, every in settings:
        cfg = solver_config(S.P2L, task).override({"prompt.iters": k, "prompt.every": every})
        run_method(prior, speed_name(steps, k, every), task, val, problem, steps, batch, out,
                   spec=(S.P2L, cfg, None), now=now)


def plot_speed(out: Path, task: str, steps: int) -> None:
    """``speed.png`` (LPIPS vs wall time per image) and ``speed.md``: each P2L setting's cost and
    quality, and the cheapest one within one standard error of the reference (longest) run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in records(out) if r["task"] == task
            and (r["method"].startswith("p2l-s") or r["method"] == "ldps" and int(r["steps"]) == steps)]
    # LDPS on the curve's own images only, so that every point is a mean over the same images
    curve = {r["image"] for r in recs if r["method"].startswith("p2l-s")}
    recs = [r for r in recs if r["method"] != "ldps" or r["image"] in curve]
    groups = {}
    for r in recs:
        groups.setdefault((r["method"], int(r["steps"])), []).append(r)
    if not groups:
        return
    stats = {}
    for key, rs in groups.items():
        lp = np.array([float(r["lpips"]) for r in rs])
        lp = lp[np.isfinite(lp)]
        stats[key] = {"n": len(lp), "lpips": float(lp.mean()), "se": se(lp),
                      "seconds": float(np.mean([float(r["seconds"]) for r in rs])), "nfe": int(rs[0]["nfe"])}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for (m, s_), st in sorted(stats.items()):
        ax.errorbar(st["seconds"], st["lpips"], yerr=st["se"], fmt="o" if m.startswith("p2l") else "s", capsize=2)
        ax.annotate(m if m.startswith("p2l") else f"{m} ({s_} steps)", (st["seconds"], st["lpips"]), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("wall seconds per image, solving only")
    ax.set_ylabel("LPIPS (lower is better)")
    ax.set_title(f"P2L cost vs quality, {task}")
    fig.tight_layout()
    fig.savefig(out / "speed.png", dpi=120)
    plt.close(fig)

    ref_key = (speed_name(*speed_settings(steps)[0]), speed_settings(steps)[0][0])
    lines = [f"# P2L cost and quality on {task}", "",
             "Produced by `python benchmarks/paper_tables.py --speed`. Settings `p2l-s<steps>-k<K>[-e<m>]`: "
             "DDIM steps, prompt-tuning iterations K, prompt tuned every m-th step. Mean LPIPS ± standard error; "
             "seconds per image, solving only.", "",
             "| setting | n | LPIPS | s/img | UNet evaluations | within 1 s.e. of the reference |", "|---|---|---|---|---|---|"]
    ref = stats.get(ref_key)
    for (m, s_), st in sorted(stats.items(), key=lambda kv: -kv[1]["seconds"]):
        ok = "" if ref is None or not m.startswith("p2l") else ("reference" if (m, s_) == ref_key
                                                                  else "yes" if st["lpips"] <= ref["lpips"] + ref["se"] else "no")
        lines.append(f"| {m if m.startswith('p2l') else f'{m} ({s_} steps)'} | {st['n']} | {st['lpips']:.4f} ± {st['se']:.4f} "
                     f"| {st['seconds']:.2f} | {st['nfe']} | {ok} |")
    if ref is not None:
        good = [(st["seconds"], m) for (m, s_), st in stats.items()
                if m.startswith("p2l") and st["lpips"] <= ref["lpips"] + ref["se"]]
        if good:
            secs, m = min(good)
            lines += ["", f"Cheapest setting within one standard error of the reference `{ref_key[0]}` "
                      f"({ref['lpips']:.4f} ± {ref['se']:.4f}): **`{m}`**, {secs:.2f} s per image "
                      f"({ref['seconds'] / secs:.1f}x cheaper)."]
    (out / "speed.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="CIFAR-10 archive (default ../shared/data/cifar10/train.tar.gz)")
    p.add_argument("--n", type=int, default=10, help="evaluation images per task (first files of every class)")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps of every diffusion method")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="run only these of the tables' methods (e.g. to split one task between two "
                        "processes, one per core, with disjoint method lists)")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--pixel-steps", nargs="+", default=[], metavar="METHOD=N",
                   help="steps of the pixel-space solvers (default: the paper's, " +
                        ", ".join(f"{k}={v}" for k, v in PIXEL_STEPS.items()) + ")")
    p.add_argument("--speed", action="store_true", help="also run the P2L cost/quality curve on sr4-avg")
    p.add_argument("--speed-n", type=int, default=50, help="images of the cost/quality curve (the first of --n)")
    p.add_argument("--all-tasks", action="store_true", help="run every table on every task (default: the paper's "
                   "tasks per table, TABLE_TASKS)")
    p.add_argument("--out", default=str(RESULTS / "paper_tables"))
    p.add_argument("--summary-only", action="store_true",
                   help="only rewrite summary.csv/summary.md/claims.md from the results already in --out (its "
                        "result files and a previous format's records.csv; no solving; e.g. while a long run goes "
                        "on in other processes)")
    args = p.parse_args(argv)
    pixel_steps = dict(PIXEL_STEPS)
    for item in args.pixel_steps:
        m, _, n = item.partition("=")
        if m not in PIXEL_STEPS or not n.isdigit() or int(n) < 1:
            p.error(f"--pixel-steps takes METHOD=N with METHOD one of {sorted(PIXEL_STEPS)} and N >= 1, got {item!r}")
        pixel_steps[m] = int(n)
    known = {m for ms in TABLES.values() for m in ms}
    if args.methods is not None and not set(args.methods) <= known:
        p.error(f"unknown --methods {sorted(set(args.methods) - known)}; the tables' methods are {sorted(known)}")
    if args.summary_only:
        if not (Path(args.out) / "records.csv").is_file() and not result_files(Path(args.out)):
            raise SystemExit(f"paper_tables: no records.csv or results/*.h5 in {args.out}: nothing to summarise")
        rows = summarize(Path(args.out), args.steps)
        print(f"wrote {args.out}/summary.csv, summary.md ({len(rows)} method/task rows)")
        return

    from diffprior.prior import LatentDiffusionPrior

    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    now = provenance()
    check_provenance(out, now)
    val = evaluation_set(load_validation(*(args.data and [args.data] or [])), args.n)
    prior = LatentDiffusionPrior.bundled()
    methods = list(dict.fromkeys(m for t in args.tables for m in TABLES[t]))
    pixel = {}  # the bundled pixel prior and its provenance, loaded when a pixel method first runs

    def pixel_prior():
        if not pixel:
            prior_, fingerprint = bundled_prior("pixel")
            pixel.update(prior=prior_, now={"prior": fingerprint})
        return pixel["prior"], pixel["now"]
    ys = {}
    for task in args.tasks:
        problem = task_problem(task, val)
        ys[task] = problem.measurement
        for m in dict.fromkeys(m for t in args.tables for m in TABLES[t] if args.all_tasks or task in TABLE_TASKS[t]):
            if args.methods is not None and m not in args.methods:
                continue
            if m in PIXEL_STEPS:
                pprior, pnow = pixel_prior()
                run_method(pprior, m, task, val, problem, pixel_steps[m], args.batch, out, now=pnow)
                continue
            run_method(prior, m, task, val, problem, args.steps, args.batch, out, now=now)
        if args.speed and task == "sr4-avg":
            k = min(args.speed_n, len(val.names))
            sub = val.subset(np.arange(k))
            sub_problem = dataclasses.replace(problem, measurement=problem.measurement[:k],
                                              ground_truth=problem.ground_truth[:k], seeds=problem.seeds[:k],
                                              names=problem.names[:k])
            speed_curve(prior, sub, task, sub_problem, out, args.batch, speed_settings(args.steps), now=now)
            plot_speed(out, task, args.steps)
    rows = summarize(out, args.steps)
    figure(out, val, ys, [m for m in ("ldps", "psld", "ldir", "dps", "dds", "diffpir", "tv-admm", "p2l") if m in methods])
    print((out / "summary.md").read_text())
    print(f"wrote {out}/summary.csv, summary.md, examples.png ({len(rows)} method/task rows)")


if __name__ == "__main__":
    main()
