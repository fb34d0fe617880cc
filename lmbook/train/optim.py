"""AdamW with nanoGPT's parameter groups, and linear warm-up followed by cosine decay."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (>= 2-D: linear weights, embeddings), none on biases and norms."""
    params = [p for p in model.parameters() if p.requires_grad]  # shared (tied) weights once
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.1,
                   betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; the fused CUDA kernel when the parameters live on a GPU."""
    groups = param_groups(model, weight_decay)
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    extra = {"fused": True} if on_cuda else {}
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), **extra)


def lr_at(step: int, *, lr: float, steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning rate for optimizer step ``step`` (0-based), as in nanoGPT's ``get_lr``:
    linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr``
    at the last step."""
    min_lr = lr * min_lr_ratio
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if step >= steps:
        return min_lr
    ratio = (step - warmup_steps) / max(1, steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return min_lr + coeff * (lr - min_lr)
