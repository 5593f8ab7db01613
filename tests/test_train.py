"""Training pipeline: data readers, exact resume, export to a loadable diffusers folder."""

import ast
import dataclasses
import json
import io
import tarfile
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest
from PIL import Image

from diffprior import data as D
from diffprior.models.config import UNetConfig, VAEConfig
import diffprior.train
from diffprior.train import checkpoint
from diffprior.train.autoencoder_io import VAETrainConfig, load_vae
from diffprior.train.ldm import LDMTrainConfig, run_ldm
from diffprior.train.tokenizer import build_vocab, save_tokenizer
from diffprior.train.vae import run_vae

CLASSES = ("cat", "dog")
TINY_VAE = VAEConfig(block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                     scaling_factor=1.0, sample_size=8)
TINY_UNET = UNetConfig(block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=(1, 1),
                       transformer_layers_per_block=(1, 1), num_attention_heads=(2, 2),
                       only_cross_attention=(False, False), norm_num_groups=4, sample_size=4)
TINY_TEXT = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}


def _images():
    rng = np.random.default_rng(0)
    files = {}
    for c in CLASSES:
        for stem in ("0001", "0002", "0003", "0004", "0005", "4900"):
            files[f"{c}/{stem}.png"] = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    return files


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    for name, img in _images().items():
        (root / name).parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(root / name)
    return root


def test_readers_agree_and_split(folder, tmp_path):
    a = D.read_dataset(folder)
    tar = tmp_path / "x.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(folder, arcname="train")
    b = D.read_dataset(tar)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.names == b.names and a.classes == CLASSES
    np.testing.assert_array_equal(a.images[a.names.index("dog/0003.png")], _images()["dog/0003.png"])
    h5 = tmp_path / "x.h5"
    with h5py.File(h5, "w") as f:
        f["images"], f["labels"], f["classes"] = a.images, a.labels, np.array(CLASSES, dtype="S")
    c = D.read_dataset(h5)
    np.testing.assert_array_equal(c.images, a.images)
    assert c.classes == CLASSES
    train, val = D.split(a)
    assert len(train) == 10 and len(val) == 2 and all(n.endswith("4900.png") for n in val.names)
    assert a.captions()[0] == "a photo of a cat"


def test_reader_errors(tmp_path):
    with pytest.raises(D.DatasetError, match="no such file"):
        D.read_dataset(tmp_path / "missing.tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DatasetError, match="no images"):
        D.read_dataset(tmp_path / "empty")
    bad = tmp_path / "bad" / "cat"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"not an image")
    with pytest.raises(D.DatasetError, match="cannot decode"):
        D.read_dataset(tmp_path / "bad")


def test_batches_are_positionable():
    full = [(s, i.copy(), f.copy()) for (s, i, f), _ in zip(D.batches(10, 3, seed=1), range(7))]
    resumed = [(s, i, f) for (s, i, f), _ in zip(D.batches(10, 3, seed=1, start_step=4), range(3))]
    for (s1, i1, f1), (s2, i2, f2) in zip(full[4:], resumed):
        assert s1 == s2
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(f1, f2)
    epoch0 = np.concatenate([full[k][1] for k in range(3)])
    assert len(set(epoch0.tolist())) == 9  # no repeats within an epoch
    assert not np.array_equal(full[0][1], full[3][1])  # a new permutation each epoch


def test_tokenizer_words_are_single_tokens(tmp_path):
    from diffprior.prior import load_tokenizer

    words = ["a", "photo", "of", "horse", "ship", "photograph", "hose"]
    vocab, merges = build_vocab(words)
    save_tokenizer(tmp_path, words, 8)
    tok = load_tokenizer(tmp_path)
    for w in words:
        ids = tok([w], padding="max_length", max_length=8)["input_ids"][0]
        assert ids[0] == vocab["<|startoftext|>"] and ids[1] == vocab[w + "</w>"] and ids[2] == vocab["<|endoftext|>"]
    # an unknown word still encodes, into byte symbols
    ids = tok(["zebra"], padding="max_length", max_length=8)["input_ids"][0]
    assert len([i for i in ids if i != vocab["<|endoftext|>"]]) > 2


