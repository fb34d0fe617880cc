"""Measuring one call: how long it takes and how much memory it holds at its peak.

    best_time(fn, repeats=5, warmup=1, device=None)   seconds, the fastest of ``repeats`` calls
    timings(fn, repeats=5, warmup=1, device=None)     seconds of every one of ``repeats`` calls
    peak_memory(fn, device="cpu")                     bytes, the most the call holds at once

Both take a function of no arguments (``lambda: model(x)``) and discard what it returns.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

import torch

__all__ = ["best_time", "timings", "peak_memory"]


def _sync(device):
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is not None and device.type == "mps":
        torch.mps.synchronize()


def timings(fn, repeats: int = 5, warmup: int = 1, device=None) -> list[float]:
    """Wall-clock seconds of each of ``repeats`` calls ``fn()``, in call order, after ``warmup``
    untimed calls: their spread shows how much the machine's other work moves a timing. With
    ``device`` on CUDA or MPS the clock waits for the queued kernels to finish (they run
    asynchronously)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def best_time(fn, repeats: int = 5, warmup: int = 1, device=None) -> float:
    """Wall-clock seconds of the fastest of ``repeats`` calls ``fn()``, after ``warmup`` untimed
    calls. The minimum is the run least disturbed by other work on the machine. With ``device``
    on CUDA or MPS the clock waits for the queued kernels to finish (they run asynchronously)."""
    return min(timings(fn, repeats=repeats, warmup=warmup, device=device))


@contextlib.contextmanager
def _no_native_stderr():
    """Send file descriptor 2 to /dev/null for the duration. Only used around the profiler's start
    and stop: its C++ backend (Kineto) logs a "profiler_start"/"profiler_stop" line on the process's
    stderr, a level that only the environment variable KINETO_LOG_LEVEL, read once per process
    before the first profile, can silence."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def peak_memory(fn, device="cpu") -> int:
    """Peak bytes allocated on ``device`` while ``fn()`` runs, above what was allocated before it
    (so its inputs do not count, its temporaries, scratch buffers and output do).

    CUDA: the caching allocator's peak statistic. CPU: torch's profiler records every allocation
    and every free with a timestamp (``profile_memory=True``); replaying them in order gives the
    running total, and its maximum is the peak. Other devices are not supported."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        raise ValueError(f"peak_memory measures 'cpu' or 'cuda' memory, not {device.type!r}")

    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _no_native_stderr():
        prof.start()
    try:
        fn()
    finally:
        with _no_native_stderr():
            prof.stop()
    records = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]" and str(e.device_type()) == "DeviceType.CPU")
    current = peak = 0
    for _, nbytes in records:  # + allocated, - freed
        current += nbytes
        peak = max(peak, current)
    return peak
