"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017).

    encoder:  src -> embed * sqrt(d_model) + sinusoidal positions -> N x EncoderLayer   (memory)
    decoder:  tgt -> embed * sqrt(d_model) + sinusoidal positions -> N x DecoderLayer(memory)
              -> linear (shares the target embedding matrix, section 3.4) -> logits

Each sub-layer is wrapped as in the paper (post-LN): ``x = LayerNorm(x + Dropout(Sublayer(x)))``.
``norm_first=True`` gives the pre-LN variant (``x = x + Dropout(Sublayer(LayerNorm(x)))``, plus a
final LayerNorm on each stack) that later models use because it trains stably without warm-up
(Xiong et al. 2020). Shapes: B batch, S source positions, T target positions, C = d_model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.attention import MultiHeadAttention, SinusoidalPositions, padding_mask
from lmbook.models.common import (ModelOutput, check_ids, check_labels, count_parameters,
                                  values_readable)


@dataclass
class TransformerConfig:
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512       # the paper's base model: 512 / 8 heads / 6+6 layers / 2048 / 0.1
    n_heads: int = 8
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    max_len: int = 512       # longest source or target sequence
    pad_id: int = 0          # source positions holding pad_id are masked out of attention
    norm_first: bool = False  # False: post-LN as in the paper; True: pre-LN
    label_smoothing: float = 0.0  # the paper trains with 0.1

    def __post_init__(self):
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "n_encoder_layers",
                     "n_decoder_layers", "d_ff", "max_len"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.d_model % 2:
            raise ValueError(f"d_model must be even for sinusoidal positions, got {self.d_model}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2, applied at every position: (B, T, C) -> (B, T, C)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Self-attention over the source, then the feed-forward network; each wrapped in a residual
    connection and LayerNorm. x (B, S, C), mask (B, 1, 1, S) bool or None -> (B, S, C)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.self_attn(h, mask=mask))
            return x + self.dropout(self.ff(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.self_attn(x, mask=mask)))
        return self.norm2(x + self.dropout(self.ff(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention over the target so far, cross-attention to the encoder's memory
    (queries from the decoder, keys and values from the memory), then the feed-forward network.
    x (B, T, C), memory (B, S, C), memory_mask (B, 1, 1, S) bool or None -> (B, T, C)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.1, norm_first: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x, memory, memory_mask=None):
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout(self.self_attn(h, is_causal=True))
            x = x + self.dropout(self.cross_attn(self.norm2(x), context=memory, mask=memory_mask))
            return x + self.dropout(self.ff(self.norm3(x)))
        x = self.norm1(x + self.dropout(self.self_attn(x, is_causal=True)))  # position t sees 0..t
        x = self.norm2(x + self.dropout(self.cross_attn(x, context=memory, mask=memory_mask)))
        return self.norm3(x + self.dropout(self.ff(x)))


class Transformer(nn.Module):
    """``Transformer(TransformerConfig(...))``; ``model(src_ids, tgt_ids, src_mask=None, labels=None)``
    -> ``ModelOutput(logits (B, T, tgt_vocab_size), loss)``.

    ``tgt_ids`` is the decoder input (it starts with a BOS token); ``labels[b, t]`` the token that
    should follow ``tgt_ids[b, :t+1]`` (-100: no target). ``src_mask`` (B, S): 1 = token,
    0 = padding; when None, positions holding ``config.pad_id`` are the padding.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.positions = SinusoidalPositions(c.d_model, c.max_len)
        self.dropout = nn.Dropout(c.dropout)
        self.encoder_layers = nn.ModuleList(
            [EncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first) for _ in range(c.n_encoder_layers)])
        self.decoder_layers = nn.ModuleList(
            [DecoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, c.norm_first) for _ in range(c.n_decoder_layers)])
        self.encoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if c.norm_first else nn.Identity()
        self.generator = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        # initialisation: Xavier for the linear layers; embeddings N(0, 1/d_model) so that the
        # embedding times sqrt(d_model) has unit scale, like the sinusoids added to it
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.normal_(self.src_embed.weight, std=c.d_model ** -0.5)
        nn.init.normal_(self.tgt_embed.weight, std=c.d_model ** -0.5)
        self.generator.weight = self.tgt_embed.weight  # shared matrix (section 3.4)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """All parameters (the shared matrix once); ``non_embedding=True`` leaves out the source
        embeddings (the target embeddings are also the output layer, so they stay, as in GPT)."""
        return count_parameters(self, exclude=(self.src_embed,) if non_embedding else ())

    def _embed(self, ids, table):  # (B, L) -> (B, L, C)
        return self.dropout(self.positions(table(ids) * math.sqrt(self.config.d_model)))

    def _memory_mask(self, src_ids=None, src_mask=None):  # -> (B, 1, 1, S) bool or None
        if src_mask is None:
            if src_ids is None:
                return None
            src_mask = src_ids != self.config.pad_id
        elif src_mask.dim() != 2 or (src_ids is not None and src_mask.shape != src_ids.shape):
            want = tuple(src_ids.shape) if src_ids is not None else "(batch, src_len)"
            raise ValueError(f"src_mask must have the shape of src_ids {want} "
                             f"(1 = token, 0 = padding), got {tuple(src_mask.shape)}")
        if values_readable(src_mask) and bool(src_mask.all()):
            return None  # nothing to mask: keep the unmasked fast path
        return padding_mask(src_mask)

    def encode(self, src_ids, src_mask=None):
        """src_ids (B, S) -> memory (B, S, C)."""
        c = self.config
        check_ids(src_ids, c.src_vocab_size, c.max_len, name="src_ids", len_name="max_len")
        mask = self._memory_mask(src_ids, src_mask)
        x = self._embed(src_ids, self.src_embed)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def decode(self, tgt_ids, memory, src_ids=None, src_mask=None):
        """tgt_ids (B, T), memory (B, S, C) -> logits (B, T, tgt_vocab_size). Give ``src_ids``
        (or ``src_mask``) so that padded source positions are masked, as in ``encode``."""
        c = self.config
        check_ids(tgt_ids, c.tgt_vocab_size, c.max_len, name="tgt_ids", len_name="max_len")
        mask = self._memory_mask(src_ids, src_mask)
        x = self._embed(tgt_ids, self.tgt_embed)
        for layer in self.decoder_layers:
            x = layer(x, memory, mask)
        return self.generator(self.decoder_norm(x))

    def forward(self, src_ids, tgt_ids, src_mask=None, labels=None):
        memory = self.encode(src_ids, src_mask)  # (B, S, C)
        logits = self.decode(tgt_ids, memory, src_ids=src_ids, src_mask=src_mask)  # (B, T, V)
        loss = None
        if labels is not None:
            B, T = tgt_ids.shape
            check_labels(labels, (B, T), "the next target token for each decoder position, -100 to skip",
                         self.config.tgt_vocab_size)
            loss = F.cross_entropy(logits.reshape(B * T, -1), labels.reshape(B * T), ignore_index=-100,
                                   label_smoothing=self.config.label_smoothing)
        return ModelOutput(logits=logits, loss=loss)