def _vae_params(path):
    return load_vae(path)[1], json.loads((path / "vae.json").read_text())["step"]


@pytest.mark.slow
def test_vae_resume_is_exact(folder, tmp_path):
    cfg = VAETrainConfig(steps=4, batch_size=4, warmup=1, ckpt_every=100, eval_every=2, log_every=1, n_eval=2)
    run_vae(str(folder), tmp_path / "a", cfg, TINY_VAE, progress=False)
    run_vae(str(folder), tmp_path / "b", cfg, TINY_VAE, progress=False, max_steps=2)
    pb, step_b = _vae_params(tmp_path / "b")
    assert step_b == 2
    run_vae(str(folder), tmp_path / "b", cfg, TINY_VAE, progress=False)
    pa, step_a = _vae_params(tmp_path / "a")
    pb, step_b = _vae_params(tmp_path / "b")
    assert step_a == step_b == 4
    jax.tree_util.tree_map(np.testing.assert_array_equal, pa, pb)
    log = (tmp_path / "b" / "vae_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == ["1", "2", "3", "4"]


@pytest.mark.slow
def test_ldm_resume_export_and_load(folder, tmp_path):
    from diffprior.prior import LatentDiffusionPrior
    from diffprior.train.export import export_prior, load_ldm_state

    vcfg = VAETrainConfig(steps=2, batch_size=4, warmup=1, ckpt_every=100, eval_every=100, log_every=1, n_eval=2)
    run_vae(str(folder), tmp_path / "vae", vcfg, TINY_VAE, progress=False)
    cfg = LDMTrainConfig(steps=4, batch_size=4, warmup=1, ckpt_every=100, log_every=1, encode_batch=8)
    kw = dict(progress=False, unet_config=TINY_UNET, text_overrides=TINY_TEXT)
    run_ldm(str(folder), tmp_path / "vae", tmp_path / "a", cfg, **kw)
    run_ldm(str(folder), tmp_path / "vae", tmp_path / "b", cfg, max_steps=3, **kw)
    run_ldm(str(folder), tmp_path / "vae", tmp_path / "b", cfg, **kw)
    _, _, sa, ma = load_ldm_state(tmp_path / "a")
    _, _, sb, mb = load_ldm_state(tmp_path / "b")
    assert ma["step"] == mb["step"] == 4
    jax.tree_util.tree_map(np.testing.assert_array_equal, sa["ema"], sb["ema"])
    lat = np.load(tmp_path / "a" / "latents.npz")
    assert lat["means"].shape == (20, 4, 4, 4)  # 10 training images and their mirror images

    out = export_prior(tmp_path / "vae", tmp_path / "a", tmp_path / "prior")
    for part in ("unet/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                 "tokenizer/vocab.json", "scheduler/scheduler_config.json", "model_index.json"):
        assert (out / part).is_file(), part
    from diffprior.train.card import write_card

    card = write_card(out, tmp_path / "vae", tmp_path / "a", quality_json=tmp_path / "none.json",
                      commands={"x": "diffprior train ldm ..."}).read_text()
    assert "UNet + text encoder: 4 steps" in card and "Autoencoder: 2 steps" in card
    assert "diffprior train ldm ..." in card and "Not yet measured" in card
    # validation figures go into the card only if they name these weights; the sample grid comes along
    from diffprior.prior import weights_fingerprint

    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "prior_samples.png").write_bytes(b"png")
    q = {"fingerprint": "000000000000", "vae_psnr": {"mean": 31.25, "se": 0.1, "n": 2}}
    (tmp_path / "q" / "prior_quality.json").write_text(json.dumps(q))
    card = write_card(out, tmp_path / "vae", tmp_path / "a", quality_json=tmp_path / "q" / "prior_quality.json").read_text()
    assert "Not yet measured" in card and "000000000000" in card and "31.25" not in card
    assert not (out / "samples.png").exists()
    q["fingerprint"] = weights_fingerprint(out)
    (tmp_path / "q" / "prior_quality.json").write_text(json.dumps(q))
    card = write_card(out, tmp_path / "vae", tmp_path / "a", quality_json=tmp_path / "q" / "prior_quality.json").read_text()
    assert "Not yet measured" not in card and "31.25 dB" in card
    assert (out / "samples.png").read_bytes() == b"png"
    # a run folder held by a training process is not exported (its checkpoint may change underneath)
    from diffprior.train.common import RunLock

    lock = RunLock(tmp_path / "a")
    try:
        with pytest.raises(BlockingIOError, match="in use"):
            export_prior(tmp_path / "vae", tmp_path / "a", tmp_path / "prior2")
    finally:
        lock.release()
    assert not (tmp_path / "prior2").exists()
    prior = LatentDiffusionPrior.from_pretrained(out)
    assert prior.scaling_factor == pytest.approx(round(float(lat["scale"]), 5))
    emb = prior.embed(["a photo of a cat", ""])
    assert emb.shape == (2, 16, 16)
    x = np.asarray(_images()["cat/0001.png"], np.float32)[None] / 255.0
    z = prior.encode(x)
    assert z.shape == (1, 4, 4, 4)
    assert prior.x0(z, 500, emb[:1]).shape == z.shape
    # the exported UNet is the EMA of the checkpoint
    from flax.traverse_util import flatten_dict

    from diffprior.models.convert import params_to_state_dict

    ref = params_to_state_dict(sa["ema"]["unet"])
    got = params_to_state_dict(prior.unet_params)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-3, atol=1e-4)
    assert len(flatten_dict(prior.unet_params)) == len(ref)


