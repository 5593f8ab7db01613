"""Typed model configurations read from diffusers / transformers ``config.json`` files.

Every configuration is a frozen (hashable) dataclass, so it can be an attribute of a
``flax.linen`` module and a static field of a pytree. :func:`from_dict` accepts any key a
diffusers/transformers config may carry: keys we implement are read, keys that only matter
for other code paths (``_class_name``, ``sample_size``...) are ignored, and keys whose value
selects a feature we do not implement raise :class:`UnsupportedConfigError` naming each one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..errors import DiffpriorError


class UnsupportedConfigError(DiffpriorError, ValueError):
    """A configuration asks for a feature that diffprior's model code does not implement."""


def _tupled(value, n: int, name: str):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise UnsupportedConfigError(f"{name} has {len(value)} entries, expected {n} (one per block)")
        return tuple(value)
    return (value,) * n


def _depths(value, n: int, name: str):
    """Per-block transformer depths: an int per block, or (asymmetric UNets) a tuple per layer."""
    value = _tupled(value, n, name)
    if value is None:
        return None
    return tuple(tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else int(v) for v in value)


def _check_unsupported(d: Mapping[str, Any], defaults: Mapping[str, Any], what: str):
    problems = []
    for key, allowed in defaults.items():
        if key in d:
            value = d[key]
            ok = value in allowed if isinstance(allowed, tuple) else value == allowed
            if not ok:
                problems.append(f"{key}={value!r} (supported: {allowed!r})")
    if problems:
        raise UnsupportedConfigError(f"{what} config uses unsupported options: " + "; ".join(problems))


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """``UNet2DConditionModel`` hyperparameters (SD v1.x and v2.x families)."""

    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple = (320, 640, 1280, 1280)
    down_block_types: tuple = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    mid_block_type: str | None = "UNetMidBlock2DCrossAttn"
    layers_per_block: tuple = (2, 2, 2, 2)
    # per block: an int, or (asymmetric UNets, diffusers >= 0.25) a tuple with one depth per layer;
    # the up blocks use ``reverse_transformer_layers_per_block`` when given, else the reversed list
    transformer_layers_per_block: tuple = (1, 1, 1, 1)
    reverse_transformer_layers_per_block: tuple | None = None
    num_attention_heads: tuple = (8, 8, 8, 8)
    only_cross_attention: tuple = (False, False, False, False)
    cross_attention_dim: int = 768
    use_linear_projection: bool = False
    upcast_attention: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    resnet_out_scale_factor: float = 1.0  # read for completeness; diffusers' blocks that we
    # implement ignore it (it reaches only the Simple*/Resnet*Block2D types)
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    center_input_sample: bool = False
    time_embedding_dim: int | None = None
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    sample_size: int = 64

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UNetConfig":
        """Build from a diffusers ``unet/config.json`` dictionary."""
        _check_unsupported(d, {
            "act_fn": ("silu", "swish"), "class_embed_type": None, "addition_embed_type": None,
            "num_class_embeds": None, "dual_cross_attention": False, "encoder_hid_dim": None,
            "encoder_hid_dim_type": None, "resnet_time_scale_shift": "default",
            "time_embedding_type": "positional", "time_cond_proj_dim": None,
            "timestep_post_act": None, "time_embedding_act_fn": None,
            "attention_type": "default", "cross_attention_norm": None,
            "resnet_skip_time_act": False, "class_embeddings_concat": False,
            "mid_block_only_cross_attention": (None, False),
        }, "UNet")
        down = tuple(d.get("down_block_types", cls.down_block_types))
        up = tuple(d.get("up_block_types", cls.up_block_types))
        n = len(down)
        bad = [b for b in down if b not in ("CrossAttnDownBlock2D", "DownBlock2D")]
        bad += [b for b in up if b not in ("CrossAttnUpBlock2D", "UpBlock2D")]
        mid = d.get("mid_block_type", "UNetMidBlock2DCrossAttn")
        if mid not in ("UNetMidBlock2DCrossAttn", None):
            bad.append(mid)
        if bad:
            raise UnsupportedConfigError(f"UNet config uses unsupported block types: {bad}")
        if len(up) != n:
            raise UnsupportedConfigError("UNet config: down_block_types and up_block_types differ in length")
        heads = d.get("num_attention_heads") or d.get("attention_head_dim", 8)
        cad = d.get("cross_attention_dim", 768)
        if isinstance(cad, (list, tuple)):
            if len(set(cad)) != 1:
                raise UnsupportedConfigError(f"UNet config: per-block cross_attention_dim {cad} is not supported")
            cad = cad[0]
        oca = d.get("only_cross_attention", False)
        return cls(
            in_channels=d.get("in_channels", 4),
            out_channels=d.get("out_channels", 4),
            block_out_channels=tuple(d.get("block_out_channels", cls.block_out_channels)),
            down_block_types=down,
            up_block_types=up,
            mid_block_type=mid,
            layers_per_block=_tupled(d.get("layers_per_block", 2), n, "layers_per_block"),
            transformer_layers_per_block=_depths(d.get("transformer_layers_per_block", 1), n,
                                                 "transformer_layers_per_block"),
            reverse_transformer_layers_per_block=_depths(d.get("reverse_transformer_layers_per_block"), n,
                                                         "reverse_transformer_layers_per_block"),
            num_attention_heads=_tupled(heads, n, "attention_head_dim"),
            only_cross_attention=_tupled(bool(oca) if not isinstance(oca, (list, tuple)) else oca, n,
                                         "only_cross_attention"),
            cross_attention_dim=int(cad),
            use_linear_projection=bool(d.get("use_linear_projection", False)),
            upcast_attention=bool(d.get("upcast_attention", False)),
            flip_sin_to_cos=bool(d.get("flip_sin_to_cos", True)),
            freq_shift=float(d.get("freq_shift", 0)),
            downsample_padding=int(d.get("downsample_padding", 1)),
            mid_block_scale_factor=float(d.get("mid_block_scale_factor", 1.0)),
            resnet_out_scale_factor=float(d.get("resnet_out_scale_factor", 1.0)),
            norm_num_groups=int(d.get("norm_num_groups", 32)),
            norm_eps=float(d.get("norm_eps", 1e-5)),
            center_input_sample=bool(d.get("center_input_sample", False)),
            time_embedding_dim=d.get("time_embedding_dim"),
            conv_in_kernel=int(d.get("conv_in_kernel", 3)),
            conv_out_kernel=int(d.get("conv_out_kernel", 3)),
            sample_size=int(d.get("sample_size") or 64),
        )


