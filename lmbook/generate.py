"""Turning a language model's next-token distribution into text: greedy decoding, temperature,
top-k and top-p (nucleus) sampling (Holtzman et al. 2020), and greedy decoding for an
encoder-decoder model.

``generate`` works with any causal LM whose ``forward(input_ids)`` returns ``.logits`` (B, T, V):
lmbook's GPT or transformers' GPT2LMHeadModel alike. It recomputes the whole (cropped) context at
every step, as nanoGPT does: simple to read, and fast enough for the small models of the book.
"""
from __future__ import annotations

import torch

__all__ = ["generate", "greedy_decode", "top_k_filter", "top_p_filter"]


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits in the last dimension, set the others to -inf.
    (Ties at the k-th value are all kept.)  (..., V) -> (..., V)"""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {k!r}")
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1) the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most probable tokens whose probabilities add
    up to at least ``p``, set the other logits to -inf. The most probable token is always kept.
    (..., V) -> (..., V)"""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p!r}")
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    drop_sorted = mass_before >= p  # the set is already complete without this token
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def _model_device(model):
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _context_length(model):
    cfg = getattr(model, "config", None)
    return getattr(cfg, "block_size", None) or getattr(cfg, "n_positions", None)


@torch.no_grad()  # not inference_mode: the ids it returns may feed a training step later
def _generate(model, ids, max_new_tokens, temperature, top_k, top_p, greedy, generator, eos_id):
    block = _context_length(model)
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        context = ids if block is None else ids[:, -block:]  # crop to the model's context
        logits = model(input_ids=context).logits[:, -1, :].float()  # (B, V) last position only
        if greedy:
            next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        else:
            logits = logits / temperature
            if top_k is not None:
                logits = top_k_filter(logits, top_k)
            if top_p is not None:
                logits = top_p_filter(logits, top_p)
            probs = logits.softmax(dim=-1)
            next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        if eos_id is not None:
            next_id = next_id.masked_fill(finished[:, None], eos_id)  # finished rows: keep eos
            finished |= next_id[:, 0] == eos_id
        ids = torch.cat([ids, next_id], dim=1)  # (B, T + 1)
        if eos_id is not None and bool(finished.all()):
            break
    return ids


def generate(model, input_ids, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, greedy: bool = False, seed: int | None = None,
             eos_id: int | None = None) -> torch.Tensor:
    """Extend ``input_ids`` (B, T) by up to ``max_new_tokens`` tokens; returns (B, T + n) ids.

    Each step feeds the last ``block_size`` (or ``n_positions``) tokens to the model and picks the
    next token: the most probable one when ``greedy``, else a sample from softmax(logits /
    temperature), restricted to the ``top_k`` most probable tokens and/or to the nucleus of
    probability mass ``top_p``. ``seed`` makes the sampling reproducible (a private
    ``torch.Generator``; the global RNG is untouched). With ``eos_id``, a sequence that produced
    it is padded with ``eos_id`` and generation stops early once every sequence has, so n may be
    smaller than ``max_new_tokens``. The ids are moved to the model's device and returned there.
    The model runs in eval mode without gradients; its training/eval mode is restored afterwards.
    """
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a (batch, seq_len) tensor of token ids, got a "
                        f"{type(input_ids).__name__}; e.g. torch.tensor([tokenizer.encode(text)])")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be a (batch, seq_len) tensor of token ids, got shape "
                         f"{tuple(input_ids.shape)}; for one sequence use ids[None]")
    if input_ids.shape[1] == 0:
        raise ValueError("input_ids is empty: give at least one token to start from (e.g. a BOS token)")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r} (for the most probable token use greedy=True)")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
    device = _model_device(model)
    ids = input_ids.to(device)
    generator = None
    if seed is not None and not greedy:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    was_training = model.training
    model.eval()
    try:
        return _generate(model, ids, max_new_tokens, temperature, top_k, top_p, greedy, generator, eos_id)
    finally:
        model.train(was_training)


def greedy_decode(model, src_ids, max_len: int, bos_id: int, eos_id: int, src_mask=None) -> torch.Tensor:
    """Greedy decoding with an encoder-decoder model (``model.encode``/``model.decode``, as
    ``lmbook.models.Transformer``): encode ``src_ids`` (B, S) once, then start every target with
    ``bos_id`` and append the most probable next token until each row has produced ``eos_id`` or
    the target holds ``max_len`` tokens. Returns (B, L <= max_len), starting with ``bos_id``;
    rows that finished early are padded with ``eos_id``."""
    if not (hasattr(model, "encode") and hasattr(model, "decode")):
        raise TypeError(f"greedy_decode needs an encoder-decoder model with encode() and decode(), "
                        f"got {type(model).__name__}")
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}")
    cfg_max = getattr(getattr(model, "config", None), "max_len", None)
    if cfg_max is not None and max_len > cfg_max:
        raise ValueError(f"max_len={max_len} is longer than the model's max_len={cfg_max}")
    if not isinstance(src_ids, torch.Tensor) or src_ids.dim() != 2:
        raise ValueError("src_ids must be a (batch, src_len) tensor of token ids; for one sequence use ids[None]")
    device = _model_device(model)
    src_ids = src_ids.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            memory = model.encode(src_ids, src_mask)  # (B, S, C), computed once
            B = src_ids.shape[0]
            ys = torch.full((B, 1), bos_id, dtype=torch.long, device=device)
            finished = torch.zeros(B, dtype=torch.bool, device=device)
            while ys.shape[1] < max_len:
                logits = model.decode(ys, memory, src_ids=src_ids, src_mask=src_mask)  # (B, L, V)
                next_id = logits[:, -1].argmax(dim=-1).masked_fill(finished, eos_id)  # (B,)
                ys = torch.cat([ys, next_id[:, None]], dim=1)
                finished |= next_id == eos_id
                if bool(finished.all()):
                    break
            return ys
    finally:
        model.train(was_training)