def test_checkpoint_roundtrip(tmp_path):
    state = {"a": np.arange(3.0), "b": {"c": np.ones((2, 2), np.float32)}, "step": 7}
    checkpoint.save(tmp_path / "ck", state, {"step": 7})
    assert checkpoint.exists(tmp_path / "ck")
    back, meta = checkpoint.restore(tmp_path / "ck", {"a": np.zeros(3), "b": {"c": np.zeros((2, 2), np.float32)},
                                                      "step": 0})
    np.testing.assert_array_equal(back["a"], state["a"])
    assert back["step"] == 7 and meta == {"step": 7}


@pytest.mark.slow
def test_decoder_only_finetune_keeps_encoder(folder, tmp_path):
    cfg = VAETrainConfig(steps=2, batch_size=4, warmup=1, ckpt_every=100, eval_every=100, log_every=1, n_eval=2)
    run_vae(str(folder), tmp_path / "a", cfg, TINY_VAE, progress=False)
    ft = VAETrainConfig(steps=2, batch_size=4, warmup=1, ckpt_every=100, eval_every=100, log_every=1, n_eval=2,
                        decoder_only=True, seed=1)
    run_vae(str(folder), tmp_path / "ft", ft, progress=False, init_from=str(tmp_path / "a"))
    cfg_a, pa, _ = load_vae(tmp_path / "a")
    cfg_f, pf, _ = load_vae(tmp_path / "ft")
    assert cfg_a == cfg_f
    for part in ("encoder", "quant_conv"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, pa[part], pf[part])
    changed = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)),
                                                               pa["decoder"], pf["decoder"]))
    assert any(changed)


