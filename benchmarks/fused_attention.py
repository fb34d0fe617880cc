"""Chapter 7's training-step timings, repeated: how far apart are the variants, and how far does
the machine's other work move one timing?

The step is exactly chapter 7's (chapters/07_tools.ipynb, "Fused attention and bf16 autocast"):
a 2-layer lmbook GPT (4 heads, width 128, vocabulary 96, random weights, seed 0), batch 4 of
random token ids, forward with the loss and backward, at context lengths 128, 256 and 512, as
spelled-out softmax(QK^T/sqrt(d_k))V in float32, torch's fused ``scaled_dot_product_attention``
(SDPA) in float32, and SDPA under bf16 autocast. One untimed step per variant first; then
``--rounds`` rounds, each timing every (length, variant) once (``lmbook.bench.timings``), so
that a change in machine load hits all variants alike.

For each length and variant it prints the median time per step and the range over the rounds
(min to max, and max / min); then, per length, the ratio of each variant to the spelled-out step
within the same round (median and range over rounds), and the load average (1 minute) before
and after. A ratio whose range spans 1.0 is a difference the machine's noise can reverse.

    python benchmarks/fused_attention.py                  # 1 thread, 9 rounds
    python benchmarks/fused_attention.py --rounds 20 --threads 2

Measured (2 CPU cores shared with other jobs, load average 10.8 to 12.3; torch 2.13.0+cpu, one
thread; ``--rounds 15``, 47 s):

    ms per step      T   median  (min - max)      ratio to spelled out: median (min - max)
    spelled out    128     99.8  (80.6 - 114.7)
    SDPA fp32      128     78.9  (54.6 -  99.0)   0.81 (0.63 - 0.96)
    SDPA bf16      128     97.2  (69.5 - 118.7)   0.99 (0.70 - 1.23)  spans 1.0
    spelled out    256    247.3 (206.2 - 302.2)
    SDPA fp32      256    178.9 (137.9 - 199.9)   0.66 (0.57 - 0.87)
    SDPA bf16      256    149.1 (125.5 - 190.9)   0.60 (0.52 - 0.73)
    spelled out    512    892.6 (700.3 - 995.6)
    SDPA fp32      512    437.5 (339.5 - 496.4)   0.51 (0.44 - 0.58)
    SDPA bf16      512    338.0 (285.8 - 416.4)   0.40 (0.34 - 0.54)

One timing moved by a factor 1.4 to 1.8 between rounds (max / min), but within a round the fused
step was faster than the spelled-out one every time (at 512: 0.44 to 0.58 of its time), and bf16
autocast faster still from T = 256 (the CPU has AVX-512 BF16 / AMX). At T = 128 bf16's ratio spans
1.0: there the noise can reverse it. An earlier run with the default 9 rounds (load 10.8) gave
the same picture: at 512, 0.50 (0.45 - 0.51) and 0.36 (0.35 - 0.41).
"""
from __future__ import annotations

import argparse
import os
import statistics


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9, help="timed rounds (default 9)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512],
                    help="context lengths (default: 128 256 512)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args()
    if args.rounds < 2:
        ap.error(f"--rounds must be at least 2 to show a spread, got {args.rounds}")

    import torch

    import lmbook
    from lmbook.bench import timings
    from lmbook.models import GPT, GPTConfig, set_fast_attention

    lmbook.setup(threads=args.threads)
    load_before = os.getloadavg()[0]
    variants = {"spelled out, fp32": (False, None), "SDPA, fp32": (True, None),
                "SDPA, bf16 autocast": (True, torch.bfloat16)}
    steps = {}
    torch.manual_seed(0)
    for T in args.lengths:
        model = GPT(GPTConfig(vocab_size=96, block_size=T, n_layer=2, n_head=4, n_embd=128))
        ids = torch.randint(0, 96, (4, T))
        for name, (fast, dtype) in variants.items():
            def step(model=model, ids=ids, fast=fast, dtype=dtype):
                set_fast_attention(model, fast)
                autocast = torch.autocast("cpu", dtype=dtype or torch.bfloat16,
                                          enabled=dtype is not None)
                with autocast:
                    loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                model.zero_grad(set_to_none=True)

            step()  # warm-up, untimed
            steps[T, name] = step

    times = {key: [] for key in steps}  # seconds per round
    for r in range(args.rounds):
        for key, step in steps.items():
            times[key] += timings(step, repeats=1, warmup=0)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    load_after = os.getloadavg()[0]

    print(f"\nms per training step over {args.rounds} rounds, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    print(f"{'T':>5} {'variant':<22} {'median':>8} {'min':>8} {'max':>8} {'max/min':>8}")
    for (T, name), ts in times.items():
        ms = [1e3 * t for t in ts]
        print(f"{T:>5} {name:<22} {statistics.median(ms):8.1f} {min(ms):8.1f} {max(ms):8.1f} "
              f"{max(ms) / min(ms):8.2f}")
    print("\nratio to the spelled-out step in the same round (below 1 = faster)")
    print(f"{'T':>5} {'variant':<22} {'median':>8} {'min':>8} {'max':>8}  spans 1.0")
    for T in args.lengths:
        base = times[T, "spelled out, fp32"]
        for name in list(variants)[1:]:
            ratios = [t / b for t, b in zip(times[T, name], base)]
            spans = min(ratios) < 1.0 < max(ratios)
            print(f"{T:>5} {name:<22} {statistics.median(ratios):8.2f} {min(ratios):8.2f} "
                  f"{max(ratios):8.2f}  {'yes' if spans else 'no'}")
    print(f"\nload average (1 min): {load_before:.1f} before, {load_after:.1f} after, on "
          f"{os.cpu_count()} cores")


if __name__ == "__main__":
    main()
