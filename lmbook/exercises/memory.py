"""Checker for memory arithmetic (chapter 9): the size of a KV cache. Reference: the bytes of the
key and value tensors themselves, built on torch's ``meta`` device (shapes, no memory)."""
from __future__ import annotations

import torch

from lmbook.exercises._report import call, checker, run_cases

__all__ = ["check_kv_cache_memory"]


@checker
def check_kv_cache_memory(fn) -> None:
    """``fn(n_layer=, n_kv_heads=, head_dim=, seq_len=, batch_size=, dtype=)`` -> bytes (an int) that
    the keys and values of every layer take when ``seq_len`` tokens of ``batch_size`` sequences
    are cached; ``dtype`` is a torch dtype (torch.float32, torch.bfloat16, ...)."""
    def case(**cfg):
        def run():
            got = call(fn, **cfg)
            one = torch.empty(cfg["batch_size"], cfg["n_kv_heads"], cfg["seq_len"], cfg["head_dim"],
                              dtype=cfg["dtype"], device="meta")  # (B, H_kv, T, d): one layer's keys
            ref = 2 * cfg["n_layer"] * one.numel() * one.element_size()
            if not isinstance(got, (int, float)) or got != ref:
                values = 2 * cfg["n_layer"] * one.numel()
                hints = [(ref // 2, " That is half: both keys AND values are cached."),
                         (ref // cfg["n_layer"], " That is one layer: every layer has its own cache."),
                         (values, " That counts values, not bytes: multiply by the bytes per value (dtype)."),
                         (values * 4, " That assumes 4 bytes per value: use the dtype's size.")]
                hint = next((h for v, h in hints if got == v), "")
                raise AssertionError(f"expected {ref:,} bytes for {cfg}, got {got!r}.{hint}")
        return run
    f32, bf16, f16 = torch.float32, torch.bfloat16, torch.float16
    return run_cases("check_kv_cache_memory", [
        ("GPT-2 small, 1024 tokens, float32",
         case(n_layer=12, n_kv_heads=12, head_dim=64, seq_len=1024, batch_size=1, dtype=f32)),
        ("SmolLM2-135M (3 KV heads), 2048 tokens, bfloat16",
         case(n_layer=30, n_kv_heads=3, head_dim=64, seq_len=2048, batch_size=1, dtype=bf16)),
        ("batch 8, float16", case(n_layer=4, n_kv_heads=8, head_dim=32, seq_len=100, batch_size=8, dtype=f16))])
