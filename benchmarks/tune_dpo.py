"""Preference tuning (DPO with LoRA, TRL's DPOTrainer) of the packaged SmolLM2-135M-Instruct to
keep a password in its system prompt secret, measured on held-out prompts with other passwords:
leak rate of greedy replies before/after (the rule: the password occurs in the reply), the same for
rephrased requests, refusals to unrelated questions, sentiment label accuracy (drift), preference
accuracy (implicit reward margin > 0), KL to the reference; time, CPU time, peak memory.

    python benchmarks/tune_dpo.py --preset cpu --threads 1
    python benchmarks/tune_dpo.py --preset cpu --threads 1 --mix 32     # replay: sentiment pairs mixed in
    python benchmarks/tune_dpo.py --preset cpu --threads 1 --reviews 100 [--mix 32]  # 200 reviews
    python benchmarks/tune_dpo.py --preset cpu --threads 1 --reviews 100 --mix 32 --sft-weight 1  # + SFT loss
"""
from __future__ import annotations

import argparse
import os
import resource
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="DPO steps (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="DPO learning rate (default: the preset's)")
    p.add_argument("--beta", type=float, default=None, help="DPO beta (default: the preset's)")
    p.add_argument("--mix", type=int, default=0,
                   help="sentiment pairs from the training split mixed into the DPO pairs (replay)")
    p.add_argument("--reviews", type=int, default=None,
                   help="held-out reviews per class for the sentiment drift check (default: the preset's 20)")
    p.add_argument("--sft-weight", type=float, default=0.0,
                   help="add the SFT loss of the chosen replies with this weight (TRL loss_type sigmoid + sft)")
    p.add_argument("--out", default="runs/tune_dpo")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from lmbook.tune.presets import get_tune_preset
    from lmbook.tune.recipes import run_dpo

    pre = get_tune_preset(args.preset)
    pre = pre.replace(dpo_lr=args.lr or pre.dpo_lr, dpo_beta=args.beta or pre.dpo_beta)
    print(f"preset {pre.name}: {pre.to_dict()}", flush=True)
    t, c = time.perf_counter(), time.process_time()
    sft = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, args.sft_weight]} if args.sft_weight else {}
    res = run_dpo(pre, steps=args.steps, out=args.out, progress=False, mix=args.mix,
                  sentiment_per_class=args.reviews, **sft)
    print(f"{res['pairs']} secret pairs + {res['mixed_in']} sentiment pairs mixed in; SFT loss weight "
          f"{args.sft_weight}")
    print(f"DPO losses {res['losses']}; {res['seconds']:.0f} s wall, {res['cpu_seconds']:.0f} s CPU for "
          f"{res['steps']} steps ({res['cpu_seconds'] / res['steps']:.1f} s CPU/step)")
    for k in ("before", "after"):
        print(f"{k} replies (first 4): {res[f'{k}_replies'][:4]}")
    print(f"[whole run: {time.perf_counter() - t:.0f} s wall, {time.process_time() - c:.0f} s CPU, load average "
          f"{os.getloadavg()[0]:.1f}, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB]")


if __name__ == "__main__":
    main()
