"""Checkers for chapter 3's building blocks: softmax, scaled dot-product attention, the causal
mask, RMSNorm and rotary positions (RoPE). References: ``lmbook.attention``, ``torch.softmax``,
``torch.nn.functional.rms_norm`` and transformers' ``apply_rotary_pos_emb`` (Llama)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lmbook.attention import causal_mask, padding_mask, scaled_dot_product_attention
from lmbook.exercises._report import call, checker, expect_close, expect_tensor, run_cases

__all__ = ["check_softmax", "check_attention", "check_causal_mask", "check_rms_norm", "check_rope"]


@checker
def check_softmax(fn) -> None:
    """``fn(x)`` -> softmax over the last dimension of ``x``, same shape and dtype."""
    def case(x):
        def run():
            got = expect_tensor(call(fn, x.clone()), x.shape, x.dtype)
            sums = got.double().sum(-1)
            if torch.isfinite(sums).all() and not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
                raise AssertionError(f"rows sum to {sums.flatten()[0].item():.4g}, not 1: normalise over the "
                                     "last dimension (dim=-1)")
            expect_close(got, torch.softmax(x, dim=-1), what="probabilities", mistakes={
                "softmax without subtracting the row maximum first": lambda: x.exp() / x.exp().sum(-1, keepdim=True)})
        return run
    x = torch.randn(2, 3, 5)
    big = torch.randn(2, 6) * 10 + 1000.0  # exp(1000) overflows: subtract the maximum first
    masked = torch.tensor([[0.0, float("-inf"), 1.0, float("-inf")]])  # masked positions get 0
    return run_cases("check_softmax", [
        ("random (2, 3, 5)", case(x)), ("one row (7,)", case(torch.randn(7))),
        ("large logits ~1000", case(big)), ("-inf entries", case(masked)),
        ("float64", case(torch.randn(3, 4, dtype=torch.float64)))])


@checker
def check_attention(fn) -> None:
    """``fn(q, k, v, mask=None)`` -> softmax(q k^T / sqrt(d_k)) v, shape (..., T, d_v). ``mask`` is
    bool, True = may attend, broadcastable to (..., T, S). A query whose keys are all blocked is
    not compared (the formula gives NaN there, torch's kernel 0); every other row is."""
    def case(q, k, v, mask=None, skip_rows=None):
        def run():
            got = expect_tensor(call(fn, q, k, v, mask), (*q.shape[:-1], v.shape[-1]), q.dtype)
            ref = scaled_dot_product_attention(q, k, v, mask, fast=False)
            keep = slice(None) if skip_rows is None else skip_rows
            d = q.shape[-1]
            scores = q @ k.transpose(-2, -1)
            expect_close(got[..., keep, :], ref[..., keep, :], what="outputs", mistakes={
                "attention without the 1/sqrt(d_k) scale": lambda: _masked_attn(scores, v, mask)[..., keep, :],
                "attention divided by d_k instead of sqrt(d_k)": lambda: _masked_attn(scores / d, v, mask)[..., keep, :],
                "attention that ignores the mask (blocked keys still get weight)":
                    lambda: _masked_attn(scores / math.sqrt(d), v, None)[..., keep, :],
                "attention with the mask inverted (True taken as blocked)": lambda: _masked_attn(
                    scores / math.sqrt(d), v, None if mask is None else ~mask)[..., keep, :],
                "softmax over the queries (dim=-2) instead of the keys (dim=-1)":
                    lambda: ((scores / math.sqrt(d)).softmax(-2) @ v)[..., keep, :]})
        return run
    r = torch.randn
    pad = padding_mask(torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]))  # (2, 1, 1, 5)
    full_block = torch.ones(4, 4, dtype=torch.bool)
    full_block[0] = False  # query 0 may attend to nothing
    return run_cases("check_attention", [
        ("random (B=2, H=3, T=4, d_k=8)", case(r(2, 3, 4, 8), r(2, 3, 4, 8), r(2, 3, 4, 8))),
        ("non-square: T=3 queries, S=5 keys, d_v=6", case(r(2, 3, 4), r(2, 5, 4), r(2, 5, 6))),
        ("causal mask (T=5)", case(r(1, 2, 5, 8), r(1, 2, 5, 8), r(1, 2, 5, 8), causal_mask(5))),
        ("padding mask (B, 1, 1, S)", case(r(2, 2, 5, 4), r(2, 2, 5, 4), r(2, 2, 5, 4), pad)),
        ("a fully blocked query row", case(r(1, 4, 8), r(1, 4, 8), r(1, 4, 8), full_block, slice(1, None))),
        ("batch size 1, float64", case(*(r(1, 6, 16, dtype=torch.float64) for _ in range(3))))])


def _masked_attn(scores, v, mask):
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


