"""A Llama-style decoder (Touvron et al. 2023): GPT's decoder with the changes made since 2019.

    tokens -> token embeddings -> n x [x + attn(RMSNorm(x)); x + SwiGLU(RMSNorm(x))] -> RMSNorm -> logits
    RMSNorm        x / sqrt(mean(x^2) + eps) * g: no mean subtracted, no bias (Zhang & Sennrich 2019)
    rotary         positions enter as a rotation of each query and key (Su et al. 2021): no position
                   embeddings; q_m . k_n depends on m - n only
    SwiGLU         down(silu(gate(x)) * up(x)) instead of GELU(W1 x) (Shazeer 2020)
    grouped-query  Hkv < H key/value heads, each shared by H / Hkv query heads (Ainslie et al. 2023):
                   a smaller KV cache

Parameter and config names follow transformers' ``LlamaForCausalLM`` (``model.layers.0.self_attn.
q_proj``, ``num_key_value_heads``...), so ``lmbook.models.hf`` converts by copying. The defaults are
SmolLM2-135M's. Like ``GPT``, ``labels`` are already shifted (``labels[b, t]`` follows
``input_ids[b, :t+1]``; -100 = no target). ``attention_mask`` (1 = token, 0 = padding) may pad on
the left: positions are counted from the first real token, as transformers' ``generate`` does.
Shapes: B batch, T positions, C hidden_size, H heads, Hkv key/value heads, d head size, V vocab.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.attention import scaled_dot_product_attention
from lmbook.generate import decoding_mask, decoding_positions
from lmbook.models.common import ModelOutput, causal_lm_loss, check_ids, count_parameters

__all__ = ["LlamaConfig", "Llama", "RMSNorm", "RotaryEmbedding", "rotate_half", "apply_rotary", "repeat_kv"]


@dataclass
class LlamaConfig:
    vocab_size: int = 49152
    hidden_size: int = 576
    intermediate_size: int = 1536  # width of the SwiGLU MLP
    num_hidden_layers: int = 30
    num_attention_heads: int = 9
    num_key_value_heads: int = 3  # = num_attention_heads: multi-head attention; 1: multi-query
    max_position_embeddings: int = 8192  # the longest context the model was trained for
    rms_norm_eps: float = 1e-5
    rope_theta: float = 100000.0  # base of the rotary frequencies
    tie_word_embeddings: bool = True  # the output layer is the token embedding matrix

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"LlamaConfig.{name} must be a positive integer, got {getattr(self, name)}")
        H, Hkv = self.num_attention_heads, self.num_key_value_heads
        if self.hidden_size % H or (self.hidden_size // H) % 2:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be num_attention_heads ({H}) times an "
                             f"even head size: rotary embeddings rotate pairs of dimensions")
        if H % Hkv:
            raise ValueError(f"num_attention_heads ({H}) must be a multiple of num_key_value_heads ({Hkv}): "
                             f"each key/value head serves the same number of query heads")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x):  # (..., C), computed in float32 as transformers does
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x):  # (x1, x2) -> (-x2, x1) on the two halves of the last dimension
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x, cos, sin):
    """Rotate the pairs (x_i, x_{i+d/2}) of ``x`` (B, H, T, d) by angle pos * theta^(-2i/d):
    transformers' convention (halves, not interleaved pairs), so its weights load unchanged.
    cos, sin (B or 1, T, d)."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


class RotaryEmbedding(nn.Module):
    """cos and sin of pos * theta^(-2i/d) for every position, computed once: (max_pos, d) each."""

    def __init__(self, head_dim: int, max_pos: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))  # (d/2,)
        freqs = torch.arange(max_pos, dtype=torch.float)[:, None] * inv_freq  # (max_pos, d/2)
        angles = torch.cat((freqs, freqs), dim=-1)  # (max_pos, d): each angle for both halves
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, pos):  # (B or 1, T) long -> cos, sin (B or 1, T, d)
        return self.cos[pos], self.sin[pos]


def repeat_kv(x, n_rep: int):  # (B, Hkv, S, d) -> (B, Hkv * n_rep, S, d): each KV head n_rep times
    if n_rep == 1:
        return x
    B, Hkv, S, d = x.shape
    return x[:, :, None].expand(B, Hkv, n_rep, S, d).reshape(B, Hkv * n_rep, S, d)


