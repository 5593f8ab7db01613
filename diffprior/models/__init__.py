"""Flax implementations of the Stable Diffusion networks (UNet, VAE, CLIP text encoder)."""

from .clip import CLIPTextModel
from .config import CLIPTextConfig, UnsupportedConfigError, UNetConfig, VAEConfig
from .convert import WeightLoadError, params_to_state_dict, state_dict_to_params
from .unet import UNet2DConditionModel
from .vae import AutoencoderKL

__all__ = [
    "AutoencoderKL", "CLIPTextConfig", "CLIPTextModel", "UNet2DConditionModel", "UNetConfig",
    "UnsupportedConfigError", "VAEConfig", "WeightLoadError", "params_to_state_dict",
    "state_dict_to_params",
]
