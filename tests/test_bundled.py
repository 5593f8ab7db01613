"""The prior shipped inside the package: it loads with no network, fits the size budget, and
the figures committed about it (validation results, searched presets) are of these weights."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from diffprior import bundled_path
from diffprior.prior import LatentDiffusionPrior, weights_fingerprint

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def test_bundled_prior_loads_offline_and_round_trips(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    prior = LatentDiffusionPrior.bundled()
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3))
    z = prior.encode(x)
    assert z.shape == (2, 8, 8, 4)
    xr = prior.decode(z, clip=True)
    assert xr.shape == x.shape and bool(jnp.all(jnp.isfinite(xr)))
    emb = prior.embed(["a photo of a cat"])
    assert emb.shape[0] == 1 and bool(jnp.all(jnp.isfinite(emb)))


def test_bundled_prior_fits_the_size_budget():
    total = sum(f.stat().st_size for f in bundled_path().rglob("*") if f.is_file())
    assert total <= 25 * 2**20, f"{total / 2**20:.1f} MB"


def test_validation_figures_are_of_the_shipped_weights():
    """``benchmarks/results/prior_quality.json`` (and the model card copied from it) describe
    the weights in the package, not an earlier export."""
    res = json.loads((RESULTS / "prior_quality.json").read_text())
    assert res.get("fingerprint") == weights_fingerprint(bundled_path()), "rerun benchmarks/prior_quality.py"
    card = (bundled_path() / "MODEL_CARD.md").read_text()
    assert f"{res['vae_psnr']['mean']:.2f} dB" in card
    assert (bundled_path() / "samples.png").is_file()


def test_presets_were_searched_on_the_shipped_weights():
    """Every search on the diffusion prior behind ``diffprior.solvers.tuned`` ran on these weights
    (the ADMM baselines' searches do not use the prior)."""
    entries = json.loads((RESULTS / "tuning.json").read_text())
    latent = [e for e in entries if e["steps"] > 0]
    assert latent
    fp = weights_fingerprint(bundled_path())
    stale = [(e["solver"], e["task"], e["param"]) for e in latent if e.get("prior") != fp]
    assert not stale, f"searched on other weights (rerun benchmarks/tune_all.sh latent): {stale}"


@pytest.mark.parametrize("part", ["unet", "vae"])
def test_fingerprint_changes_with_the_weights(tmp_path, part):
    import shutil

    shutil.copytree(bundled_path(), tmp_path / "p")
    before = weights_fingerprint(tmp_path / "p")
    f = next((tmp_path / "p" / part).glob("*.safetensors"))
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    assert weights_fingerprint(tmp_path / "p") != before
    assert len(before) == 12


def test_paper_tables_refuses_to_mix_records_of_other_weights_or_presets(tmp_path, monkeypatch):
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import paper_tables

    now = paper_tables.provenance()
    assert now["prior"] == weights_fingerprint(bundled_path()) and len(now["presets"]) == 12
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    paper_tables.check_provenance(fresh, now)  # a new run records what it runs on
    assert json.loads((fresh / "run.json").read_text()) == now
    paper_tables.check_provenance(fresh, now)  # and resumes on the same
    with pytest.raises(SystemExit, match="other weights or presets"):
        paper_tables.check_provenance(fresh, {**now, "presets": "0" * 12})
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    (orphan / "records.csv").write_text("method,task\n")
    with pytest.raises(SystemExit, match="no run.json"):
        paper_tables.check_provenance(orphan, now)
    del sys.modules["paper_tables"]


def test_paper_tables_summary_only_rebuilds_the_tables_from_the_records(tmp_path, monkeypatch):
    """``--summary-only`` solves nothing: it rewrites summary.csv/md from records.csv (mean and
    standard error per method and task, only the records of the requested number of steps)."""
    import csv
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import paper_tables

    rows = [dict(method="ldps", task="sr4-avg", image=f"cat/{i}.jpg", seed=i, steps=25, psnr=20.0 + i, ssim=0.5,
                 lpips=0.2 + 0.1 * i, nfe=25, seconds=1.0, compile_s=0.0, peak_rss_mb=900) for i in range(3)]
    rows.append({**rows[0], "steps": 50, "lpips": 9.0})  # another step count: left out
    rows.append({**rows[0], "task": "inpaint-freeform"})  # a Tables 2-3 task: not listed under Table 1
    paper_tables._append(tmp_path / "records.csv", rows)
    paper_tables.main(["--summary-only", "--out", str(tmp_path), "--steps", "25"])
    free, row = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert (row["method"], row["task"], int(row["n"])) == ("ldps", "sr4-avg", 3)
    assert (free["task"], int(free["n"])) == ("inpaint-freeform", 1)
    assert float(row["lpips"]) == pytest.approx(0.3) and float(row["lpips_se"]) == pytest.approx(0.1 / 3 ** 0.5)
    md = (tmp_path / "summary.md").read_text()
    assert "| sr4-avg | ldps | 3 | 0.3000 ± 0.0577 |" in md
    table1, table23 = md.split("## table23")[0], md.split("## table23")[1].split("## table5")[0]
    assert "| inpaint-freeform | ldps |" not in table1 and "| inpaint-freeform | ldps |" in table23
    # claims.md: the paper's ImageNet figure beside ours, and the rows not run yet say so
    claims = (tmp_path / "claims.md").read_text()
    assert '| sr4-avg | ldps | "" | 0.397 / 23.49 dB | 0.3000 ± 0.0577 / 21.00 dB | 3 |' in claims
    assert "| gauss-deblur | p2l | P2L | 0.325 / 25.11 dB | not run | 0 |" in claims
    assert not (tmp_path / "run.json").exists()
    with pytest.raises(SystemExit, match="no records.csv"):
        paper_tables.main(["--summary-only", "--out", str(tmp_path / "missing")])
    del sys.modules["paper_tables"]


def test_paper_tables_refuses_an_unknown_method(tmp_path, monkeypatch, capsys):
    """``--methods`` (to split a task between processes) names only the tables' methods; a typo
    stops the run before anything is loaded or written."""
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import paper_tables

    with pytest.raises(SystemExit) as e:
        paper_tables.main(["--methods", "p2l", "p2L-gluing", "--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "p2L-gluing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    del sys.modules["paper_tables"]


def test_paper_tables_speed_curve_compares_the_same_images(tmp_path, monkeypatch):
    """``speed.md``: LDPS enters on the curve's own images only, and the cheapest P2L setting
    within one standard error of the reference (twice the steps) is named."""
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import paper_tables

    def rec(method, i, lpips, seconds, steps=25):
        return dict(method=method, task="sr4-avg", image=f"cat/{i}.jpg", seed=i, steps=steps, psnr=20.0, ssim=0.5,
                    lpips=lpips, nfe=25, seconds=seconds, compile_s=0.0, peak_rss_mb=900)

    rows = [rec("p2l-s50-k3", i, 0.25 + 0.01 * i, 18.0, 50) for i in range(4)]
    rows += [rec("p2l-s25-k1", i, 0.253 + 0.01 * i, 4.0) for i in range(4)]  # 0.268: within 1 s.e. (0.0065)
    rows += [rec("p2l-s12-k1", i, 0.40, 2.0, 12) for i in range(4)]  # cheaper but worse
    rows += [rec("ldps", i, 0.30 if i < 4 else 0.90, 2.0) for i in range(8)]  # 4 images off the curve
    paper_tables._append(tmp_path / "records.csv", rows)
    paper_tables.plot_speed(tmp_path, "sr4-avg", 25)
    md = (tmp_path / "speed.md").read_text()
    assert "| ldps (25 steps) | 4 | 0.3000 ± 0.0000 |" in md
    assert "| p2l-s12-k1 | 4 | 0.4000 ± 0.0000 | 2.00 | 25 | no |" in md
    assert "**`p2l-s25-k1`**, 4.00 s per image (4.5x cheaper)" in md
    assert (tmp_path / "speed.png").stat().st_size > 0
    del sys.modules["paper_tables"]


def test_prior_quality_restoration_resumes_and_does_not_depend_on_batching(tmp_path, monkeypatch):
    """The validation script's restoration check saves per-image scores after every batch,
    continues from them after an interruption, scores an image the same whichever batch it ran
    in (per-image noise and solver keys), and reports the tuning images' share separately."""
    import sys

    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import prior_quality as pq
    from _common import Validation

    names = ("airplane/4900.jpg", "bird/4995.jpg", "cat/4901.jpg")  # the second is a tuning image
    images = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    val = Validation(images, np.zeros(3, int), ("a",), names)
    prior = LatentDiffusionPrior.bundled()
    whole = pq.restore(prior, val, "sr4", 1, tmp_path / "whole.npz", chunk=3)

    real, batches = pq.run_latent, []

    def stops_on_the_second_batch(cls, config, y, *a, **k):
        batches.append(len(y))
        if len(batches) == 2:
            raise KeyboardInterrupt
        return real(cls, config, y, *a, **k)

    monkeypatch.setattr(pq, "run_latent", stops_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        pq.restore(prior, val, "sr4", 1, tmp_path / "parts.npz", chunk=2)
    with np.load(tmp_path / "parts.npz") as f:
        assert list(f["names"]) == list(names[:2])
    batches.clear()
    monkeypatch.setattr(pq, "run_latent", lambda cls, config, y, *a, **k: batches.append(len(y))
                        or real(cls, config, y, *a, **k))
    resumed = pq.restore(prior, val, "sr4", 1, tmp_path / "parts.npz", chunk=2)
    assert batches == [1]  # only the third image was left
    with np.load(tmp_path / "whole.npz") as a, np.load(tmp_path / "parts.npz") as b:
        for k in ("ldps.lpips", "ldps.psnr", "bicubic.lpips"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-4)
    assert resumed["n_images"] == 3 and resumed["held_out"]["n"] == 2
    with np.load(tmp_path / "parts.npz") as b:
        d = b["ldps.lpips"] - b["bicubic.lpips"]
    assert resumed["paired"]["lpips_ldps_minus_baseline"]["mean"] == pytest.approx(float(d.mean()), abs=1e-6)
    assert resumed["paired"]["ldps_better"] == pytest.approx(float((d < 0).mean()))
    assert resumed["ldps"]["lpips"]["mean"] == pytest.approx(whole["ldps"]["lpips"]["mean"], abs=1e-4)
    with pytest.raises(SystemExit, match="other images"):
        pq.restore(prior, val.subset([2, 1, 0]), "sr4", 1, tmp_path / "parts.npz", chunk=2)
    # two processes sharing the images out: the last to finish reports on all of them
    for bad in ("2/2", "1", "a/b"):
        with pytest.raises(SystemExit):
            pq.main(["--shard", bad])
    assert pq.restore(prior, val, "sr4", 1, tmp_path / "shared.npz", shard=(1, 2)) is None
    both = pq.restore(prior, val, "sr4", 1, tmp_path / "shared.npz", shard=(0, 2))
    assert both["n_images"] == 3 and both["held_out"]["n"] == 2
    assert both["ldps"]["lpips"]["mean"] == pytest.approx(whole["ldps"]["lpips"]["mean"], abs=1e-4)

    # sections run by separate processes end up in one file; other weights' figures are dropped
    out = tmp_path / "q.json"
    out.write_text(json.dumps({"fingerprint": "f1", "restoration": {"sr4": {"ldps": {}}, "n_images": 200}}))
    first = pq.merge_results(out, {"fingerprint": "f1", "n_validation": 3, "vae_psnr": {"mean": 27.0, "se": 0.1, "n": 3}})
    assert "restoration" not in first
    pq.merge_results(out, {"fingerprint": "f1", "n_validation": 3, "restoration": {"sr4": resumed}})
    box = {**resumed, "tv_admm": resumed["bicubic"]}
    merged = pq.merge_results(out, {"fingerprint": "f1", "n_validation": 3, "restoration": {"inpaint_box": box}})
    assert set(merged["restoration"]) == {"sr4", "inpaint_box"} and merged["vae_psnr"]["mean"] == 27.0
    md = out.with_suffix(".md").read_text()
    assert "| sr4 | 3 | 1, 1.0 | ldps |" in md and "| inpaint_box | 3 | 1, 1.0 | tv_admm |" in md and "(n = 2)" in md
    assert "- sr4: LDPS minus bicubic, image by image" in md
    assert "vae_psnr" not in pq.merge_results(out, {"fingerprint": "f2", "n_validation": 3})
    del sys.modules["prior_quality"]