@checker
def check_causal_mask(fn) -> None:
    """``fn(T)`` -> (T, T) bool tensor, True where query position i may attend to key position j
    (j <= i), the convention of ``lmbook.attention`` and torch's SDPA."""
    def case(T):
        def run():
            got = call(fn, T)
            expect_tensor(got, (T, T))
            if got.dtype != torch.bool:
                raise AssertionError(f"the mask is {got.dtype}, expected torch.bool (True = may attend); an "
                                     "additive 0/-inf mask is another convention: convert it with mask == 0")
            ref = causal_mask(T)
            if torch.equal(got, ~ref):
                raise AssertionError("True and False are swapped: here True means 'may attend'")
            wrong = (got != ref).nonzero()
            if len(wrong):
                i, j = wrong[0].tolist()
                if got[i, j]:
                    raise AssertionError(f"the mask lets position {i} see position {j}, which comes later")
                seen = "itself" if i == j else f"position {j}, which comes before it"
                raise AssertionError(f"the mask blocks position {i} from seeing {seen}")
        return run
    return run_cases("check_causal_mask", [(f"T={T}", case(T)) for T in (2, 5, 8, 1)])


@checker
def check_rms_norm(fn) -> None:
    """``fn(x, weight, eps=1e-6)`` -> x / sqrt(mean(x^2 over the last dim) + eps) * weight
    (Zhang & Sennrich 2019; Llama's RMSNorm). Reference: ``torch.nn.functional.rms_norm``."""
    def case(x, w, eps=1e-6):
        def run():
            got = expect_tensor(call(fn, x, w, eps), x.shape, x.dtype)
            ms = x.pow(2).mean(-1, keepdim=True)
            expect_close(got, F.rms_norm(x, (x.shape[-1],), w, eps), what="outputs", mistakes={
                "LayerNorm (it subtracts the mean; RMSNorm only divides by the root mean square)":
                    lambda: F.layer_norm(x, (x.shape[-1],), w, None, eps),
                "RMSNorm without the weight": lambda: x / (ms + eps).sqrt(),
                "RMSNorm with eps added outside the square root": lambda: x / (ms.sqrt() + eps) * w,
                "x divided by the standard deviation": lambda: x / x.std(-1, keepdim=True) * w})
        return run
    d = 8
    return run_cases("check_rms_norm", [
        ("random (2, 5, 8)", case(torch.randn(2, 5, d), torch.rand(d) + 0.5)),
        ("batch size 1, non-zero mean", case(torch.randn(1, 3, d) + 2.0, torch.rand(d) + 0.5)),
        ("tiny inputs (eps matters)", case(torch.randn(2, d) * 1e-4, torch.ones(d), 1e-5)),
        ("float64", case(torch.randn(4, 16, dtype=torch.float64), torch.rand(16, dtype=torch.float64)))])


@checker
def check_rope(fn) -> None:
    """``fn(x, base=10000.0)`` -> x (..., T, d) with rotary position embeddings for positions
    0..T-1, in the Llama/transformers layout: feature i is rotated together with feature i + d/2,
    at angle position * base^(-2i/d). Reference: transformers' ``apply_rotary_pos_emb``."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    def reference(x, base, pairs="half"):
        T, d = x.shape[-2], x.shape[-1]
        inv_freq = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
        angles = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)         # (T, d/2)
        if pairs == "adjacent":  # RoFormer's layout: (x0, x1), (x2, x3), ...
            x2 = torch.stack([-x[..., 1::2], x[..., 0::2]], -1).flatten(-2)
            cos, sin = angles.cos().repeat_interleave(2, -1), angles.sin().repeat_interleave(2, -1)
            return x * cos.to(x.dtype) + x2 * sin.to(x.dtype)
        emb = torch.cat([angles, angles], -1)                                        # (T, d)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        return apply_rotary_pos_emb(x, x, cos, sin, unsqueeze_dim=0)[0]

    def case(x, base=10000.0):
        def run():
            got = expect_tensor(call(fn, x, base), x.shape, x.dtype)
            shifted = torch.cat([x[..., :1, :], x], -2)  # the same vectors at positions 1..T
            expect_close(got, reference(x, base), what="outputs", mistakes={
                "RoPE on adjacent pairs (x0, x1), (x2, x3): the RoFormer paper's layout; this checker "
                "follows Llama/transformers, which rotates x_i with x_{i+d/2}": lambda: reference(x, base, "adjacent"),
                "RoPE with positions starting at 1 instead of 0": lambda: reference(shifted, base)[..., 1:, :]})
        return run
    return run_cases("check_rope", [
        ("one sequence (1, 1, 6, 8)", case(torch.randn(1, 1, 6, 8))),
        ("B=2, H=3, T=5, d=16", case(torch.randn(2, 3, 5, 16))),
        ("base 100", case(torch.randn(2, 7, 4), 100.0)),
        ("float64", case(torch.randn(1, 9, 32, dtype=torch.float64)))])
