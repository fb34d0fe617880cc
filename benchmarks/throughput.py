"""Training throughput: lmbook's GPT against transformers' GPT2LMHeadModel, same everything.

Both models get the same configuration and the same initial weights (``lmbook.models.gpt_to_hf``),
the same batches (real character-level Shakespeare windows), the same loss (cross-entropy of the
logits against the shifted targets, computed outside the HF model so that it does the same work
as lmbook's), the same optimizer (torch AdamW, lmbook's parameter groups), the same thread count,
in one process. A third line runs lmbook's GPT through ``lmbook.train.fit`` (same batches, same
optimizer settings) to show what the trainer adds. Warm-up steps are not timed; timed repeats alternate between the two models so
that a change in machine load hits both. Prints tokens/s for each and their ratio.

    python benchmarks/throughput.py                     # CPU, nanoGPT's baby-GPT size
    python benchmarks/throughput.py --device cuda --n-layer 6 --n-embd 384 --block-size 256 --batch-size 64
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per repeat")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps per model before timing")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per model, interleaved")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: $LMBOOK_THREADS, else all cores); on a busy "
                         "machine 1 thread measures the models rather than the contention")
    ap.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best present)")
    ap.add_argument("--precision", default="auto", help="auto (bf16 on recent GPUs), fp32, bf16")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models (CUDA)")
    args = ap.parse_args()

    import transformers

    import lmbook
    from lmbook.data import CharTokenizer, get_batch, shakespeare_text
    from lmbook.models import GPT, GPTConfig, gpt_to_hf
    from lmbook.train import make_optimizer, resolve_precision

    device = lmbook.setup(seed=0, threads=args.threads, device=args.device, verbose=False)
    precision = resolve_precision(args.precision, device)
    text = shakespeare_text()
    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text))
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                    n_head=args.n_head, n_embd=args.n_embd, dropout=0.0)
    ours = GPT(cfg).to(device)
    hf = gpt_to_hf(ours).to(device)  # same weights; HF's default attention (SDPA)
    attn = getattr(hf.config, "_attn_implementation", "?")
    n_steps = args.warmup + args.repeats * args.steps
    g = torch.Generator().manual_seed(0)
    batches = [tuple(t.to(device) for t in get_batch(ids, args.block_size, args.batch_size, generator=g))
               for _ in range(n_steps)]

    def loss_ours(model, x, y):
        return model(input_ids=x, labels=y).loss

    def loss_hf(model, x, y):
        logits = model(input_ids=x).logits  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))

    # same function: the two models agree on the first batch
    with torch.no_grad():
        x, y = batches[0]
        a, b = loss_ours(ours, x, y).item(), loss_hf(hf, x, y).item()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    runs = {}
    for name, model, loss_fn in (("lmbook GPT", ours, loss_ours), ("HF GPT2LMHeadModel", hf, loss_hf)):
        model.train()
        fwd = torch.compile(model) if args.compile else model
        runs[name] = dict(model=fwd, loss_fn=loss_fn, opt=make_optimizer(model, 1e-3, 0.1, (0.9, 0.99)),
                          pos=0, rates=[])

    def step(run):
        x, y = batches[run["pos"] % len(batches)]
        run["pos"] += 1
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = run["loss_fn"](run["model"], x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run["model"].parameters(), 1.0)
        run["opt"].step()
        run["opt"].zero_grad(set_to_none=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    # lmbook.train.fit on a copy of lmbook's GPT and the same windows: what the trainer adds
    from lmbook.train import fit

    fit_model = GPT(cfg).to(device)
    fit_model.load_state_dict(ours.state_dict())
    examples = [{"input_ids": x[i], "labels": y[i]} for x, y in batches for i in range(len(x))]

    def fit_run(steps):
        fit(fit_model, examples, steps=steps, batch_size=args.batch_size, lr=1e-3, warmup_steps=0,
            betas=(0.9, 0.99), device=device, precision=precision, compile=args.compile,
            shuffle=False, progress=False)

    runs["lmbook GPT via fit()"] = dict(fit=fit_run, rates=[])
    for run in runs.values():  # warm-up, untimed
        if "fit" in run:
            run["fit"](args.warmup)
            continue
        for _ in range(args.warmup):
            step(run)
    load_before = os.getloadavg()
    for _ in range(args.repeats):
        for run in runs.values():
            sync()
            t0 = time.perf_counter()
            if "fit" in run:
                run["fit"](args.steps)  # includes fit's set-up: optimizer, data loader
            else:
                for _ in range(args.steps):
                    step(run)
            sync()
            run["rates"].append(args.steps * args.batch_size * args.block_size / (time.perf_counter() - t0))
    load_after = os.getloadavg()

    n_params = sum(p.numel() for p in ours.parameters())
    print(f"config: vocab {cfg.vocab_size}, n_layer {cfg.n_layer}, n_head {cfg.n_head}, n_embd {cfg.n_embd}, "
          f"block {cfg.block_size}, batch {args.batch_size}, dropout 0, {n_params:,} parameters")
    print(f"device {device.type}, precision {precision}, compile {args.compile}, torch threads "
          f"{torch.get_num_threads()}, HF attention {attn}, transformers {transformers.__version__}, "
          f"torch {torch.__version__}")
    print(f"first-batch loss: lmbook {a:.6f}, HF {b:.6f} (same weights, same function)")
    print(f"{args.repeats} interleaved repeats x {args.steps} steps, after {args.warmup} warm-up steps each")
    med = {}
    for name, run in runs.items():
        med[name] = statistics.median(run["rates"])
        rates = ", ".join(f"{r:,.0f}" for r in run["rates"])
        print(f"  {name:22s} median {med[name]:>10,.0f} tokens/s   (repeats: {rates})")
    ratio = med["lmbook GPT"] / med["HF GPT2LMHeadModel"]
    pairs = [o / h for o, h in zip(runs["lmbook GPT"]["rates"], runs["HF GPT2LMHeadModel"]["rates"])]
    print(f"ratio lmbook / HF: {ratio:.2f}x (ratio of medians); per adjacent repeat: "
          + ", ".join(f"{r:.2f}" for r in pairs) + f" (median {statistics.median(pairs):.2f}x)")
    overhead = med["lmbook GPT"] / med["lmbook GPT via fit()"]
    print(f"fit() vs the bare loop on the same model: {overhead:.2f}x the time (data loading, "
          "bookkeeping, and each call's set-up)")
    print(f"load average (1, 5, 15 min): before {tuple(round(v, 2) for v in load_before)}, "
          f"after {tuple(round(v, 2) for v in load_after)}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