#: Block types of diffusers' ``UNet2DModel`` that :class:`UNet2DConfig` implements.
UNET2D_DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D")
UNET2D_UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D")
UNET2D_MID_BLOCKS = ("UNetMidBlock2D", None)


def _sample_size(value):
    """diffusers' ``sample_size``: an int (square), ``[H, W]`` or null -> ``(H, W)`` or ``None``."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise UnsupportedConfigError(f"UNet2DModel config: sample_size must be an int or [H, W], got {value!r}")
        return (int(value[0]), int(value[1]))
    return (int(value), int(value))


@dataclasses.dataclass(frozen=True)
class UNet2DConfig:
    """``UNet2DModel`` hyperparameters: the unconditional pixel-space UNet of the DDPM
    checkpoints (``google/ddpm-cifar10-32``, ``google/ddpm-celebahq-256``, ...).

    Defaults are those of diffusers' ``UNet2DModel`` constructor, so a ``config.json`` that
    omits a key means what it means to diffusers. :meth:`from_dict` refuses (one line naming
    each value) the options this port does not implement: Fourier or learned time
    embeddings, class conditioning, ``resnet_time_scale_shift`` other than ``"default"``,
    ``resnet`` down/upsamplers, activations other than SiLU and block types other than
    :data:`UNET2D_DOWN_BLOCKS` / :data:`UNET2D_UP_BLOCKS` (e.g. the ``Skip*`` blocks of the
    score-SDE models).

    Attributes:
        sample_size: the native ``(H, W)`` (diffusers stores an int for square models), or
            ``None``.
        attention_head_dim: channels per attention head; ``None``: one head spanning all the
            block's channels (the DDPM checkpoints), as diffusers does.
        attn_norm_num_groups: groups of the mid-block attention's GroupNorm (``None``:
            ``norm_num_groups``).
        add_attention: the mid block has its self-attention layer.
        mid_block_type: ``"UNetMidBlock2D"`` or ``None`` (no mid block).
    """

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple = (224, 448, 672, 896)
    down_block_types: tuple = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    up_block_types: tuple = ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    mid_block_type: str | None = "UNetMidBlock2D"
    layers_per_block: int = 2
    attention_head_dim: int | None = 8
    norm_num_groups: int = 32
    attn_norm_num_groups: int | None = None
    norm_eps: float = 1e-5
    add_attention: bool = True
    center_input_sample: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    time_embedding_dim: int | None = None
    mid_block_scale_factor: float = 1.0
    downsample_padding: int = 1
    sample_size: tuple | None = None

    @property
    def num_levels(self) -> int:
        """Resolution levels; inputs must be divisible by ``2 ** (num_levels - 1)``."""
        return len(self.block_out_channels)

    @property
    def size_multiple(self) -> int:
        """The factor every input height and width must be a multiple of."""
        return 2 ** (len(self.block_out_channels) - 1)

    def heads(self, channels: int) -> tuple[int, int]:
        """``(heads, dim_head)`` of an attention layer over ``channels`` (diffusers' rule)."""
        d = channels if self.attention_head_dim is None else int(self.attention_head_dim)
        return channels // d, d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UNet2DConfig":
        """Build from a diffusers ``UNet2DModel`` ``config.json`` dictionary.

        Raises:
            UnsupportedConfigError: an option this port does not implement (the message names
                every offending key and value), or inconsistent block lists.
        """
        _check_unsupported(d, {
            "act_fn": ("silu", "swish"), "time_embedding_type": "positional", "class_embed_type": None,
            "num_class_embeds": None, "resnet_time_scale_shift": "default", "downsample_type": "conv",
            "upsample_type": "conv",
        }, "UNet2DModel")
        down = tuple(d.get("down_block_types", cls.down_block_types))
        up = tuple(d.get("up_block_types", cls.up_block_types))
        mid = d.get("mid_block_type", "UNetMidBlock2D")
        bad = [b for b in down if b not in UNET2D_DOWN_BLOCKS] + [b for b in up if b not in UNET2D_UP_BLOCKS]
        if mid not in UNET2D_MID_BLOCKS:
            bad.append(mid)
        if bad:
            raise UnsupportedConfigError(
                f"UNet2DModel config uses unsupported block types: {', '.join(map(str, bad))} (supported: "
                f"{', '.join(UNET2D_DOWN_BLOCKS + UNET2D_UP_BLOCKS)}, mid block UNetMidBlock2D or null)")
        channels = tuple(int(c) for c in d.get("block_out_channels", cls.block_out_channels))
        if not (len(down) == len(up) == len(channels)):
            raise UnsupportedConfigError(
                f"UNet2DModel config: down_block_types ({len(down)}), up_block_types ({len(up)}) and "
                f"block_out_channels ({len(channels)}) must have the same length")
        layers = d.get("layers_per_block", 2)
        if isinstance(layers, (list, tuple)) or int(layers) < 1:
            raise UnsupportedConfigError(f"UNet2DModel config: layers_per_block must be a positive integer, "
                                         f"got {layers!r}")
        groups = d.get("norm_num_groups", 32)
        attn_groups = d.get("attn_norm_num_groups")
        head_dim = d.get("attention_head_dim", 8)
        problems = []
        if groups is None:
            problems.append("norm_num_groups=None (diffusers' blocks need an integer)")
        else:
            problems += [f"block_out_channels {c} is not divisible by norm_num_groups={groups}"
                         for c in channels if c % int(groups)]
        if attn_groups is not None and channels[-1] % int(attn_groups):
            problems.append(f"block_out_channels[-1]={channels[-1]} is not divisible by "
                            f"attn_norm_num_groups={attn_groups}")
        if head_dim is not None and (isinstance(head_dim, (list, tuple)) or int(head_dim) < 1):
            problems.append(f"attention_head_dim must be a positive integer or null, got {head_dim!r}")
        elif head_dim is not None:
            attn = [c for c, kind in zip(channels, down) if kind.startswith("Attn")]
            attn += [c for c, kind in zip(channels[::-1], up) if kind.startswith("Attn")]
            attn += [channels[-1]] if mid is not None and d.get("add_attention", True) else []
            problems += [f"attention_head_dim={head_dim} exceeds the {c} channels of an attention block "
                         "(no head left)" for c in sorted(set(attn)) if c < int(head_dim)]
        if problems:
            raise UnsupportedConfigError("UNet2DModel config: " + "; ".join(problems))
        sample = d.get("sample_size", d.get("image_size"))  # very early diffusers configs say image_size
        return cls(
            in_channels=int(d.get("in_channels", 3)),
            out_channels=int(d.get("out_channels", 3)),
            block_out_channels=channels,
            down_block_types=down,
            up_block_types=up,
            mid_block_type=mid,
            layers_per_block=int(layers),
            attention_head_dim=None if head_dim is None else int(head_dim),
            norm_num_groups=int(groups),
            attn_norm_num_groups=None if attn_groups is None else int(attn_groups),
            norm_eps=float(d.get("norm_eps", 1e-5)),
            add_attention=bool(d.get("add_attention", True)),
            center_input_sample=bool(d.get("center_input_sample", False)),
            flip_sin_to_cos=bool(d.get("flip_sin_to_cos", True)),
            freq_shift=float(d.get("freq_shift", 0)),
            time_embedding_dim=None if d.get("time_embedding_dim") is None else int(d["time_embedding_dim"]),
            mid_block_scale_factor=float(d.get("mid_block_scale_factor", 1.0)),
            downsample_padding=int(d.get("downsample_padding", 1)),
            sample_size=_sample_size(sample),
        )


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """``AutoencoderKL`` hyperparameters."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    sample_size: int = 512

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VAEConfig":
        """Build from a diffusers ``vae/config.json`` dictionary."""
        _check_unsupported(d, {"act_fn": ("silu", "swish"), "shift_factor": (None, 0.0, 0),
                               "latents_mean": None, "latents_std": None}, "VAE")
        n = len(d.get("block_out_channels", cls.block_out_channels))
        down = d.get("down_block_types", ("DownEncoderBlock2D",) * n)
        up = d.get("up_block_types", ("UpDecoderBlock2D",) * n)
        bad = [b for b in down if b != "DownEncoderBlock2D"] + [b for b in up if b != "UpDecoderBlock2D"]
        if bad:
            raise UnsupportedConfigError(f"VAE config uses unsupported block types: {bad}")
        return cls(
            in_channels=d.get("in_channels", 3),
            out_channels=d.get("out_channels", 3),
            block_out_channels=tuple(d.get("block_out_channels", cls.block_out_channels)),
            layers_per_block=int(d.get("layers_per_block", 1)),
            latent_channels=int(d.get("latent_channels", 4)),
            norm_num_groups=int(d.get("norm_num_groups", 32)),
            scaling_factor=float(d.get("scaling_factor", 0.18215)),
            use_quant_conv=bool(d.get("use_quant_conv", True)),
            use_post_quant_conv=bool(d.get("use_post_quant_conv", True)),
            mid_block_add_attention=bool(d.get("mid_block_add_attention", True)),
            sample_size=int(d.get("sample_size") or 512),
        )


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    """transformers ``CLIPTextConfig`` (the text tower only)."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 49407

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CLIPTextConfig":
        """Build from a transformers ``text_encoder/config.json`` dictionary."""
        if "text_config" in d and "hidden_size" not in d:
            d = d["text_config"]
        _check_unsupported(d, {"hidden_act": ("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh")},
                           "CLIP text")
        return cls(
            vocab_size=int(d.get("vocab_size", 49408)),
            hidden_size=int(d.get("hidden_size", 512)),
            intermediate_size=int(d.get("intermediate_size", 2048)),
            num_hidden_layers=int(d.get("num_hidden_layers", 12)),
            num_attention_heads=int(d.get("num_attention_heads", 8)),
            max_position_embeddings=int(d.get("max_position_embeddings", 77)),
            hidden_act=str(d.get("hidden_act", "quick_gelu")),
            layer_norm_eps=float(d.get("layer_norm_eps", 1e-5)),
            eos_token_id=int(d.get("eos_token_id", 49407) or 49407),
        )


def to_diffusers_dict(cfg) -> dict:
    """Return a ``config.json`` dictionary that diffusers/transformers read back as ``cfg``."""
    if isinstance(cfg, UNetConfig):
        return {
            "_class_name": "UNet2DConditionModel",
            "in_channels": cfg.in_channels, "out_channels": cfg.out_channels,
            "block_out_channels": list(cfg.block_out_channels),
            "down_block_types": list(cfg.down_block_types), "up_block_types": list(cfg.up_block_types),
            "mid_block_type": cfg.mid_block_type,
            "layers_per_block": list(cfg.layers_per_block),
            "transformer_layers_per_block": [list(v) if isinstance(v, tuple) else v
                                             for v in cfg.transformer_layers_per_block],
            "reverse_transformer_layers_per_block": (
                None if cfg.reverse_transformer_layers_per_block is None else
                [list(v) if isinstance(v, tuple) else v for v in cfg.reverse_transformer_layers_per_block]),
            "attention_head_dim": list(cfg.num_attention_heads),
            "only_cross_attention": list(cfg.only_cross_attention),
            "cross_attention_dim": cfg.cross_attention_dim,
            "use_linear_projection": cfg.use_linear_projection,
            "upcast_attention": cfg.upcast_attention,
            "flip_sin_to_cos": cfg.flip_sin_to_cos, "freq_shift": cfg.freq_shift,
            "downsample_padding": cfg.downsample_padding,
            "mid_block_scale_factor": cfg.mid_block_scale_factor,
            "norm_num_groups": cfg.norm_num_groups, "norm_eps": cfg.norm_eps,
            "center_input_sample": cfg.center_input_sample,
            "resnet_out_scale_factor": cfg.resnet_out_scale_factor,
            "time_embedding_dim": cfg.time_embedding_dim,
            "conv_in_kernel": cfg.conv_in_kernel, "conv_out_kernel": cfg.conv_out_kernel,
            "act_fn": "silu", "sample_size": cfg.sample_size,
        }
    if isinstance(cfg, UNet2DConfig):
        size = cfg.sample_size
        return {
            "_class_name": "UNet2DModel",
            "in_channels": cfg.in_channels, "out_channels": cfg.out_channels,
            "block_out_channels": list(cfg.block_out_channels),
            "down_block_types": list(cfg.down_block_types), "up_block_types": list(cfg.up_block_types),
            "mid_block_type": cfg.mid_block_type, "layers_per_block": cfg.layers_per_block,
            "attention_head_dim": cfg.attention_head_dim, "norm_num_groups": cfg.norm_num_groups,
            "attn_norm_num_groups": cfg.attn_norm_num_groups, "norm_eps": cfg.norm_eps,
            "add_attention": cfg.add_attention, "center_input_sample": cfg.center_input_sample,
            "flip_sin_to_cos": cfg.flip_sin_to_cos, "freq_shift": cfg.freq_shift,
            "time_embedding_dim": cfg.time_embedding_dim, "mid_block_scale_factor": cfg.mid_block_scale_factor,
            "downsample_padding": cfg.downsample_padding,
            "sample_size": None if size is None else (size[0] if size[0] == size[1] else list(size)),
            "act_fn": "silu", "time_embedding_type": "positional", "resnet_time_scale_shift": "default",
            "downsample_type": "conv", "upsample_type": "conv",
        }
    if isinstance(cfg, VAEConfig):
        n = len(cfg.block_out_channels)
        return {
            "_class_name": "AutoencoderKL",
            "in_channels": cfg.in_channels, "out_channels": cfg.out_channels,
            "block_out_channels": list(cfg.block_out_channels),
            "down_block_types": ["DownEncoderBlock2D"] * n, "up_block_types": ["UpDecoderBlock2D"] * n,
            "layers_per_block": cfg.layers_per_block, "latent_channels": cfg.latent_channels,
            "norm_num_groups": cfg.norm_num_groups, "scaling_factor": cfg.scaling_factor,
            "act_fn": "silu", "sample_size": cfg.sample_size,
            "use_quant_conv": cfg.use_quant_conv, "use_post_quant_conv": cfg.use_post_quant_conv,
            "mid_block_add_attention": cfg.mid_block_add_attention,
        }
    if isinstance(cfg, CLIPTextConfig):
        return {
            "architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
            "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "max_position_embeddings": cfg.max_position_embeddings,
            "hidden_act": cfg.hidden_act, "layer_norm_eps": cfg.layer_norm_eps,
            "bos_token_id": cfg.eos_token_id - 1, "eos_token_id": cfg.eos_token_id, "pad_token_id": 1,
            "projection_dim": cfg.hidden_size,
        }
    raise TypeError(f"not a diffprior model config: {type(cfg).__name__}")
