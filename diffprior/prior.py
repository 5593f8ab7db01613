"""The latent diffusion prior: Stable Diffusion (or our bundled miniature) as pure functions.

:class:`LatentDiffusionPrior` is an immutable pytree: parameters and schedule arrays are
leaves, the Flax modules, configurations and tokenizer are static. Its methods are pure, so
``jax.grad`` with respect to a latent or a text embedding, ``jax.jit`` and ``lax.scan`` all
apply to them directly.

Conventions: images are ``(N, H, W, 3)`` float32 in ``[0, 1]`` at this boundary (the VAE
works in ``[-1, 1]`` inside); latents are channel-last and multiplied by the VAE's
``scaling_factor`` (0.18215 for SD v1.x) after encoding, divided by it before decoding.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .errors import DiffpriorError
from .models.clip import CLIPTextModel
from .models.config import CLIPTextConfig, UNetConfig, VAEConfig
from .models.convert import WeightLoadError, state_dict_to_params
from .models.unet import UNet2DConditionModel
from .models.vae import AutoencoderKL
from .priors.metadata import PriorMetadata, read_metadata
from .schedule import Schedule, model_output_to_eps, tweedie

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class PriorLoadError(DiffpriorError, FileNotFoundError):
    """A prior folder is missing components or files; lists every problem."""


def load_tokenizer(path: str | os.PathLike):
    """Load a transformers ``CLIPTokenizer`` from a local folder (never from a hub)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers import CLIPTokenizer  # deferred: keeps ``import diffprior`` fast

    return CLIPTokenizer.from_pretrained(str(path), local_files_only=True)


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    plain = [f for f in files if not any(v in f.name for v in (".fp16.", ".bf16.", ".non_ema."))]
    return plain or [f for f in files if ".fp16." in f.name] or files


def weights_fingerprint(path: str | os.PathLike) -> str:
    """A short identifier of a prior folder's weights: the first 12 hex digits of the SHA-256
    of its UNet and autoencoder weight files (the text encoder trains with the UNet, so it
    changes with it), or of the weight files at the top of a bare model folder (a pixel-space
    ``UNet2DModel``). Benchmark results record it, so a figure says which weights it came from."""
    import hashlib

    h = hashlib.sha256()
    for part in ("unet", "vae", ""):
        folder = Path(path) / part if part else Path(path)
        if not part and (Path(path) / "unet").is_dir():
            continue
        for f in _weight_files(folder):
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


