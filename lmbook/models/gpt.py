"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019), nanoGPT style.

    tokens -> token + learned position embeddings -> n_layer x [x + attn(LN(x)); x + mlp(LN(x))]
           -> LN -> logits = h @ wte^T (the output layer shares the token embedding matrix)

Parameter names follow GPT-2 (``transformer.wte``, ``h.0.attn.c_attn``...), so ``lmbook.models.hf``
converts to and from transformers' ``GPT2LMHeadModel`` by renaming and transposing.
Shapes: B batch, T positions, C = n_embd, H = n_head, V = vocab_size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.attention import scaled_dot_product_attention
from lmbook.generate import decoding_mask, decoding_positions
from lmbook.models.common import (ModelOutput, causal_lm_loss, check_ids, count_parameters,
                                  values_readable)


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024  # the longest context the model sees (learned position embeddings)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers, as GPT-2

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                             f"each head gets n_embd / n_head dimensions")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention: position t attends to positions 0..t."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # W^Q|W^K|W^V fused
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)      # W^O
        self.resid_dropout = nn.Dropout(config.dropout)
        self.fast = True  # False: spelled-out softmax(QK^T/sqrt(d))V instead of torch's SDPA kernel

    def forward(self, x, mask=None, is_causal=True, cache=None, layer=0):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)           # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, d)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, d)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, d)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, H, S, d): the cached positions and these
        y = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal, fast=self.fast,
                                          dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, d)
        y = y.transpose(1, 2).reshape(B, T, C)                          # (B, T, C) heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):  # (B, T, C) -> (B, T, 4C) -> (B, T, C)
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))  # GPT-2's GELU


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, mask=None, is_causal=True, cache=None, layer=0):  # (B, T, C) -> (B, T, C)
        x = x + self.attn(self.ln_1(x), mask, is_causal, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """``GPT(GPTConfig(...))``; ``model(input_ids, labels=None)`` -> ``ModelOutput(logits, loss)``.

    ``labels[b, t]`` is the token that should follow ``input_ids[b, :t+1]`` (already shifted,
    nanoGPT style: ``x, y = ids[:, :-1], ids[:, 1:]``); -100 marks positions without a target.
    With ``cache`` (a ``lmbook.generate.KVCache``) the tokens continue the cached ones (decoding);
    ``last_only`` computes the logits of the last position only, (B, 1, V).
    """

    takes_kv_cache = True  # forward(..., cache=KVCache): lmbook.generate decodes with a cache

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
            wpe=nn.Embedding(config.block_size, config.n_embd),  # learned position embeddings
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, eps=1e-5, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying (Press & Wolf 2017)
        self.register_buffer("pos", torch.arange(config.block_size), persistent=False)
        # GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """All parameters (the tied matrix once); ``non_embedding=True`` leaves out the position
        embeddings, as nanoGPT does (the token embeddings are also the output layer, so they stay)."""
        return count_parameters(self, exclude=(self.transformer.wpe,) if non_embedding else ())

    def forward(self, input_ids, labels=None, attention_mask=None, cache=None, last_only=False):
        """input_ids (B, T) long; labels (B, T) long or None.

        ``attention_mask`` (B, T), 1 = token, 0 = padding, is accepted for batches padded on the
        right: under causal attention a token never sees the padding after it, so nothing needs
        masking (give the padded positions label -100). Left padding would shift positions and is
        refused, except with a ``cache``: there the mask covers the cached and new positions
        (B, P + T) and positions are counted from each row's first token, so prompts of different
        lengths can be left-padded. Values (id range, padding side) are checked on CPU tensors
        only: on a GPU that would make every step wait for it (see ``values_readable``)."""
        cfg = self.config
        check_ids(input_ids, cfg.vocab_size, cfg.block_size)
        B, T = input_ids.shape
        mask, is_causal, pos = None, True, self.pos[:T]
        if cache is not None:  # decoding: positions and mask depend on what the cache holds
            past = cache.length
            if past + T > cfg.block_size:
                raise ValueError(f"the cache holds {past} positions and {T} more came: the model's context "
                                 f"is block_size={cfg.block_size}; start a new cache with the last tokens")
            mask, is_causal = decoding_mask(attention_mask, T, past, input_ids.device)  # (B, 1, T, S) or None
            pos = decoding_positions(attention_mask, T, past, input_ids.device)  # (B or 1, T)
        elif attention_mask is not None:
            _check_right_padding(attention_mask, (B, T))
        tok = self.transformer.wte(input_ids)  # (B, T, C)
        pos = self.transformer.wpe(pos)  # (T, C), or (B or 1, T, C) with a cache
        x = self.transformer.drop(tok + pos)  # (B, T, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, mask, is_causal, cache, i)
        x = self.transformer.ln_f(x[:, -1:] if last_only else x)
        logits = self.lm_head(x)  # (B, T, V), or (B, 1, V) when last_only
        loss = causal_lm_loss(logits, labels, vocab_size=cfg.vocab_size, last_only=last_only)
        return ModelOutput(logits=logits, loss=loss)


def _check_right_padding(attention_mask, shape):
    if tuple(attention_mask.shape) != tuple(shape):
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(shape)}, "
                         f"got {tuple(attention_mask.shape)}")
    if not values_readable(attention_mask):
        return
    m = attention_mask.bool()
    if bool((m[:, 1:] & ~m[:, :-1]).any()):
        raise ValueError("GPT takes padding on the right only (a token after a padding position "
                         "was found): pad at the end and give the padded positions label -100")
