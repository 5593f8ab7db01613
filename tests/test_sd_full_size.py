"""Full-size Stable Diffusion architectures: exact parameter counts, without allocating weights.

``jax.eval_shape`` traces the initialisation abstractly, so the 860 M-parameter UNet costs no
memory. The counts are those of the released checkpoints (diffusers / transformers).
"""

from __future__ import annotations

from functools import cache

import pytest

from diffprior.models import presets
from diffprior.models.clip import CLIPTextModel
from diffprior.models.unet import UNet2DConditionModel
from diffprior.models.vae import AutoencoderKL
from diffprior.prior import _shape_templates, count_params

EXPECTED = {
    "v1": (presets.sd_v1_configs, {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}),
    "v2": (presets.sd_v2_configs, {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840}),
}


@cache
def shapes_of(family):
    unet_cfg, vae_cfg, text_cfg = EXPECTED[family][0]()
    return _shape_templates(UNet2DConditionModel(unet_cfg), AutoencoderKL(vae_cfg), CLIPTextModel(text_cfg))


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_parameter_counts(family):
    assert {k: count_params(v) for k, v in shapes_of(family).items()} == EXPECTED[family][1]


def test_v1_preset_shapes():
    """Spot-check tensor shapes that distinguish SD v1 from its relatives."""
    _, vae_cfg, _ = presets.sd_v1_configs()
    shapes = shapes_of("v1")
    u = shapes["unet"]
    assert u["conv_in"]["kernel"].shape == (3, 3, 4, 320)
    attn = u["down_blocks_0"]["attentions_0"]
    assert attn["proj_in"]["kernel"].shape == (1, 1, 320, 320)  # v1: 1x1 convolution
    assert attn["transformer_blocks_0"]["attn2"]["to_k"]["kernel"].shape == (768, 320)
    assert u["time_embedding"]["linear_1"]["kernel"].shape == (320, 1280)
    assert shapes["text_encoder"]["text_model"]["embeddings"]["token_embedding"]["embedding"].shape == (49408, 768)
    assert vae_cfg.downsample_factor == 8 and vae_cfg.scaling_factor == 0.18215
