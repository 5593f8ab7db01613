"""Shared pytest fixtures.

Fixtures are grouped by owner and self-contained; add new ones below, with a clear name.
"""

from __future__ import annotations

import os

import pytest

# No persistent XLA compilation cache in the test session (the CLI enables one by default, in
# its own process and, when a test calls it in-process, for the rest of the session), so that
# results never depend on what an earlier run left on disk. Tests of the cache pass their own
# folder.
os.environ.setdefault("DIFFPRIOR_CACHE", "off")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    Every XLA:CPU executable keeps a few memory mappings for its code. The whole suite in one
    process compiles thousands of programs; kept alive, their mappings reach the kernel's
    ``vm.max_map_count`` (65530 by default) near the end of the run, where the next
    compilation or serialisation fails with a segmentation fault. Measured on this machine
    (``/proc/self/maps`` after each test): 62,922 mappings after the last test before the
    crash; with this fixture the full run peaks at 10,510 (and at 4.3 GB peak RSS instead of
    8.2 GB). ``jax.clear_caches`` releases them; later modules recompile what they use. The
    figures come from ``benchmarks/pytest_maps.py``.
    """
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()


# ------------------------------------------------------------------ tiny random-weight prior
def write_tiny_clip_tokenizer(folder) -> int:
    """Write a byte-level CLIP BPE vocabulary (no merges) into ``folder``; return its size.

    The vocabulary holds the 256 byte characters, their ``</w>`` forms and the two special
    tokens, so every string tokenizes (character by character) with ids below 514.
    """
    from diffprior.train.tokenizer import save_tokenizer

    return len(save_tokenizer(folder, [], max_length=8))


TINY_IMAGE = 16  # tiny_prior images are (N, 16, 16, 3); latents (N, 8, 8, 4)


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory):
    """A random-weight :class:`LatentDiffusionPrior` small enough for CPU unit tests.

    UNet (8, 16) channels with one layer per block and cross-attention dim 16, VAE (8, 16)
    (downsampling factor 2, 4 latent channels), CLIP text hidden 16 with 1 layer and 8
    positions, and a byte-level tokenizer. Images ``TINY_IMAGE`` x ``TINY_IMAGE`` x 3.
    """
    import jax

    from diffprior.models.config import CLIPTextConfig, UNetConfig, VAEConfig
    from diffprior.prior import LatentDiffusionPrior, load_tokenizer

    tok_dir = tmp_path_factory.mktemp("tiny_tokenizer")
    vocab_size = write_tiny_clip_tokenizer(tok_dir)
    unet = UNetConfig(
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=(1, 1), transformer_layers_per_block=(1, 1), num_attention_heads=(2, 2),
        only_cross_attention=(False, False), cross_attention_dim=16, norm_num_groups=4,
        sample_size=TINY_IMAGE // 2)
    vae = VAEConfig(block_out_channels=(8, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4,
                    sample_size=TINY_IMAGE)
    text = CLIPTextConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=8, eos_token_id=vocab_size - 1)
    return _fast_random_prior(unet, vae, text, load_tokenizer(tok_dir), seed=0)


def _fast_random_prior(unet_config, vae_config, text_config, tokenizer, seed: int):
    """Like ``LatentDiffusionPrior.random`` but without compiling Flax's initialisers.

    XLA takes ~30 s on two cores to compile the UNet's and VAE's ``init``; here the
    parameter shapes come from ``jax.eval_shape`` and the values from NumPy: LeCun-normal
    kernels, unit norm scales, zero biases, N(0, 0.02^2) token/position embeddings.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffprior.models.clip import CLIPTextModel
    from diffprior.models.unet import UNet2DConditionModel
    from diffprior.models.vae import AutoencoderKL
    from diffprior.prior import LatentDiffusionPrior
    from diffprior.schedule import Schedule

    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(0)

    def init(module, *inputs):
        shapes = jax.eval_shape(lambda: module.init(key, *inputs))["params"]

        def leaf(path, s):
            name = path[-1].key
            if name == "scale":
                return jnp.ones(s.shape, jnp.float32)
            if name == "bias":
                return jnp.zeros(s.shape, jnp.float32)
            std = 0.02 if name == "embedding" else 1.0 / np.sqrt(np.prod(s.shape[:-1]))
            return jnp.asarray(rng.normal(0.0, std, s.shape), jnp.float32)

        return jax.tree_util.tree_map_with_path(leaf, shapes)

    unet, vae, text = (UNet2DConditionModel(unet_config), AutoencoderKL(vae_config),
                       CLIPTextModel(text_config))
    s, f = unet_config.sample_size, vae_config.downsample_factor
    up = init(unet, jnp.zeros((1, s, s, unet_config.in_channels)), jnp.zeros((1,)),
              jnp.zeros((1, text_config.max_position_embeddings, unet_config.cross_attention_dim)))
    vp = init(vae, jnp.zeros((1, s * f, s * f, vae_config.in_channels)))
    tp = init(text, jnp.zeros((1, text_config.max_position_embeddings), jnp.int32))
    return LatentDiffusionPrior(up, vp, tp, Schedule.create(), unet, vae, text, tokenizer)


# ------------------------------------------------------------------ small problem files for CLI tests
def write_problem_folder(root, n: int, seed: int, task: str = "inpaint-freeform", size: int = 16):
    """``n`` random ``size`` x ``size`` RGB PNGs in ``root/im`` simulated into ``root/p.h5`` by
    ``diffprior simulate --task TASK``; returns ``root``."""
    import numpy as np
    from PIL import Image

    from diffprior.cli import main

    x = (np.random.default_rng(seed).uniform(size=(n, size, size, 3)) * 255).astype(np.uint8)
    (root / "im").mkdir()
    for i in range(n):
        Image.fromarray(x[i]).save(root / "im" / f"{i}.png")
    assert main(["simulate", str(root / "im"), "--task", task, "--out", str(root / "p.h5")]) == 0
    return root
