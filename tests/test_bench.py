"""lmbook.bench: best_time calls and waits as documented; peak_memory replays allocations in
order (what is alive at the same time adds up, what was freed does not), quietly."""
from __future__ import annotations

import time

import pytest
import torch

from lmbook.attention import scaled_dot_product_attention
from lmbook.bench import best_time, peak_memory, timings


def test_best_time_is_the_minimum_after_warmup():
    calls = []

    def fn():
        calls.append(None)
        time.sleep(0.002 if len(calls) == 2 else 0.02)  # call 1 is the warm-up, call 2 the fastest

    seconds = best_time(fn, repeats=3, warmup=1)
    assert len(calls) == 4
    assert 0.002 <= seconds < 0.02
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        best_time(fn, repeats=0)


def test_timings_times_every_call_in_order_after_warmup():
    calls = []

    def fn():
        calls.append(None)
        time.sleep(0.03 if len(calls) == 3 else 0.002)  # call 1 is the warm-up; call 3 is slow

    seconds = timings(fn, repeats=3, warmup=1)
    assert len(calls) == 4 and len(seconds) == 3
    assert seconds[1] >= 0.03 and seconds[0] < 0.03 and seconds[2] < 0.03
    assert best_time(lambda: time.sleep(0.001), repeats=2, warmup=0) >= 0.001
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        timings(fn, repeats=0)


def test_peak_memory_counts_what_is_alive_at_once():
    def both_alive():
        a = torch.empty(1000)  # 4000 bytes
        b = torch.empty(1000)
        return a, b

    def one_after_the_other():
        torch.empty(1000)
        torch.empty(1000)

    assert peak_memory(lambda: torch.empty(1000)) == 4000
    assert peak_memory(both_alive) == 8000
    assert peak_memory(one_after_the_other) == 4000
    assert peak_memory(lambda: None) == 0


def test_peak_memory_ignores_inputs_and_sees_the_n_squared_matrices():
    peaks = {}
    with torch.no_grad():
        for n in (256, 512):
            q, k, v = (torch.randn(1, 1, n, 16) for _ in range(3))
            peaks[n] = peak_memory(lambda: scaled_dot_product_attention(q, k, v, fast=False))
            assert peaks[n] >= 2 * n * n * 4  # scores and weights (float32) alive together
    assert 3.5 < peaks[512] / peaks[256] < 4.5  # quadratic


def test_peak_memory_prints_nothing_and_refuses_other_devices(capfd):
    peak_memory(lambda: torch.ones(10))
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    with pytest.raises(ValueError, match="'cpu' or 'cuda' memory, not 'meta'"):
        peak_memory(lambda: None, device="meta")