class LlamaAttention(nn.Module):
    """Causal grouped-query self-attention with rotary positions."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.H, self.Hkv, self.d = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        C = config.hidden_size
        self.q_proj = nn.Linear(C, self.H * self.d, bias=False)
        self.k_proj = nn.Linear(C, self.Hkv * self.d, bias=False)
        self.v_proj = nn.Linear(C, self.Hkv * self.d, bias=False)
        self.o_proj = nn.Linear(self.H * self.d, C, bias=False)
        self.fast = True  # False: spelled-out softmax(QK^T/sqrt(d))V instead of torch's SDPA kernel

    def forward(self, x, cos, sin, mask=None, is_causal=True, cache=None, layer=0):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.d).transpose(1, 2)    # (B, H, T, d)
        k = self.k_proj(x).view(B, T, self.Hkv, self.d).transpose(1, 2)  # (B, Hkv, T, d)
        v = self.v_proj(x).view(B, T, self.Hkv, self.d).transpose(1, 2)  # (B, Hkv, T, d)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, Hkv, S, d): the cached positions and these
        n_rep = self.H // self.Hkv
        if T == 1:  # one query (decoding): its H heads as n_rep queries of each KV head, no copy
            y = scaled_dot_product_attention(q.view(B, self.Hkv, n_rep, self.d), k, v, mask,
                                             fast=self.fast).view(B, self.H, 1, self.d)  # (B, H, 1, d)
        else:
            k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, S, d)
            y = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal, fast=self.fast)  # (B, H, T, d)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.H * self.d))  # (B, T, C)


class LlamaMLP(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        C, I = config.hidden_size, config.intermediate_size
        self.gate_proj, self.up_proj = nn.Linear(C, I, bias=False), nn.Linear(C, I, bias=False)
        self.down_proj = nn.Linear(I, C, bias=False)

    def forward(self, x):  # (B, T, C) -> (B, T, I) -> (B, T, C)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block: x + attn(RMSNorm(x)), then x + mlp(RMSNorm(x))."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = LlamaMLP(config)

    def forward(self, x, cos, sin, mask=None, is_causal=True, cache=None, layer=0):  # (B, T, C)
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, is_causal, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    """``Llama(LlamaConfig(...))``; ``model(input_ids, labels=None, attention_mask=None, cache=None,
    last_only=False)`` -> ``ModelOutput(logits, loss)``.

    With ``cache`` (a ``lmbook.generate.KVCache``) the tokens continue the cached ones: their keys
    and values are added to it, and ``attention_mask`` then covers the cached and the new positions.
    ``last_only`` computes the logits of the last position only, (B, 1, V): what decoding needs."""

    takes_kv_cache = True  # forward(..., cache=KVCache): lmbook.generate decodes with a cache

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(config.vocab_size, config.hidden_size),
            layers=nn.ModuleList([LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers)]),
            norm=RMSNorm(config.hidden_size, config.rms_norm_eps),
        ))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.rotary = RotaryEmbedding(config.head_dim, config.max_position_embeddings, config.rope_theta)
        for module in self.modules():  # N(0, 0.02), as transformers initialises Llama
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def num_parameters(self) -> int:
        """All parameters (a tied embedding matrix once)."""
        return count_parameters(self)

    def forward(self, input_ids, labels=None, attention_mask=None, cache=None, last_only=False):
        cfg = self.config
        check_ids(input_ids, cfg.vocab_size, cfg.max_position_embeddings, len_name="max_position_embeddings")
        B, T = input_ids.shape
        past = 0 if cache is None else cache.length
        if past + T > cfg.max_position_embeddings:
            raise ValueError(f"the cache holds {past} positions and {T} more came: the model's context is "
                             f"max_position_embeddings={cfg.max_position_embeddings}; start a new cache")
        mask, is_causal = decoding_mask(attention_mask, T, past, input_ids.device)  # (B, 1, T, S) or None
        cos, sin = self.rotary(decoding_positions(attention_mask, T, past, input_ids.device))  # (B|1, T, d)
        x = self.model.embed_tokens(input_ids)  # (B, T, C)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask, is_causal, cache, i)
        x = self.model.norm(x[:, -1:] if last_only else x)
        logits = self.lm_head(x)  # (B, T, V), or (B, 1, V) when last_only
        loss = causal_lm_loss(logits, labels, vocab_size=cfg.vocab_size, last_only=last_only)
        return ModelOutput(logits=logits, loss=loss)
