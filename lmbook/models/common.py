"""What every lmbook model shares: the output object, input checks with clear messages, and the
switch between torch's fused attention kernel and the spelled-out formula.

The input checks look at shapes and dtypes always, and at values (token ids in range, labels in
range, padding on the right) only where that is free: on CPU tensors outside torch.compile (see
:func:`values_readable`). On a GPU (CUDA, MPS) a model never reads a tensor's value in
``forward``, so a training step never waits for the GPU; an id out of range there stops with
CUDA's "device-side assert triggered" instead (run the same batch on the CPU for the message).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class ModelOutput:
    """What a model's ``forward`` returns. ``loss`` is None when no labels were given.

    ``logits``            (B, T, V) for language models, (B, num_labels) for classifiers
    ``last_hidden_state`` (B, T, C) the encoder's output (BERT-style models)
    ``pooler_output``     (B, C) tanh(W h_[CLS] + b) (BertModel with a pooler)
    ``hidden_states``     embeddings then every layer's output, each (B, T, C), when asked
    ``attentions``        every layer's attention weights, each (B, H, T, T), when asked
    """

    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: list | None = None
    attentions: list | None = None


def _find_is_compiling():
    """torch.compiler.is_compiling (torch >= 2.3), else torch._dynamo's (2.1, 2.2), else a
    function that says no (a torch without torch.compile)."""
    found = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    if found is None:
        try:
            from torch._dynamo import is_compiling as found
        except ImportError:
            found = None
    return found if found is not None else (lambda: False)


_is_compiling = _find_is_compiling()


def values_readable(t: torch.Tensor) -> bool:
    """True when reading the values of ``t`` (``int(t.max())``, ``bool(t.all())``) is free: ``t`` is
    on the CPU and no torch.compile trace is running. On a GPU such a read makes the CPU wait until
    the GPU has finished all queued work (a sync per forward pass stalls every training step);
    under torch.compile it would break the graph."""
    return t.device.type == "cpu" and not _is_compiling()


def _check_long(t: torch.Tensor, name: str, what: str) -> None:
    """Raise a TypeError that says what to do unless ``t`` is torch.long (int64), the dtype
    torch's embeddings and cross-entropy expect."""
    if t.dtype == torch.long:
        return
    if t.dtype.is_floating_point or t.is_complex():
        raise TypeError(f"{name} must be integer {what} (torch.long, int64), got floating-point dtype "
                        f"{t.dtype}; if the values are whole numbers, convert with {name}.long()")
    raise TypeError(f"{name} must be torch.long (int64) {what}, got dtype {t.dtype}; convert with {name}.long()")


def check_ids(ids: torch.Tensor, vocab_size: int, max_len: int, *, name: str = "input_ids",
              len_name: str = "block_size") -> None:
    """Raise a clear error unless ``ids`` is (batch, seq_len) torch.long token ids in
    [0, vocab_size) with seq_len <= max_len. The range is checked only when
    :func:`values_readable` (CPU tensors)."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    _check_long(ids, name, "token ids")
    if ids.dim() != 2:
        hint = f"; add a batch dimension with {name}[None]" if ids.dim() == 1 else ""
        raise ValueError(f"{name} must have shape (batch, seq_len), got {tuple(ids.shape)}{hint}")
    T = ids.shape[1]
    if T > max_len:
        raise ValueError(f"{name} has {T} tokens but the model's context is {len_name}={max_len}; "
                         f"crop the input or raise {len_name}")
    if ids.numel() == 0 or not values_readable(ids):
        return
    lo, hi = (int(t) for t in torch.aminmax(ids))
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} contains token id {bad}, outside the vocabulary: ids must be in "
                         f"[0, {vocab_size}) for vocab_size={vocab_size}")


def check_labels(labels: torch.Tensor, shape: tuple, what: str, num_classes: int | None = None,
                 ignore_index: int | None = -100) -> None:
    """Raise a clear error unless ``labels`` is a torch.long tensor of exactly ``shape`` whose
    values lie in [0, num_classes) or equal ``ignore_index`` (values checked only when
    :func:`values_readable`)."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"labels must have shape {tuple(shape)} ({what}), got {tuple(labels.shape)}")
    _check_long(labels, "labels", "class ids")
    if num_classes is None or labels.numel() == 0 or not values_readable(labels):
        return
    valid = labels if ignore_index is None else labels.masked_fill(labels == ignore_index, 0)
    lo, hi = (int(t) for t in torch.aminmax(valid))
    if lo < 0 or hi >= num_classes:
        skip = f" (or {ignore_index} for no target)" if ignore_index is not None else ""
        raise ValueError(f"labels contains {lo if lo < 0 else hi}, outside [0, {num_classes}){skip}")


def causal_lm_loss(logits: torch.Tensor, labels, *, vocab_size: int, last_only: bool = False):
    """Mean cross-entropy of the logits (B, T, V) against labels (B, T) given per input position
    (already shifted: the target of position t is the token at t + 1), -100 skipped; None when
    there are no labels. The GPT and the Llama both end with it."""
    if labels is None:
        return None
    if last_only:
        raise ValueError("labels need the logits of every position: leave last_only=False")
    B, T = logits.shape[:2]
    check_labels(labels, (B, T), "one target token per input position, -100 to skip", vocab_size)
    return nn.functional.cross_entropy(logits.view(B * T, -1), labels.reshape(B * T), ignore_index=-100)


def set_fast_attention(model: nn.Module, fast: bool = True) -> nn.Module:
    """Switch every attention module in ``model`` between torch's fused kernel (``fast=True``,
    the default) and the spelled-out softmax(QK^T/sqrt(d_k))V. Same numbers up to rounding."""
    for module in model.modules():
        if hasattr(module, "fast") and isinstance(getattr(module, "fast"), bool):
            module.fast = bool(fast)
    return model


def count_parameters(model: nn.Module, exclude: tuple = ()) -> int:
    """Number of parameters (``parameters()`` lists a tied matrix once), minus those of the
    modules in ``exclude``."""
    skip = {id(p) for m in exclude for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)