@pytest.mark.slow
def test_ldm_finetune_from_another_run_onto_new_latents(folder, tmp_path):
    """``init_from``: the UNet starts from another run's weights on a changed autoencoder's latents."""
    from diffprior.train.card import describe_stages
    from diffprior.train.export import lineage, load_ldm_state

    vcfg = VAETrainConfig(steps=2, batch_size=4, warmup=1, ckpt_every=100, eval_every=100, log_every=1, n_eval=2)
    run_vae(str(folder), tmp_path / "vae", vcfg, TINY_VAE, progress=False)
    run_vae(str(folder), tmp_path / "vae2", dataclasses.replace(vcfg, seed=1), progress=False,
            init_from=str(tmp_path / "vae"))
    cfg = LDMTrainConfig(steps=2, batch_size=4, warmup=1, ckpt_every=100, log_every=1, encode_batch=8)
    run_ldm(str(folder), tmp_path / "vae", tmp_path / "a", cfg, progress=False, unet_config=TINY_UNET,
            text_overrides=TINY_TEXT)
    # architecture, tokenizer and weights come from run "a"; nothing trained yet
    run_ldm(str(folder), tmp_path / "vae2", tmp_path / "ft", cfg, progress=False, max_steps=0,
            init_from=tmp_path / "a")
    _, _, sa, _ = load_ldm_state(tmp_path / "a")
    _, _, s0, m0 = load_ldm_state(tmp_path / "ft")
    assert m0["step"] == 0 and m0["init_from"]["step"] == 2
    jax.tree_util.tree_map(np.testing.assert_array_equal, sa["ema"], s0["ema"])
    assert (tmp_path / "ft" / "tokenizer" / "vocab.json").read_text() == (tmp_path / "a" / "tokenizer" /
                                                                          "vocab.json").read_text()
    assert not np.allclose(np.load(tmp_path / "a" / "latents.npz")["means"],
                           np.load(tmp_path / "ft" / "latents.npz")["means"])  # the new autoencoder's latents
    # resuming without --init keeps the architecture and the provenance, and trains
    run_ldm(str(folder), tmp_path / "vae2", tmp_path / "ft", cfg, progress=False)
    _, _, s1, m1 = load_ldm_state(tmp_path / "ft")
    assert m1["step"] == 2 and m1["init_from"]["step"] == 2
    assert not np.allclose(jax.tree_util.tree_leaves(s1["ema"])[0], jax.tree_util.tree_leaves(sa["ema"])[0])
    stages = lineage(tmp_path / "ft", "ldm")
    assert [st["steps"] for st in stages] == [2, 2]
    assert [st["steps"] for st in lineage(tmp_path / "vae2", "vae")] == [2, 2]
    text = describe_stages(lineage(tmp_path / "vae2", "vae"), "autoencoder")
    assert text.startswith("2 steps") and "then all weights fine-tuned for 2 more steps" in text
    with pytest.raises(FileNotFoundError, match="no UNet checkpoint"):
        run_ldm(str(folder), tmp_path / "vae2", tmp_path / "x", cfg, progress=False, init_from=tmp_path / "vae")


def _train_imports(path: Path, package: str, modules: set[str]) -> set[str]:
    """Modules of ``package`` that the file ``path`` imports, at any depth of its code.

    Function-local imports count too: they hide a cycle from Python, not from the reader.
    """
    own = f"{package}.{path.stem}" if path.stem != "__init__" else package
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from . import x`` / ``from pkg import x`` may name submodules
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            # ``import pkg.a.b`` also imports ``pkg.a``: count the submodule the name lies in
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                cand = ".".join(parts[:i])
                if cand in modules and cand != own:
                    found.add(cand)
                    break
    return found


def test_train_package_has_no_import_cycle():
    """No module of ``diffprior.train`` imports (directly or through others) one that imports it back."""
    package = diffprior.train.__name__
    root = Path(diffprior.train.__file__).parent
    files = {f"{package}.{p.stem}": p for p in sorted(root.glob("*.py")) if p.stem != "__init__"}
    graph = {mod: _train_imports(path, package, set(files)) for mod, path in files.items()}
    assert graph[f"{package}.vae"] and graph[f"{package}.ldm"], "the import parser found nothing"

    cycles = []
    for start in graph:  # depth-first search for a path that leads back to ``start``
        stack, seen = [(start, (start,))], set()
        while stack:
            mod, path = stack.pop()
            for nxt in graph[mod]:
                if nxt == start:
                    cycles.append(" -> ".join(path + (start,)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + (nxt,)))
    assert not cycles, "import cycles in diffprior.train:\n" + "\n".join(sorted(set(cycles)))


def test_cycle_check_sees_function_local_imports(tmp_path):
    """The parser of the cycle test counts imports inside functions and relative imports."""
    (tmp_path / "mod.py").write_text("from . import checkpoint\n"
                                     "def f():\n    from .ldm import load_vae\n"
                                     "    import diffprior.train.vae\n")
    mods = {"diffprior.train.checkpoint", "diffprior.train.ldm", "diffprior.train.vae", "diffprior.train.mod"}
    assert _train_imports(tmp_path / "mod.py", "diffprior.train", mods) == mods - {"diffprior.train.mod"}
