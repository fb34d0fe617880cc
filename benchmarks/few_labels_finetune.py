"""Chapter 4's few-labels fine-tuning (section 4.3) at several learning rates and step counts.

The runs are exactly the chapter's: the packaged all-MiniLM-L6-v2 (``lmbook.pretrained.load_bert``),
sentence vectors as the model was trained to give them (mean over the real tokens, then unit
length: ``lmbook.embed.mean_pool``), a linear head; Rotten Tomatoes (``load_rotten_tomatoes``)
with chapter 2's pool (the first 512 training reviews after ``shuffle(seed=0)``) and balanced
draws of 16, 64 or 256 labelled reviews (draw seed 0, 1, 2), scored on chapter 2's 400
validation reviews (200 per class); inputs up to 96 word pieces (no review is longer).

Starting points (``--inits``):

- ``lp``: linear probe first (``lmbook.embed.train_linear_probe``, l2 1e-2, on the frozen
  vectors), then the whole network fine-tuned from there (LP-FT, Kumar et al. 2022);
- ``fresh``: the same fine-tuning from a freshly drawn head (the usual recipe);
- ``random``: the same architecture with random weights and a fresh head.

Fine-tuning: AdamW (weight decay 0.01), constant learning rate, batches of 16 drawn without
replacement (a new order every epoch), dropout on. Accuracy and the share of reviews predicted
fresh are printed after every ``--eval-every`` steps (step 0: the starting point). Usage:

    python benchmarks/few_labels_finetune.py                       # the defaults below
    python benchmarks/few_labels_finetune.py --sizes 16 256 --lrs 3e-5 1e-4 --steps 32

Defaults: sizes 16 and 256, draw 0, learning rates 1e-5, 3e-5 and 1e-4, init lp, 32 steps
evaluated every 8.

Measured (2 CPU cores shared with other jobs, load average about 11; torch 2.13.0+cpu, one
thread), ``python benchmarks/few_labels_finetune.py --sizes 16 256 --lrs 2e-5 1e-4 --steps 32
--eval-every 16``; the last run (1e-4 at 256 labels) was stopped before its first evaluation
after training. acc: validation accuracy; fresh%: share of the 400 reviews predicted fresh
(200 are); loss: mean training loss of the last 4 steps; s: wall seconds since the run began:

    init       n draw      lr  step     acc  fresh%   loss      s
    lp        16    0   2e-05     0   59.5%   44.5%    nan     23
    lp        16    0   2e-05    16   60.5%   44.0%  0.043    119
    lp        16    0   2e-05    32   61.0%   49.5%  0.011    209
    lp        16    0   1e-04     0   59.5%   44.5%    nan     16
    lp        16    0   1e-04    16   61.3%   35.7%  0.002    113
    lp        16    0   1e-04    32   61.0%   43.0%  0.001    257
    lp       256    0   2e-05     0   72.5%   52.0%    nan     37
    lp       256    0   2e-05    16   75.2%   55.8%  0.507    202
    lp       256    0   2e-05    32   76.2%   53.8%  0.415    326

Step 0 is the linear probe alone. At 2e-5 fine-tuning adds about a point with 16 labels (it
memorises them: training loss 0.04 after 16 steps) and about 3 points with 256 (one epoch);
1e-4 gains no more with 16 labels and tilts the predictions (36% fresh after 16 steps). The
chapter uses 2e-5 and 16 steps.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class MeanPoolClassifier(nn.Module):
    """encoder -> mean over real tokens -> unit length -> linear head (as the chapter builds it)."""

    def __init__(self, encoder, head):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        from lmbook.embed import mean_pool

        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(F.normalize(mean_pool(h, attention_mask), dim=-1))    # (B, 2)


def balanced_sample(y, n, seed):
    g = torch.Generator().manual_seed(seed)
    picks = [torch.nonzero(y == c).flatten() for c in (0, 1)]
    return torch.cat([p[torch.randperm(len(p), generator=g)[: n // 2]] for p in picks])


@torch.no_grad()
def evaluate(model, batches, y):
    model.eval()
    pred = torch.cat([model(**b).argmax(-1) for b in batches])
    return (pred == y).float().mean().item(), pred.float().mean().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 256])
    ap.add_argument("--draws", type=int, nargs="+", default=[0])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4])
    ap.add_argument("--inits", nargs="+", default=["lp"], choices=["lp", "fresh", "random"])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import copy
    import os

    import transformers

    import lmbook
    from lmbook.data import load_rotten_tomatoes
    from lmbook.embed import sentence_embeddings, train_linear_probe
    from lmbook.pretrained import load_bert

    lmbook.setup(threads=args.threads)
    rt = load_rotten_tomatoes()
    pool = rt["train"].shuffle(seed=0).select(range(512))
    val_labels = torch.tensor(rt["validation"]["label"])
    held = rt["validation"].select(torch.cat([torch.nonzero(val_labels == c).flatten()[:200]
                                              for c in (0, 1)]).tolist())
    pool_texts, pool_y = list(pool["text"]), torch.tensor(pool["label"])
    val_texts, val_y = list(held["text"]), torch.tensor(held["label"])
    tok, encoder = load_bert("base", attn_implementation="sdpa")
    start = copy.deepcopy(encoder.state_dict())
    E_pool = sentence_embeddings(pool_texts, tok, encoder, normalize=True, max_length=96)
    order = np.argsort([len(t) for t in tok(val_texts)["input_ids"]], kind="stable")
    val_batches = [dict(tok([val_texts[i] for i in order[j:j + 100]], padding=True,
                            truncation=True, max_length=96, return_tensors="pt"))
                   for j in range(0, len(order), 100)]
    val_sorted = val_y[torch.as_tensor(order)]

    print(f"{'init':7s}{'n':>5s}{'draw':>5s}{'lr':>8s}{'step':>6s}{'acc':>8s}{'fresh%':>8s}"
          f"{'loss':>7s}{'s':>7s}")
    for init in args.inits:
        for n in args.sizes:
            for draw in args.draws:
                idx = balanced_sample(pool_y, n, draw)
                for lr in args.lrs:
                    torch.manual_seed(draw)
                    if init == "random":
                        enc = transformers.BertModel(encoder.config)
                    else:
                        enc = encoder
                        enc.load_state_dict(start)
                    head = nn.Linear(enc.config.hidden_size, 2)
                    if init == "lp":
                        head = train_linear_probe(E_pool[idx], pool_y[idx], l2=1e-2)
                    model = MeanPoolClassifier(enc, head)
                    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
                    g = torch.Generator().manual_seed(draw)
                    queue, t0, losses = [], time.perf_counter(), []
                    for step in range(args.steps + 1):
                        if step % args.eval_every == 0:
                            acc, share = evaluate(model, val_batches, val_sorted)
                            loss = np.mean(losses[-4:]) if losses else float("nan")
                            print(f"{init:7s}{n:5d}{draw:5d}{lr:8.0e}{step:6d}{acc:8.1%}{share:8.1%}"
                                  f"{loss:7.3f}{time.perf_counter() - t0:7.0f}", flush=True)
                        if step == args.steps:
                            break
                        if len(queue) < 16:
                            queue += idx[torch.randperm(len(idx), generator=g)].tolist()
                        b, queue = queue[:16], queue[16:]
                        enc_b = tok([pool_texts[i] for i in b], padding=True, truncation=True,
                                    max_length=96, return_tensors="pt")
                        model.train()
                        out = F.cross_entropy(model(**enc_b), pool_y[b])
                        out.backward()
                        opt.step()
                        opt.zero_grad()
                        losses.append(out.item())
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
