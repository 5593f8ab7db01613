"""CLIP text transformer (transformers ``CLIPTextModel``), the text tower of Stable Diffusion.

Token ids ``(N, L)`` -> hidden states ``(N, L, D)`` after the final LayerNorm (what SD
cross-attends to). Pre-LayerNorm blocks with a causal mask; ``quick_gelu``
(:math:`x\\,\\sigma(1.702x)`) or exact ``gelu`` in the MLP.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from .config import CLIPTextConfig
from .layers import scaled_dot_product


def _activation(name: str):
    if name == "quick_gelu":
        return lambda x: x * jax.nn.sigmoid(1.702 * x)
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    return lambda x: jax.nn.gelu(x, approximate=True)  # gelu_new / gelu_pytorch_tanh


class CLIPAttention(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, x, mask):
        d = self.config.hidden_size
        q = nn.Dense(d, name="q_proj")(x)
        k = nn.Dense(d, name="k_proj")(x)
        v = nn.Dense(d, name="v_proj")(x)
        out = scaled_dot_product(q, k, v, self.config.num_attention_heads, mask=mask)
        return nn.Dense(d, name="out_proj")(out)


class CLIPMLP(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.config.intermediate_size, name="fc1")(x)
        x = _activation(self.config.hidden_act)(x)
        return nn.Dense(self.config.hidden_size, name="fc2")(x)


class CLIPEncoderLayer(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, x, mask):
        eps = self.config.layer_norm_eps
        x = x + CLIPAttention(self.config, name="self_attn")(nn.LayerNorm(eps, name="layer_norm1")(x), mask)
        return x + CLIPMLP(self.config, name="mlp")(nn.LayerNorm(eps, name="layer_norm2")(x))


class CLIPEncoder(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, x, mask):
        for i in range(self.config.num_hidden_layers):
            x = CLIPEncoderLayer(self.config, name=f"layers_{i}")(x, mask)
        return x


class CLIPTextEmbeddings(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, ids):
        c = self.config
        tok = nn.Embed(c.vocab_size, c.hidden_size, name="token_embedding")(ids)
        pos = nn.Embed(c.max_position_embeddings, c.hidden_size, name="position_embedding")(
            jnp.arange(ids.shape[1])[None, :])
        return tok + pos


class CLIPTextTransformer(nn.Module):
    config: CLIPTextConfig

    @nn.compact
    def __call__(self, ids):
        c = self.config
        length = ids.shape[1]
        if length > c.max_position_embeddings:
            raise ValueError(f"token sequence of length {length} exceeds max_position_embeddings="
                             f"{c.max_position_embeddings}")
        x = CLIPTextEmbeddings(c, name="embeddings")(ids)
        causal = jnp.where(jnp.tril(jnp.ones((length, length), bool)), 0.0, -jnp.inf).astype(x.dtype)
        x = CLIPEncoder(c, name="encoder")(x, causal[None, None])
        return nn.LayerNorm(c.layer_norm_eps, name="final_layer_norm")(x)


class CLIPTextModel(nn.Module):
    """``CLIPTextModel``: returns ``last_hidden_state`` ``(N, L, hidden_size)``."""

    config: CLIPTextConfig

    @nn.compact
    def __call__(self, input_ids):
        return CLIPTextTransformer(self.config, name="text_model")(jnp.asarray(input_ids, jnp.int32))