_ST_MAX_HEADER = 100_000_000  # the safetensors library's own limit on the JSON header


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _safetensors_problem(f: Path) -> str | None:
    """Why ``f`` is not a safetensors file (``None`` if its framing looks right). Reads only the
    8-byte length and the JSON header: a pickle is recognised by its first bytes, never loaded."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than the 8-byte header length"
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _ST_MAX_HEADER):
            if head[:1] == b"\x80" and 2 <= head[1] <= 5:
                return ("a Python pickle (a PyTorch .bin/.ckpt?); pickles are never loaded: convert it "
                        "to safetensors, see the docs page on loading Stable Diffusion")
            if head[:4] == b"PK\x03\x04":
                return ("a zip archive (a PyTorch torch.save checkpoint?); convert it to safetensors, "
                        "see the docs page on loading Stable Diffusion")
            return f"header length {n} does not fit in the {size}-byte file"
        try:
            header = json.loads(fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return f"header is not JSON: {_one_line(e)}"
    if not isinstance(header, dict) or not all(
            isinstance(v, dict) and {"dtype", "shape", "data_offsets"} <= v.keys()
            for k, v in header.items() if k != "__metadata__"):
        return "header is not a map of tensor names to dtype/shape/data_offsets"
    return None


def _read_state(folder: Path) -> dict:
    """All tensors of ``folder``'s safetensors files (PyTorch names -> numpy arrays).

    Raises:
        PriorLoadError: ``not a safetensors file: <path> (<reason>)`` for a file that is not
            one (random bytes, a pickle -- which is never unpickled --, a truncated file).
    """
    from safetensors.numpy import load_file

    state = {}
    for f in _weight_files(folder):
        try:
            problem = _safetensors_problem(f)
        except OSError as e:
            raise PriorLoadError(f"cannot read {f}: {_one_line(e)}") from None
        if problem is None:
            try:
                state.update(load_file(str(f)))
                continue
            except Exception as e:  # noqa: BLE001 -- SafetensorError and friends: bad data section
                problem = _one_line(e)
        raise PriorLoadError(f"not a safetensors file: {f} ({problem})")
    return state


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``; :class:`PriorLoadError` naming the file if it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PriorLoadError(f"invalid JSON in {path}: not UTF-8 text ({_one_line(e)})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PriorLoadError(f"invalid JSON in {path}: line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise PriorLoadError(f"invalid config {path}: expected a JSON object, found {type(data).__name__}")
    return data


def _check_folder(path: Path) -> list[str]:
    problems = []
    if not path.is_dir():
        return [f"{path} is not a directory"]
    for comp in ("unet", "vae", "text_encoder"):
        d = path / comp
        if not d.is_dir():
            problems.append(f"missing folder {comp}/")
            continue
        if not (d / "config.json").is_file():
            problems.append(f"missing {comp}/config.json")
        if not _weight_files(d):
            extra = " (only PyTorch .bin/.ckpt found: re-save it as safetensors, see the docs page on loading Stable Diffusion)" if (
                list(d.glob("*.bin")) or list(d.glob("*.ckpt"))) else ""
            problems.append(f"missing {comp}/*.safetensors{extra}")
    tok = path / "tokenizer"
    if not tok.is_dir():
        problems.append("missing folder tokenizer/")
    else:
        for name in ("vocab.json", "merges.txt"):
            if not (tok / name).is_file():
                problems.append(f"missing tokenizer/{name}")
    if not (path / "scheduler" / "scheduler_config.json").is_file():
        problems.append("missing scheduler/scheduler_config.json")
    return problems


def _expected(module, *inputs):
    return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *inputs))["params"]


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), tree)


@struct.dataclass
class LatentDiffusionPrior:
    """Text-conditioned latent diffusion model with pure, differentiable methods.

    Attributes:
        unet_params, vae_params, text_params: Flax parameter trees.
        schedule: the training noise :class:`~diffprior.schedule.Schedule`.
        unet, vae, text_encoder: the Flax modules (static).
        tokenizer: a ``CLIPTokenizer`` (static; used on the host by :meth:`embed`).
        dtype: compute dtype (``float32`` or ``bfloat16``).
        metadata: a :class:`~diffprior.priors.PriorMetadata` (static, hashable): name,
            preset table, native image size; read from the folder's ``diffprior.json`` by
            :meth:`from_pretrained`.

    Implements :class:`diffprior.priors.DiffusionPrior`.
    """

    unet_params: dict
    vae_params: dict
    text_params: dict
    schedule: Schedule
    unet: UNet2DConditionModel = struct.field(pytree_node=False)
    vae: AutoencoderKL = struct.field(pytree_node=False)
    text_encoder: CLIPTextModel = struct.field(pytree_node=False)
    tokenizer: object = struct.field(pytree_node=False)
    dtype: object = struct.field(pytree_node=False, default=jnp.float32)
    metadata: PriorMetadata = struct.field(pytree_node=False, default=PriorMetadata())

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype=jnp.float32, remat: bool = False):
        """Load a diffusers-layout folder (``unet/ vae/ text_encoder/ tokenizer/ scheduler/``).

        Args:
            path: local folder; nothing is ever downloaded.
            dtype: ``jnp.float32`` or ``jnp.bfloat16`` for parameters and compute.
            remat: activation checkpointing in the UNet and VAE (saves memory under ``grad``).

        Raises:
            PriorLoadError: a folder or file is missing (all of them are listed), or a file is
                unreadable: invalid JSON, a weight file that is not safetensors (the message
                names the file; pickles are never unpickled).
            WeightLoadError: tensors do not match the configuration (all mismatches listed).
            UnsupportedConfigError: a configuration selects an unimplemented feature.
        """
        path = Path(path)
        problems = _check_folder(path)
        if problems:
            raise PriorLoadError(f"{path} is not a complete diffusers-format prior:\n  " + "\n  ".join(problems))
        metadata = read_metadata(path)
        if not (metadata.latent and metadata.conditioning):
            raise PriorLoadError(f"{path / 'diffprior.json'}: says latent={str(metadata.latent).lower()}, "
                                 f"conditioning={str(metadata.conditioning).lower()}, but the folder is a "
                                 "text-conditioned latent diffusion pipeline")

        def cfg(comp):
            return _read_json(path / comp / "config.json")

        _read_json(path / "scheduler" / "scheduler_config.json")  # a clear error before Schedule reads it
        ucfg, vcfg, tcfg = (UNetConfig.from_dict(cfg("unet")), VAEConfig.from_dict(cfg("vae")),
                            CLIPTextConfig.from_dict(cfg("text_encoder")))
        unet, vae, text = UNet2DConditionModel(ucfg, remat), AutoencoderKL(vcfg, remat), CLIPTextModel(tcfg)
        shapes = _shape_templates(unet, vae, text)
        errors = []
        params = {}
        for comp, expected in shapes.items():
            try:
                params[comp] = state_dict_to_params(_read_state(path / comp), expected, comp)
            except WeightLoadError as e:
                errors.extend(f"{comp}: {p}" for p in e.problems)
        if errors:
            raise WeightLoadError(str(path), errors)
        return cls(_cast(params["unet"], dtype), _cast(params["vae"], dtype), _cast(params["text_encoder"], dtype),
                   Schedule.from_config_file(path / "scheduler" / "scheduler_config.json"),
                   unet, vae, text, load_tokenizer(path / "tokenizer"), dtype,
                   _with_image_size(metadata, ucfg, vcfg))

    @classmethod
    def bundled(cls, dtype=jnp.float32):
        """The small CIFAR-10 prior shipped inside the package (see its model card)."""
        from . import bundled_path

        return cls.from_pretrained(bundled_path(), dtype=dtype)

    @classmethod
    def random(cls, key, unet_config: UNetConfig, vae_config: VAEConfig, text_config: CLIPTextConfig,
               tokenizer, schedule: Schedule | None = None, dtype=jnp.float32, remat: bool = False,
               metadata: PriorMetadata | None = None):
        """A prior with freshly initialised weights (tests, timing, training from scratch);
        ``metadata`` defaults to ``PriorMetadata(name="random")``."""
        unet, vae, text = (UNet2DConditionModel(unet_config, remat), AutoencoderKL(vae_config, remat),
                           CLIPTextModel(text_config))
        k1, k2, k3 = jax.random.split(key, 3)
        f = vae_config.downsample_factor
        s = max(8, 2 ** len(unet_config.block_out_channels))
        up = unet.init(k1, jnp.zeros((1, s, s, unet_config.in_channels)), jnp.zeros((1,)),
                       jnp.zeros((1, text_config.max_position_embeddings, unet_config.cross_attention_dim)))
        vp = vae.init(k2, jnp.zeros((1, s * f, s * f, vae_config.in_channels)))
        tp = text.init(k3, jnp.zeros((1, text_config.max_position_embeddings), jnp.int32))
        return cls(_cast(up["params"], dtype), _cast(vp["params"], dtype), _cast(tp["params"], dtype),
                   schedule or Schedule.create(), unet, vae, text, tokenizer, dtype,
                   metadata or PriorMetadata(name="random"))

    # ----------------------------------------------------------------- properties
    @property
    def scaling_factor(self) -> float:
        return self.vae.config.scaling_factor

    @property
    def downsample_factor(self) -> int:
        return self.vae.config.downsample_factor

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    def latent_shape(self, image_shape: Sequence[int]) -> tuple:
        """Latent shape ``(N, H/f, W/f, C_z)`` for an image shape ``(N, H, W, 3)``."""
        n, h, w, _ = image_shape
        f = self.downsample_factor
        if h % f or w % f:
            raise ValueError(f"image size {h}x{w} is not divisible by the VAE factor {f}")
        return (n, h // f, w // f, self.latent_channels)

    # ----------------------------------------------------------------- pure methods
    def encode(self, x):
        """Images ``(N, H, W, 3)`` in [0, 1] -> scaled latents (posterior mean), ``(N, H/f, W/f, C)``."""
        mean, _ = self.vae.apply({"params": self.vae_params}, (2.0 * x - 1.0).astype(self.dtype),
                                 method=AutoencoderKL.encode)
        return (mean * self.scaling_factor).astype(jnp.float32)

    def encode_moments(self, x):
        """Images in [0, 1] -> unscaled posterior ``(mean, logvar)`` (used in training)."""
        return self.vae.apply({"params": self.vae_params}, (2.0 * x - 1.0).astype(self.dtype),
                              method=AutoencoderKL.encode)

    def decode(self, z, clip: bool = False):
        """Scaled latents -> images in [0, 1] (values may overshoot unless ``clip``)."""
        x = self.vae.apply({"params": self.vae_params}, (z / self.scaling_factor).astype(self.dtype),
                           method=AutoencoderKL.decode)
        x = (x.astype(jnp.float32) + 1.0) / 2.0
        return jnp.clip(x, 0.0, 1.0) if clip else x

    def model_output(self, z, t, emb):
        """Raw UNet output (epsilon or v, per the schedule's prediction type)."""
        t = jnp.broadcast_to(jnp.asarray(t), (z.shape[0],))
        return self.unet.apply({"params": self.unet_params}, z.astype(self.dtype), t,
                               emb.astype(self.dtype)).astype(jnp.float32)

    def eps(self, z, t, emb):
        """Noise estimate :math:`\\epsilon_\\theta(z_t, t, c)` (v-prediction is converted)."""
        return model_output_to_eps(self.schedule, self.model_output(z, t, emb), z, t)

    def x0(self, z, t, emb):
        """Tweedie estimate :math:`\\hat z_0(z_t, c)` (P2L Eq. 10)."""
        return tweedie(self.schedule, z, self.eps(z, t, emb), t)

    def eps_and_x0(self, z, t, emb):
        """Both :meth:`eps` and :meth:`x0` from one network evaluation."""
        e = self.eps(z, t, emb)
        return e, tweedie(self.schedule, z, e, t)

    def tokenize(self, prompts: str | Sequence[str]) -> np.ndarray:
        """Token ids ``(N, L)`` padded to the text encoder's length (host-side, not jittable)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        length = self.text_encoder.config.max_position_embeddings
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=length, truncation=True)["input_ids"]
        return np.asarray(ids, np.int32)

    def encode_tokens(self, ids):
        """Text encoder on token ids -> embedding ``(N, L, D)`` (pure; differentiable in params)."""
        return self.text_encoder.apply({"params": self.text_params}, ids).astype(jnp.float32)

    def embed(self, prompts: str | Sequence[str]):
        """Text prompts -> conditioning embeddings ``(N, L, D)`` (``L = 77`` for SD)."""
        return self.encode_tokens(jnp.asarray(self.tokenize(prompts)))

    @property
    def null_embedding(self):
        """Embedding of the empty prompt ``""``, shape ``(1, L, D)``."""
        return self.embed([""])


def _with_image_size(metadata: PriorMetadata, ucfg: UNetConfig, vcfg: VAEConfig) -> PriorMetadata:
    """``metadata`` with the native image size from the configurations when it gives none."""
    import dataclasses

    if metadata.image_size is not None or not ucfg.sample_size:
        return metadata
    s = int(ucfg.sample_size) * vcfg.downsample_factor
    return dataclasses.replace(metadata, image_size=(s, s))


def _shape_templates(unet, vae, text):
    """Parameter shapes of the three networks, from ``jax.eval_shape`` (no compute)."""
    uc, vc, tc = unet.config, vae.config, text.config
    s, f = max(8, 2 ** len(uc.block_out_channels)), vc.downsample_factor
    return {
        "unet": _expected(unet, jnp.zeros((1, s, s, uc.in_channels)), jnp.zeros((1,)),
                          jnp.zeros((1, 1, uc.cross_attention_dim))),
        "vae": _expected(vae, jnp.zeros((1, s * f, s * f, vc.in_channels))),
        "text_encoder": _expected(text, jnp.zeros((1, 1), jnp.int32)),
    }


def count_params(tree) -> int:
    """Number of scalar parameters in a tree."""
    return int(sum(np.prod(np.shape(a)) for a in jax.tree_util.tree_leaves(tree)))
