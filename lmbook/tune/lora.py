"""LoRA: train a low-rank update ΔW = (alpha / r) · B A next to each frozen weight W.

For a d_out x d_in weight, A is r x d_in and B is d_out x r (B starts at zero, so training starts
from the pretrained model): r · (d_in + d_out) numbers instead of d_in · d_out, and the update's
rank is at most r. After training, ``merge`` adds ΔW into W and removes the adapters: the merged
model computes the same function with no extra layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["lora_config", "lora_updates", "LoraUpdate", "count_parameters", "merge"]


def lora_config(r: int = 8, alpha: int = 16, targets=("q_proj", "v_proj"), dropout: float = 0.0):
    """A peft ``LoraConfig`` for a causal LM: rank ``r`` adapters on the modules named ``targets``."""
    from peft import LoraConfig

    if r < 1:
        raise ValueError(f"LoRA rank r must be at least 1, got {r}")
    return LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=dropout,
                      bias="none", task_type="CAUSAL_LM")


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@dataclass
class LoraUpdate:
    name: str          # module name, e.g. "model.layers.0.self_attn.q_proj"
    shape: tuple       # (d_out, d_in) of W
    r: int             # adapter rank
    rank: int          # numerical rank of the learned ΔW
    lora_params: int   # numbers in A and B
    full_params: int   # numbers in W
    rel_norm: float    # ||ΔW|| / ||W|| (Frobenius)


@torch.no_grad()
def lora_updates(peft_model, adapter: str = "default") -> list[LoraUpdate]:
    """For every LoRA layer of a peft model: ΔW = scaling · B @ A, its rank (torch.linalg.matrix_rank)
    and size next to W's."""
    out = []
    for name, mod in peft_model.named_modules():
        if not (hasattr(mod, "lora_A") and adapter in getattr(mod, "lora_A", {})):
            continue
        A, B = mod.lora_A[adapter].weight, mod.lora_B[adapter].weight   # (r, d_in), (d_out, r)
        # in float64: the rounding noise of a float32 product would count as extra rank
        delta = mod.scaling[adapter] * (B.double() @ A.double())         # (d_out, d_in)
        W = mod.get_base_layer().weight.double()
        out.append(LoraUpdate(name.replace("base_model.model.", ""), tuple(W.shape), A.shape[0],
                              int(torch.linalg.matrix_rank(delta)), A.numel() + B.numel(),
                              W.numel(), (delta.norm() / W.norm()).item()))
    if not out:
        raise ValueError("no LoRA layers found: pass the PeftModel returned by training with a LoraConfig")
    return out


def merge(peft_model):
    """W <- W + ΔW in every adapted layer, adapters removed: a plain transformers model
    (peft's ``merge_and_unload``)."""
    return peft_model.merge_and_unload()
