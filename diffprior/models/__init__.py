"""Flax implementations of the Stable Diffusion networks (UNet, VAE, CLIP text encoder) and of
the pixel-space DDPM UNet (diffusers ``UNet2DModel``)."""

from .clip import CLIPTextModel
from .config import CLIPTextConfig, UnsupportedConfigError, UNet2DConfig, UNetConfig, VAEConfig
from .convert import WeightLoadError, params_to_state_dict, state_dict_to_params
from .unet import UNet2DConditionModel
from .unet2d import UNet2DModel
from .vae import AutoencoderKL

__all__ = [
    "AutoencoderKL", "CLIPTextConfig", "CLIPTextModel", "UNet2DConditionModel", "UNet2DConfig", "UNet2DModel",
    "UNetConfig",
    "UnsupportedConfigError", "VAEConfig", "WeightLoadError", "params_to_state_dict",
    "state_dict_to_params",
]
