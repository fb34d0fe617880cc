"""Attention, as in "Attention Is All You Need" (Vaswani et al., 2017), section 3.2.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Shapes: B batch, H heads, T query positions, S key/value positions, d_k = d_model / H.
Masks are boolean and follow torch's convention: True means "may attend", False "blocked".
They broadcast to (B, H, T, S); ``causal_mask`` and ``padding_mask`` build the usual ones.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["causal_mask", "padding_mask", "attention_weights", "scaled_dot_product_attention",
           "MultiHeadAttention", "sinusoidal_positions", "SinusoidalPositions"]


# --------------------------------------------------------------------------------------------
# masks
def causal_mask(T: int, S: int | None = None, device=None) -> torch.Tensor:
    """(T, S) bool, True on and below the diagonal: position t sees positions 0..t only.
    With S > T (queries are the last T of S positions) the diagonal is shifted accordingly."""
    S = T if S is None else S
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, S) with 1/True for real tokens and 0/False for padding -> (B, 1, 1, S) bool, which
    broadcasts over heads and query positions: no query attends to a padding key."""
    if attention_mask.dim() != 2:
        raise ValueError(
            f"padding_mask expects (batch, seq_len) with 1 for tokens and 0 for padding, "
            f"got shape {tuple(attention_mask.shape)}"
        )
    return attention_mask.bool()[:, None, None, :]


def _check(q, k, v, mask):
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError("q, k and v need at least 2 dimensions: (..., seq_len, dim)")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d_k: q has {q.shape[-1]}, k has {k.shape[-1]}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions: k has {k.shape[-2]}, v has {v.shape[-2]}"
        )
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(
                f"mask must be a bool tensor (True = may attend), got {mask.dtype}; "
                "for a 0/1 tensor use mask.bool(), for an additive float mask use mask == 0"
            )
        T, S = q.shape[-2], k.shape[-2]
        try:
            torch.broadcast_shapes(mask.shape, q.shape[:-2] + (T, S))
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores "
                f"{tuple(q.shape[:-2]) + (T, S)} (..., queries, keys)"
            ) from None


# --------------------------------------------------------------------------------------------
# scaled dot-product attention
def attention_weights(q, k, mask=None, is_causal: bool = False) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_k)) with blocked positions set to -inf first.  (..., T, S)"""
    _check(q, k, k, mask)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, S)
    if is_causal:
        scores = scores.masked_fill(~causal_mask(q.shape[-2], k.shape[-2], q.device), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1)


def scaled_dot_product_attention(q, k, v, mask=None, *, is_causal: bool = False,
                                 dropout_p: float = 0.0, fast: bool = True):
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V.   q (..., T, d_k), k (..., S, d_k),
    v (..., S, d_v) -> (..., T, d_v).

    ``fast=True`` calls torch's fused kernel (flash / memory-efficient / math, whichever fits);
    ``fast=False`` runs the spelled-out formula. Both give the same result up to rounding, except
    for a query whose keys are all blocked: the formula gives 0/0 = NaN there, torch's kernel zeros.
    """
    _check(q, k, v, mask)
    if fast:
        if is_causal and mask is not None:  # SDPA takes one or the other: fold the causal part in
            mask = mask & causal_mask(q.shape[-2], k.shape[-2], q.device)
            is_causal = False
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                              is_causal=is_causal)
    weights = attention_weights(q, k, mask, is_causal)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v  # (..., T, d_v)


# --------------------------------------------------------------------------------------------
# multi-head attention
class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W^Q_i, K W^K_i, V W^V_i).

    Self-attention: ``mha(x)``. Encoder-decoder (cross) attention: ``mha(x, context=memory)``,
    queries from ``x``, keys and values from ``context``.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_heads, self.d_k = d_model, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W^Q for all heads at once
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)  # W^K
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)  # W^V
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W^O
        self.dropout = dropout
        self.fast = True  # False: use the spelled-out formula (same numbers, slower)

    def split_heads(self, x):  # (B, T, C) -> (B, H, T, d_k)
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_k).transpose(1, 2)

    def forward(self, x, context=None, mask=None, is_causal: bool = False, need_weights: bool = False):
        """x (B, T, C); context (B, S, C) or None; mask broadcastable to (B, H, T, S).
        Returns (B, T, C), or ((B, T, C), (B, H, T, S) weights) when ``need_weights``."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"expected x of shape (batch, seq_len, {self.d_model}), got {tuple(x.shape)}")
        context = x if context is None else context
        q = self.split_heads(self.q_proj(x))        # (B, H, T, d_k)
        k = self.split_heads(self.k_proj(context))  # (B, H, S, d_k)
        v = self.split_heads(self.v_proj(context))  # (B, H, S, d_k)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            weights = attention_weights(q, k, mask, is_causal)  # (B, H, T, S)
            y = F.dropout(weights, p) @ v if p else weights @ v
        else:
            y = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal, dropout_p=p,
                                             fast=self.fast)
        B, H, T, d_k = y.shape
        y = self.out_proj(y.transpose(1, 2).reshape(B, T, H * d_k))  # (B, T, C)
        return (y, weights) if need_weights else y

    def to_torch(self) -> nn.MultiheadAttention:
        """The same layer as a ``torch.nn.MultiheadAttention(batch_first=True)`` with these weights
        copied in (torch keeps W^Q, W^K, W^V stacked in one ``in_proj_weight``). Mind torch's mask
        convention: its bool ``attn_mask``/``key_padding_mask`` mark positions that are BLOCKED."""
        bias = self.q_proj.bias is not None
        ref = nn.MultiheadAttention(self.d_model, self.n_heads, dropout=self.dropout, bias=bias,
                                    batch_first=True, device=self.q_proj.weight.device,
                                    dtype=self.q_proj.weight.dtype)
        with torch.no_grad():
            ref.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
            ref.out_proj.weight.copy_(self.out_proj.weight)
            if bias:
                ref.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
                ref.out_proj.bias.copy_(self.out_proj.bias)
        return ref.train(self.training)


# --------------------------------------------------------------------------------------------
# positions
def sinusoidal_positions(T: int, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(...).   (T, d_model)"""
    if d_model % 2:
        raise ValueError(f"d_model must be even for sinusoidal positions, got {d_model}")
    pos = torch.arange(T, dtype=torch.float32)[:, None]                     # (T, 1)
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2) / d_model)  # (d/2,)
    pe = torch.zeros(T, d_model)
    pe[:, 0::2] = torch.sin(pos * inv_freq)
    pe[:, 1::2] = torch.cos(pos * inv_freq)
    return pe


class SinusoidalPositions(nn.Module):
    """Adds fixed sinusoidal position encodings to token embeddings: x (B, T, C) -> (B, T, C)."""

    def __init__(self, d_model: int, max_len: int = 4096):
        super().__init__()
        self.register_buffer("pe", sinusoidal_positions(max_len, d_model), persistent=False)

    def forward(self, x):
        if x.dim() != 3 or x.shape[-1] != self.pe.shape[1]:
            raise ValueError(f"expected x of shape (batch, seq_len, {self.pe.shape[1]}), got {tuple(x.shape)}")
        T = x.shape[1]
        if T > self.pe.shape[0]:
            raise ValueError(f"sequence of {T} positions is longer than max_len={self.pe.shape[0]}")
        return x + self.pe[:T].to(x.dtype)
