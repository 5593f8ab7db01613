"""Configurations of the released Stable Diffusion networks, as diffusers/transformers dicts.

Each dictionary is what the checkpoint's ``config.json`` holds (only the keys that matter),
so ``UNetConfig.from_dict(SD_V1_UNET)`` builds the SD v1.x UNet without any file. Used for
random-weight benchmarks at full size and to check parameter counts; real weights always
come from a local folder via :meth:`~diffprior.prior.LatentDiffusionPrior.from_pretrained`.

Parameter counts (checked by ``tests/test_sd_full_size.py``):

========  =============  ============  ==============
family    UNet           VAE           text encoder
========  =============  ============  ==============
SD v1.x   859,520,964    83,653,863    123,060,480 (CLIP ViT-L/14 text)
SD v2.x   865,910,724    83,653,863    340,387,840 (OpenCLIP ViT-H/14 text, 23 layers)
========  =============  ============  ==============
"""

from __future__ import annotations

from .config import CLIPTextConfig, UNetConfig, VAEConfig

# CompVis/stable-diffusion-v1-4 (and runwayml v1-5): unet/config.json
SD_V1_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

# vae/config.json (shared by SD v1.x and v2.x)
SD_V1_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# text_encoder/config.json: the text tower of openai/clip-vit-large-patch14
SD_V1_TEXT = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}

# stabilityai/stable-diffusion-2-1 (768 px, v-prediction): unet/config.json
SD_V2_UNET = {
    **SD_V1_UNET,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "sample_size": 96,
    "use_linear_projection": True,
    "upcast_attention": True,
}

SD_V2_VAE = {**SD_V1_VAE, "sample_size": 768}

# OpenCLIP ViT-H/14 text tower; diffusers keeps 23 of its 24 layers (SD 2 uses the penultimate)
SD_V2_TEXT = {
    **SD_V1_TEXT,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
}


def sd_v1_configs() -> tuple[UNetConfig, VAEConfig, CLIPTextConfig]:
    """Typed ``(unet, vae, text)`` configurations of Stable Diffusion v1.x."""
    return UNetConfig.from_dict(SD_V1_UNET), VAEConfig.from_dict(SD_V1_VAE), CLIPTextConfig.from_dict(SD_V1_TEXT)


def sd_v2_configs() -> tuple[UNetConfig, VAEConfig, CLIPTextConfig]:
    """Typed ``(unet, vae, text)`` configurations of Stable Diffusion v2.x."""
    return UNetConfig.from_dict(SD_V2_UNET), VAEConfig.from_dict(SD_V2_VAE), CLIPTextConfig.from_dict(SD_V2_TEXT)


__all__ = ["SD_V1_UNET", "SD_V1_VAE", "SD_V1_TEXT", "SD_V2_UNET", "SD_V2_VAE", "SD_V2_TEXT",
           "sd_v1_configs", "sd_v2_configs"]
