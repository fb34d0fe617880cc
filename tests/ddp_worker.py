"""Run by tests/test_distributed.py under ``python -m torch.distributed.run --nproc_per_node=2``:
the same fit() call as the single-process reference, each process taking a quarter of the global
batch per micro-batch and accumulating two micro-batches (DDP's no_sync on the first)."""
from __future__ import annotations

import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

V = 16


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, 16)
        self.mix = nn.Linear(16, 16)
        self.head = nn.Linear(16, V)

    def forward(self, input_ids, labels):
        logits = self.head(torch.tanh(self.mix(self.emb(input_ids))))  # (B, T, V)
        return {"loss": F.cross_entropy(logits.view(-1, V), labels.view(-1)), "logits": logits}


def make_model():
    torch.manual_seed(0)
    return Tiny()


def make_data(n, seed):
    x = torch.randint(0, V, (n, 8), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": x[i], "labels": (x[i] * 3 + 1) % V} for i in range(n)]


def run(batch_size, accum_steps=1, checkpoint_dir=None):
    from lmbook.train import fit

    model = make_model()
    history = fit(model, make_data(64, 0), val_data=make_data(32, 1), steps=6, batch_size=batch_size,
                  accum_steps=accum_steps, lr=1e-2, warmup_steps=2, eval_every=3, eval_batches="all",
                  device="cpu", progress=False, checkpoint_dir=checkpoint_dir)
    return model, history


if __name__ == "__main__":
    out = sys.argv[1]
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    model, history = run(batch_size=2, accum_steps=2, checkpoint_dir=os.path.join(out, "ckpt"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"world_size": int(os.environ["WORLD_SIZE"]), "history": history.to_dict()}, f)
    torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
