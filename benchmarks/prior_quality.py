"""Validation figures of a latent diffusion prior on the CIFAR-10 validation files.

Measures, on the project's validation split (files 4900-4999 of every class, never trained on):

1. autoencoder reconstruction PSNR (posterior mean, all validation images);
2. text conditioning: the UNet's noise-prediction MSE at t = 200 and t = 500 with the correct
   class prompt, the empty prompt and a wrong class prompt (same image, noise and t);
3. the prior at work: LDPS against bicubic upsampling on 4x super-resolution (average pooling)
   and against TV-regularised ADMM on box inpainting, in LPIPS (AlexNet; images resized to
   64 px first), PSNR and SSIM, at sigma = 0.005 (in [0, 1] units);
4. a grid of generated samples for each class prompt.

Results go to ``benchmarks/results/prior_quality.json`` and ``.md`` and the sample grid to
``benchmarks/results/prior_samples.png``. Usage::

    python benchmarks/prior_quality.py --data ../shared/data/cifar10/train.tar.gz [--prior PATH]
        [--n-restore 1000] [--steps 25] [--tasks sr4 inpaint_box] [--skip vae text restore samples]

The restoration checks took 26 min (SR) and 35 min (box inpainting, LDPS and TV-ADMM) of one
CPU core each for all 1000 images; run them as two processes (``--tasks``, one core each, the
other sections skipped in one of them) to halve the wall time, or split one task's images
between processes with ``--shard K/N``. Every section run is merged into the results file.

The restoration solves (LDPS, and TV-ADMM for box inpainting) go through the library's runner
(:func:`diffprior.runner.solve_problem`) into result files (:class:`diffprior.io.ResultWriter`),
one per task, method and shard: ``OUT/prior_quality_parts/<task>_<weights>_s<steps>[_rho<step>]
_n<images>__<method>[_<K>of<N>].h5``, holding every image's reconstruction and scores
(PSNR, SSIM, LPIPS, peak RSS), its wall time (solving only) and its per-step history. Each image
is appended as soon as it is done, and a rerun with the same arguments continues from the
file's pending images; a shard's file spans all the images but holds only its share (images
``K, K + N, ...``), one writer per file. Whichever shard finds every image done in the files of
all shards computes the figures (bicubic upsampling, no solver, is scored then). The previous
format (per-shard ``.npz`` score files in the same folder) is no longer read or written; the
committed figures in ``prior_quality.json`` stay until a task is run again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from _common import RESULTS, TUNING_FILES, Validation, _file_number, evaluation_set, image_keys, prior_fingerprint, \
    run_result, scores, se, task_problem


def _summary(a) -> dict:
    return {"mean": float(np.mean(a)), "se": se(a), "n": int(len(a))}


def vae_psnr(prior, images: np.ndarray, batch: int = 100) -> np.ndarray:
    from diffprior.metrics import psnr

    rec = jax.jit(lambda x: prior.decode(prior.encode(x), clip=True))
    out = [np.asarray(psnr(rec(jnp.asarray(images[i:i + batch])), jnp.asarray(images[i:i + batch])))
           for i in range(0, len(images), batch)]
    return np.concatenate(out)


def text_conditioning(prior, images, labels, classes, key, timesteps=(200, 500), batch: int = 100) -> dict:
    """Per-image eps-MSE with the correct, empty and a wrong class prompt at each ``t``."""
    from diffprior.schedule import add_noise

    prompts = [f"a photo of a {c}" for c in classes]
    class_emb = prior.embed(prompts)  # (K, L, D)
    null = prior.null_embedding
    rng = np.random.default_rng(0)
    wrong = (labels + rng.integers(1, len(classes), len(labels))) % len(classes)

    @jax.jit
    def mse(z0, noise, t, emb):
        zt = add_noise(prior.schedule, z0, noise, t)
        return jnp.mean((prior.eps(zt, t, emb) - noise) ** 2, axis=(1, 2, 3))

    out = {}
    for t in timesteps:
        rows = {"correct": [], "empty": [], "wrong": []}
        for i in range(0, len(images), batch):
            x = jnp.asarray(images[i:i + batch])
            z0 = prior.encode(x)
            noise = jax.random.normal(jax.random.fold_in(key, 1000 * t + i), z0.shape)
            tt = jnp.full((len(x),), t)
            lab, wr = labels[i:i + batch], wrong[i:i + batch]
            rows["correct"].append(np.asarray(mse(z0, noise, tt, class_emb[lab])))
            rows["empty"].append(np.asarray(mse(z0, noise, tt, jnp.repeat(null, len(x), 0))))
            rows["wrong"].append(np.asarray(mse(z0, noise, tt, class_emb[wr])))
        r = {k: np.concatenate(v) for k, v in rows.items()}
        out[str(t)] = {
            **{k: _summary(v) for k, v in r.items()},
            "frac_correct_below_empty": float(np.mean(r["correct"] < r["empty"])),
            "frac_correct_below_wrong": float(np.mean(r["correct"] < r["wrong"])),
            "holds": bool(r["correct"].mean() < r["empty"].mean() and r["correct"].mean() < r["wrong"].mean()),
        }
    return out


#: restoration check -> (task preset of ``diffprior.tasks``, solver task, baseline)
RESTORE_TASKS = {"sr4": ("sr4-avg", "sr", "bicubic"), "inpaint_box": ("inpaint-box", "inpaint", "tv_admm")}


def restoration_images(val, n: int):
    """All validation images when ``n`` covers them (the bar is stated on all 1000), else the
    class-balanced evaluation subset of ``_common.evaluation_set`` (no tuning images)."""
    return val if n >= len(val.names) else evaluation_set(val, n)


def _bicubic(problem) -> np.ndarray:
    """Bicubic upsampling of the problem's measurements to its images' size, clipped to [0, 1]."""
    y, shape = problem.measurement, problem.ground_truth.shape[1:]
    return np.clip(np.asarray(jax.image.resize(jnp.asarray(y), (len(y), *shape), "bicubic")), 0, 1)


def restore(prior, val, task: str, steps: int, parts: Path, chunk: int = 25, step_size: float | None = None,
            shard: tuple = (0, 1), fingerprint: str | None = None) -> dict | None:
    """LDPS (the task's CIFAR-10 preset, ``steps`` DDIM steps, ``step_size`` if given) against
    the task's baseline on ``val``, at sigma = 0.005, with per-image noise and solver keys
    (``_common.measure``, ``_common.image_keys``), so a figure does not depend on how the
    images were batched or shared out.

    SR x4 is the ``sr4-avg`` preset (average pooling); box inpainting the ``inpaint-box`` preset:
    DPS's and P2L's 128 x 128 box in 256 x 256 images, 16 px from the border, scaled to 32 px
    (16 x 16, 2 px from the border), one position for all images. The baselines: bicubic
    upsampling of the measurement, and TV-ADMM (its ``inpaint`` preset on ``Dataset.CIFAR10``: 50
    iterations, the searched weight), solved like LDPS.

    ``parts`` names the run (its suffix is ignored); each solver's results go to
    ``<parts>__<method>[_<k>of<n>].h5`` (:func:`result_path`), solved in batches of ``chunk``
    images, resumed from the file's pending images (a file of other images or settings is
    refused). ``shard = (k, n)`` runs images ``k, k + n, ...`` only, for one of ``n`` processes,
    into its own files. ``fingerprint`` (of the prior's weights) is recorded with LDPS's results.
    Returns the summary over all of ``val`` once every shard's images are done, else None.
    """
    from diffprior.io import read_result
    from diffprior.solvers import LDPS, TVADMM, Dataset, LDPSConfig, Task, TVADMMConfig

    preset, solver_task, base = RESTORE_TASKS[task]
    config = LDPSConfig.for_task(Task(solver_task), Dataset.CIFAR10)
    if step_size is not None:
        config = config.with_values({"step_size": step_size})
    k, n = shard
    problem = task_problem(preset, val)
    keys = image_keys(val.names)
    mine = np.arange(k, len(val.names), n)
    solvers = {"ldps": (LDPS, config)}
    if base == "tv_admm":
        solvers[base] = (TVADMM, TVADMMConfig.for_task(Task(solver_task), Dataset.CIFAR10))
    for m, (cls, cfg) in solvers.items():
        hyper = {"check": task, "method": m, "task": preset, "config": cfg.to_json(), "images": list(val.names),
                 "keys": "image_keys", **({"steps": int(steps), "prior": fingerprint}
                                          if cls.uses_prior else {})}
        run_result(result_path(parts, m, shard), problem, cls, cfg, hyperparameters=hyper,
                   prior=prior if cls.uses_prior else None, steps=steps, keys=keys, batch=chunk, indices=mine,
                   label=f"{task} {m}" + (f" shard {k}/{n}" if n > 1 else ""))
    # every shard's files, merged: per method, each image from the shard that did it
    every = {}
    for m in solvers:
        done = np.zeros(len(val.names), bool)
        wall = np.full(len(val.names), np.nan)
        mets = {q: np.full(len(val.names), np.nan) for q in ("psnr", "ssim", "lpips")}
        for j in range(n):
            path = result_path(parts, m, (j, n))
            if not path.is_file():
                continue
            r = read_result(path)
            take = r.done & ~done
            done |= r.done
            wall[take] = r.wall_time[take]
            for q in mets:
                mets[q][take] = r.metrics[q][take]
        if not done.all():
            print(f"{task}: shard {k + 1} of {n} done ({int(done.sum())} of {len(done)} images of {m}); the figures "
                  f"are written by the last shard to finish", flush=True)
            return None
        every.update({f"{m}.{q}": v for q, v in mets.items()})
        every[f"{m}_seconds"] = wall
    if base == "bicubic":
        every.update({f"{base}.{q}": np.asarray(v, np.float64) for q, v in
                      _scores_batched(_bicubic(problem), val.images, chunk).items()})
    every["names"] = np.asarray(val.names)
    held_out = np.array([_file_number(name) not in TUNING_FILES for name in every["names"]])
    res = {m: {q: _summary(every[f"{m}.{q}"]) for q in ("psnr", "ssim", "lpips")} for m in ("ldps", base)}
    res.update(n_images=int(len(val.names)), steps=steps, step_size=config.step_size,
               ldps_seconds_per_image=float(every["ldps_seconds"].mean()))
    diff = every["ldps.lpips"] - every[f"{base}.lpips"]
    res["paired"] = {"lpips_ldps_minus_baseline": _summary(diff), "ldps_better": float(np.mean(diff < 0))}
    if task == "inpaint_box":
        res["box_size"] = int(val.images.shape[1] // 2)
    if not held_out.all():
        # the tuning images (files 4995-4999) chose the presets: the figures without them
        res["held_out"] = {"n": int(held_out.sum()),
                           **{m: _summary(every[f"{m}.lpips"][held_out]) for m in ("ldps", base)}}
    return res


def _scores_batched(x: np.ndarray, gt: np.ndarray, batch: int) -> dict:
    parts = [scores(x[i:i + batch], gt[i:i + batch]) for i in range(0, len(x), batch)]
    return {q: np.concatenate([p[q] for p in parts]) for q in parts[0]}


def result_path(parts: Path, method: str, shard: tuple = (0, 1)) -> Path:
    """The result file of one solver (``method``) of a restoration run named ``parts``, for the
    shard ``(k, n)``: ``<parts without suffix>__<method>[_<k>of<n>].h5``."""
    k, n = shard
    return parts.with_name(f"{Path(parts.name).stem}__{method}" + (f"_{k}of{n}" if n > 1 else "") + ".h5")


def merge_results(path: Path, update: dict) -> dict:
    """Read ``path`` (if it describes the same weights), add ``update``'s sections (restoration
    task by task) and write it back, under a lock: two processes may each run some of the checks."""
    import fcntl

    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.is_file() else {}
        if old.get("fingerprint") != update["fingerprint"]:
            old = {}
        kept = {t: d for t, d in old.get("restoration", {}).items() if t in RESTORE_TASKS and "n_images" in d}
        restoration = {**kept, **update.pop("restoration", {})}  # (results of earlier layouts are dropped)
        merged = {k: v for k, v in {**old, **update}.items() if k != "restoration"}
        if restoration:
            merged["restoration"] = restoration
        path.write_text(json.dumps(merged, indent=2))
        path.with_suffix(".md").write_text(to_markdown(merged))
    return merged


def sample_grid(prior, classes, key, per_class: int = 8, steps: int = 50, guidance: float = 3.0) -> np.ndarray:
    from diffprior.sampling import sample

    rows = []
    for i, c in enumerate(classes):
        imgs = np.asarray(sample(prior, [f"a photo of a {c}"] * per_class, jax.random.fold_in(key, i),
                                 num_steps=steps, guidance_scale=guidance))
        rows.append(np.concatenate(list(imgs), axis=1))
    return np.concatenate(rows, axis=0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).parents[1] / ".." / "shared" / "data" / "cifar10" / "train.tar.gz"))
    p.add_argument("--prior", default=None, help="diffusers-layout folder (default: the bundled prior)")
    p.add_argument("--n-restore", type=int, default=1000,
                   help="validation images for the restoration checks (default: all 1000)")
    p.add_argument("--tasks", nargs="+", default=tuple(RESTORE_TASKS), choices=tuple(RESTORE_TASKS),
                   help="restoration checks to run (one process per task splits the work across cores)")
    p.add_argument("--steps", type=int, default=25, help="LDPS reverse steps (default 25, as the demo)")
    p.add_argument("--step-size", type=float, default=None,
                   help="LDPS's static step (default: the task's preset, searched at 25 steps)")
    p.add_argument("--shard", default="0/1", metavar="K/N",
                   help="run the K-th of N interleaved shares of the images (one process per core, K = 0..N-1, "
                        "same other arguments); the last to finish writes the figures")
    p.add_argument("--batch", type=int, default=25, help="images solved together by the restoration checks")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--skip", nargs="*", default=(), choices=("vae", "text", "restore", "samples"))
    args = p.parse_args(argv)
    try:
        shard = tuple(int(v) for v in args.shard.split("/"))
    except ValueError:
        shard = ()
    if len(shard) != 2 or not 0 <= shard[0] < shard[1]:
        p.error(f"--shard {args.shard}: expected K/N with 0 <= K < N")

    from PIL import Image

    from diffprior.data import read_dataset, split
    from diffprior.prior import LatentDiffusionPrior

    prior = LatentDiffusionPrior.from_pretrained(args.prior) if args.prior else LatentDiffusionPrior.bundled()
    _, val = split(read_dataset(args.data))
    images = val.as_float()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(0)
    fingerprint = prior_fingerprint(args.prior)
    results = {"prior": args.prior or "bundled", "fingerprint": fingerprint, "n_validation": len(val), "sigma": 0.005}
    if "vae" not in args.skip:
        results["vae_psnr"] = _summary(vae_psnr(prior, images))
        print(f"VAE PSNR: {results['vae_psnr']['mean']:.2f} dB")
    if "text" not in args.skip:
        results["text_conditioning"] = text_conditioning(prior, images, val.labels, val.classes, key)
        print(json.dumps(results["text_conditioning"], indent=1))
    if "restore" not in args.skip:
        ordered = Validation(images, np.asarray(val.labels), tuple(val.classes), tuple(val.names))
        ordered = restoration_images(ordered.subset(np.argsort(np.asarray(val.names))), args.n_restore)
        results["restoration"] = {}
        for task in args.tasks:
            rho = "" if args.step_size is None else f"_rho{args.step_size:g}"
            parts = out / "prior_quality_parts" / f"{task}_{fingerprint}_s{args.steps}{rho}_n{len(ordered.names)}"
            parts.parent.mkdir(exist_ok=True)
            r = restore(prior, ordered, task, args.steps, parts, chunk=args.batch, step_size=args.step_size,
                        shard=shard, fingerprint=fingerprint)
            if r is not None:
                results["restoration"][task] = r
                print(json.dumps(r, indent=1))
    if "samples" not in args.skip:
        grid = sample_grid(prior, val.classes, jax.random.fold_in(key, 11))
        Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8)).save(out / "prior_samples.png")
    merge_results(out / "prior_quality.json", results)
    print(f"wrote {out / 'prior_quality.json'}")


def to_markdown(r: dict) -> str:
    lines = ["# Bundled prior: validation figures", "",
             f"Produced by `python benchmarks/prior_quality.py` from the {r['n_validation']} CIFAR-10 validation images "
             "(files 4900-4999 of every class; the number each figure used is given with it)"
             + (f", weights `{r['fingerprint']}` (`diffprior.prior.weights_fingerprint`)." if "fingerprint" in r else "."),
             ""]
    if "vae_psnr" in r:
        v = r["vae_psnr"]
        lines += [f"- VAE reconstruction PSNR: **{v['mean']:.2f} dB** (± {v['se']:.2f} s.e., n = {v['n']})", ""]
    if "text_conditioning" in r:
        lines += ["| t | MSE correct | MSE empty | MSE wrong class | correct < empty | correct < wrong | holds |",
                  "|---|---|---|---|---|---|---|"]
        for t, d in r["text_conditioning"].items():
            lines.append(f"| {t} | {d['correct']['mean']:.4f} | {d['empty']['mean']:.4f} | {d['wrong']['mean']:.4f} | "
                         f"{d['frac_correct_below_empty']:.0%} | {d['frac_correct_below_wrong']:.0%} | {d['holds']} |")
        lines.append("")
    rr = {t: d for t, d in r.get("restoration", {}).items() if t in RESTORE_TASKS}
    if rr:
        lines += ["Restoration at sigma = 0.005 (LDPS: null prompt, the task's preset at the DDIM steps and static "
                  "step given; LPIPS ± s.e.; held out: without the 50 tuning images that chose the presets):", "",
                  "| task | images | LDPS steps, step | method | LPIPS | PSNR | SSIM | LPIPS, held out |",
                  "|---|---|---|---|---|---|---|---|"]
        for task, d in rr.items():
            for m in ("ldps", RESTORE_TASKS[task][2]):
                s, h = d[m], d.get("held_out", {}).get(m)
                lines.append(f"| {task} | {d['n_images']} | {d['steps']}, {d.get('step_size', '')} | {m} | {s['lpips']['mean']:.4f} ± "
                             f"{s['lpips']['se']:.4f} | {s['psnr']['mean']:.2f} | {s['ssim']['mean']:.3f} | "
                             + (f"{h['mean']:.4f} (n = {h['n']})" if h else "") + " |")
        lines.append("")
        for task, d in rr.items():
            if "paired" in d:
                pd = d["paired"]
                lines.append(f"- {task}: LDPS minus {RESTORE_TASKS[task][2]}, image by image: LPIPS "
                             f"{pd['lpips_ldps_minus_baseline']['mean']:+.4f} ± {pd['lpips_ldps_minus_baseline']['se']:.4f}; "
                             f"LDPS better on {pd['ldps_better']:.0%} of the images")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
