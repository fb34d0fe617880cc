"""Run by tests/test_distributed.py under ``python -m torch.distributed.run --nproc_per_node=2``.

``ddp_worker.py OUT [MODE]``; every mode writes ``OUT/rank{r}.json`` (and weights ``OUT/rank{r}.pt``):

  basic     the same fit() call as the single-process reference, each process taking a quarter of
            the global batch per micro-batch and accumulating two (DDP's no_sync on the first)
  uneven    as basic, on data whose examples have different numbers of targets (labels -100
            elsewhere); records every step's gradient
  compile   as basic, with compile="auto" and a torch.compile whose compiled code always fails
  resume    an uninterrupted run, then a run that crashes after its step-3 checkpoint and is
            resumed; records what each process's generators draw afterwards
"""
from __future__ import annotations

import json
import os
import random
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

V = 16


class Tiny(nn.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.emb = nn.Embedding(V, 16)
        self.mix = nn.Linear(16, 16)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(16, V)

    def forward(self, input_ids, labels):
        logits = self.head(self.drop(torch.tanh(self.mix(self.emb(input_ids)))))  # (B, T, V)
        return {"loss": F.cross_entropy(logits.view(-1, V), labels.view(-1)), "logits": logits}


def make_model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return Tiny(dropout)


def make_data(n, seed):
    x = torch.randint(0, V, (n, 8), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": x[i], "labels": (x[i] * 3 + 1) % V} for i in range(n)]


def make_uneven_data(n, seed):
    """Every other example has a target at one position only (-100 elsewhere), the others at all
    eight: micro-batches and processes hold very different numbers of targets."""
    data = make_data(n, seed)
    for i, ex in enumerate(data):
        if i % 2:
            keep = i % 8
            ex["labels"] = torch.full_like(ex["labels"], -100)
            ex["labels"][keep] = (ex["input_ids"][keep] * 3 + 1) % V
    return data


def record_gradients():
    """Every optimizer step's gradients (as the optimizer sees them), in parameter order."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    grads = []

    def hook(optimizer, args, kwargs):
        grads.append([p.grad.detach().clone() for g in optimizer.param_groups for p in g["params"]])

    return grads, register_optimizer_step_pre_hook(hook)


def run(batch_size, accum_steps=1, checkpoint_dir=None, data=None, **kw):
    from lmbook.train import fit

    model = make_model()
    data = make_data(64, 0) if data is None else data
    history = fit(model, data, val_data=make_data(32, 1), steps=6, batch_size=batch_size,
                  accum_steps=accum_steps, lr=1e-2, warmup_steps=2, eval_every=3, eval_batches="all",
                  device="cpu", progress=False, checkpoint_dir=checkpoint_dir, **kw)
    return model, history


# --------------------------------------------------------------------------------------------
class CrashAfter(torch.utils.data.Dataset):
    def __init__(self, data, limit):
        self.data, self.limit, self.reads = data, limit, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.reads += 1
        if self.reads > self.limit:
            raise RuntimeError("simulated crash")
        return self.data[i]


def collate_drawing(examples):
    """Stacks, and draws from NumPy's and Python's global generators (as a random masking would)."""
    np.random.rand()
    random.random()
    return {k: torch.stack([ex[k] for ex in examples]) for k in examples[0]}


def resume_run(rank, out):
    """The draws after an uninterrupted run and after a crashed and resumed one."""
    from lmbook.train import fit

    opts = dict(steps=6, batch_size=2, accum_steps=2, lr=1e-2, warmup_steps=2, device="cpu",
                progress=False, collate_fn=collate_drawing)
    data = make_data(64, 0)
    draws, weights = [], []
    for crash in (False, True):
        np.random.seed(100 + rank)
        random.seed(100 + rank)
        model = make_model(dropout=0.3)
        ckpt = os.path.join(out, "ckpt")
        if crash:  # both processes die while reading step 5's batches (4 examples a step each)
            try:
                fit(model, CrashAfter(data, 4 * 4 + 1), checkpoint_dir=ckpt, checkpoint_every=3, **opts)
            except RuntimeError as e:
                assert "simulated crash" in str(e), e
            else:
                raise AssertionError("the run did not crash")
            torch.manual_seed(999)  # the resumed process starts with other generator states
            np.random.seed(999)
            random.seed(999)
            model = make_model(seed=5, dropout=0.3)
            h = fit(model, data, checkpoint_dir=ckpt, checkpoint_every=3, **opts)
            assert h.info["resumed_from"] == 3, h.info
        else:
            fit(model, data, **opts)
        draws.append({"torch": torch.rand(4).tolist(), "numpy": np.random.rand(4).tolist(),
                      "python": [random.random() for _ in range(4)]})
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    same = all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    return {"uninterrupted": draws[0], "resumed": draws[1], "same_weights": same}


def main(out, mode):
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    result = {"world_size": int(os.environ["WORLD_SIZE"])}
    if mode == "resume":
        torch.distributed.init_process_group("gloo")  # fit joins it (two fit calls, one group)
        result.update(resume_run(rank, out))
        torch.distributed.destroy_process_group()
        model = None
    elif mode == "uneven":
        grads, handle = record_gradients()
        model, history = run(batch_size=2, accum_steps=2, data=make_uneven_data(64, 0), grad_clip=None)
        handle.remove()
        torch.save(grads, os.path.join(out, f"grads{rank}.pt"))
    elif mode == "compile":
        import lmbook.train.loop as loop

        def broken_compile(module):
            def call(*args, **kwargs):
                raise RuntimeError("inductor: no C++ compiler")
            return call

        loop.torch.compile = broken_compile
        loop.resolve_compile = lambda setting, device: True  # as on a GPU with Triton
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model, history = run(batch_size=2, accum_steps=2, compile="auto")
        result["warnings"] = [str(w.message) for w in caught]
    else:
        model, history = run(batch_size=2, accum_steps=2, checkpoint_dir=os.path.join(out, "ckpt"))
    if model is not None:
        result["history"] = history.to_dict()
        torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "basic")
