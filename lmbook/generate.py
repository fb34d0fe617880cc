"""Turning a language model's next-token distribution into text: greedy decoding, temperature,
top-k and top-p (nucleus) sampling (Holtzman et al. 2020), decoding with a KV cache, and greedy
decoding for an encoder-decoder model.

``generate`` works with any causal LM whose ``forward(input_ids)`` returns ``.logits`` (B, T, V):
lmbook's GPT and Llama or transformers' models alike. A model whose ``forward`` takes a ``cache``
(lmbook's GPT and Llama) is run with a :class:`KVCache`: the prompt is read once (prefill), then
each step feeds only the newest token, whose keys and values are appended to the cache, and only
the last position's logits are computed. Other models recompute the whole (cropped) context at
every step, as nanoGPT does: simple to read, and fast enough for the small models of the book.

Shapes: B batch, T new positions, P positions already in the cache, S = P + T, Hkv key/value
heads, d head size, V vocabulary.
"""
from __future__ import annotations

import torch

__all__ = ["generate", "greedy_decode", "top_k_filter", "top_p_filter", "KVCache", "decoding_mask",
           "decoding_positions"]


# --------------------------------------------------------------------------------------------
# the KV cache and what a decoder needs to use it
class KVCache:
    """The keys and values a decoder has computed so far, per layer: ``keys[i]``, ``values[i]``
    are (B, Hkv, capacity, d) buffers of which the first ``length`` positions are filled.

    A model calls ``k, v = cache.update(i, k_new, v_new)`` in layer ``i`` with this call's
    (B, Hkv, T, d) keys and values and attends to the returned (B, Hkv, P + T, d). The buffers are
    allocated on the first call (``max_len`` positions, grown by doubling when a longer sequence
    comes), so a step writes T positions in place instead of copying the whole cache."""

    def __init__(self, max_len: int = 256):
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}")
        self.max_len = max_len
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.lengths: list[int] = []  # positions filled, per layer

    @property
    def length(self) -> int:
        """Positions held (P): what a model's next call adds its positions after."""
        return self.lengths[0] if self.lengths else 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Append k, v (B, Hkv, T, d) to layer ``layer``; return all its keys and values so far,
        (B, Hkv, P + T, d) each (views of the buffers; the inputs themselves when P = 0)."""
        if layer == len(self.keys):  # first call of this layer: allocate
            B, H, T, d = k.shape
            size = max(self.max_len, T)
            self.keys.append(k.new_empty(B, H, size, d))
            self.values.append(v.new_empty(B, H, size, d))
            self.lengths.append(0)
        elif not 0 <= layer < len(self.keys):
            raise IndexError(f"layer {layer}: the cache holds layers 0..{len(self.keys) - 1}; "
                             f"layers must first be updated in order 0, 1, 2, ...")
        P, T = self.lengths[layer], k.shape[2]
        if P + T > self.keys[layer].shape[2]:  # grow: double the capacity
            size = max(2 * self.keys[layer].shape[2], P + T)
            for buf in (self.keys, self.values):
                old = buf[layer]
                buf[layer] = old.new_empty(old.shape[0], old.shape[1], size, old.shape[3])
                buf[layer][:, :, :P] = old[:, :, :P]
        self.keys[layer][:, :, P:P + T] = k
        self.values[layer][:, :, P:P + T] = v
        self.lengths[layer] = P + T
        if P == 0:
            return k, v
        return self.keys[layer][:, :, :P + T], self.values[layer][:, :, :P + T]


def decoding_mask(attention_mask, T: int, past: int = 0, device=None):
    """The attention mask of T new queries that follow ``past`` cached positions:
    ``(mask, is_causal)`` for ``lmbook.attention.scaled_dot_product_attention``.

    ``attention_mask`` (B, past + T), 1 = token, 0 = padding (left padding for prompts of
    different lengths), or None. Without padding no mask tensor is needed: plain causal attention
    for a prompt (``is_causal``; the same computation as without a cache), nothing for one new
    token, which sees every cached key. With padding: (B, 1, T, S) bool, query t sees the keys
    up to its own position that are tokens, and itself (so a padding query's row is not empty;
    its output is never used)."""
    S = past + T
    if attention_mask is None:
        if past == 0:
            return None, True
        if T == 1:
            return None, False
        offset = torch.arange(S, device=device) - torch.arange(T, device=device)[:, None]  # (T, S)
        return offset <= past, False  # key position <= query position
    if attention_mask.dim() != 2 or attention_mask.shape[1] != S:
        raise ValueError(f"attention_mask must be (batch, {S}): one entry for each of the {past} cached "
                         f"and {T} new positions, got {tuple(attention_mask.shape)}")
    offset = torch.arange(S, device=attention_mask.device) - torch.arange(T, device=attention_mask.device)[:, None]
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
    return (keys & (offset <= past)) | (offset == past), False  # (B, 1, T, S)


def decoding_positions(attention_mask, T: int, past: int = 0, device=None) -> torch.Tensor:
    """Position ids of the T new tokens: ``past .. past+T-1`` (1, T) without a mask; with one,
    the number of real tokens before each, as transformers' ``generate`` computes them, so that
    a left-padded prompt starts at position 0. (B, T) long; padding positions get 0."""
    if attention_mask is None:
        return torch.arange(past, past + T, device=device)[None]  # (1, T)
    pos = attention_mask.long().cumsum(-1) - 1  # (B, S)
    return pos[:, -T:].clamp(min=0)


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
    """(length, its name in the config) of the longest context the model takes, or (None, None)."""
    cfg = getattr(model, "config", None)
    for name in ("block_size", "n_positions", "max_position_embeddings"):
        if getattr(cfg, name, None):
            return getattr(cfg, name), name
    return None, None


def _next_token(logits, greedy, temperature, top_k, top_p, generator):
    """(B, V) logits of the last position -> (B, 1) the chosen next tokens."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)


def _append(ids, mask, next_id, finished, eos_id):
    """Add the (B, 1) new tokens; rows that produced eos_id before get eos_id again."""
    if eos_id is not None:
        next_id = next_id.masked_fill(finished[:, None], eos_id)
        finished |= next_id[:, 0] == eos_id
    if mask is not None:
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)  # (B, T + 1)
    return torch.cat([ids, next_id], dim=1), mask  # (B, T + 1)


@torch.no_grad()  # not inference_mode: the ids it returns may feed a training step later
def _generate(model, ids, mask, max_new_tokens, pick, eos_id):
    """Without a cache: every step runs the model on the whole context (the last ``block_size``)."""
    block, _ = _context_length(model)
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        context = ids if block is None else ids[:, -block:]  # crop to the model's context
        if mask is None:
            out = model(input_ids=context)
        else:
            out = model(input_ids=context, attention_mask=mask[:, -context.shape[1]:])
        next_id = pick(out.logits[:, -1, :].float())  # (B, 1) from the last position's logits
        ids, mask = _append(ids, mask, next_id, finished, eos_id)
        if eos_id is not None and bool(finished.all()):
            break
    return ids


@torch.no_grad()
def _generate_cached(model, ids, mask, max_new_tokens, pick, eos_id, block):
    """With a KVCache: the prompt once (prefill), then the newest token only, last logits only.
    Once the sequence outgrows the context, each step reads the last ``block`` tokens into a
    fresh cache: the same sliding window as without a cache."""
    finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    cache = KVCache(max_len=min(ids.shape[1] + max_new_tokens, block))
    feed = ids  # (B, T) the prompt
    for _ in range(max_new_tokens):
        if feed.shape[1] > 1 or cache.length == 0:  # prefill (the prompt, or a full window)
            m = None if mask is None else mask[:, -feed.shape[1]:]
        else:  # one new token; the mask covers the cached positions too
            m = mask
        logits = model(input_ids=feed, attention_mask=m, cache=cache, last_only=True).logits
        next_id = pick(logits[:, -1, :].float())  # (B, 1)
        ids, mask = _append(ids, mask, next_id, finished, eos_id)
        if eos_id is not None and bool(finished.all()):
            break
        if ids.shape[1] <= block:
            feed = ids[:, -1:]  # (B, 1)
        else:  # the window is full: start again from its last block tokens
            cache, feed = KVCache(max_len=block), ids[:, -block:]
    return ids


def _check_mask(attention_mask, input_ids):
    """The prompts' padding mask on the device, or None when there is no padding."""
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(f"attention_mask must be a tensor of the shape of input_ids {tuple(input_ids.shape)} "
                         f"(1 = token, 0 = padding), got {getattr(attention_mask, 'shape', attention_mask)}")
    mask = attention_mask.to(input_ids.device).long()
    if bool(mask.all()):
        return None
    if not bool(mask[:, -1].all()):
        raise ValueError("a prompt ends with padding: pad prompts of different lengths on the left, so that "
                         "every row's next token follows a real one (tokenizer.padding_side = 'left')")
    return mask


def generate(model, input_ids, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, greedy: bool = False, seed: int | None = None,
             eos_id: int | None = None, attention_mask: torch.Tensor | None = None,
             use_cache: bool | None = None) -> torch.Tensor:
    """Extend ``input_ids`` (B, T) by up to ``max_new_tokens`` tokens; returns (B, T + n) ids.

    Each step picks the next token from the last position's logits: the most probable one when
    ``greedy``, else a sample from softmax(logits / temperature), restricted to the ``top_k`` most
    probable tokens and/or to the nucleus of probability mass ``top_p``. ``seed`` makes the
    sampling reproducible (a private ``torch.Generator``; the global RNG is untouched). With
    ``eos_id``, a sequence that produced it is padded with ``eos_id`` and generation stops early
    once every sequence has, so n may be smaller than ``max_new_tokens``.

    ``use_cache`` (default: when the model takes a ``cache``, as lmbook's GPT and Llama do) reads
    the prompt once and then feeds one token per step through a :class:`KVCache`; a prompt longer
    than the model's context is then an error. Without the cache every step feeds the last
    ``block_size`` (or ``n_positions``, ``max_position_embeddings``) tokens, and a longer prompt is
    cropped. Prompts of different lengths go in one batch left-padded, with ``attention_mask``
    (B, T), 1 = token, 0 = padding (``tokenizer(texts, padding=True, padding_side="left")``).
    The ids are moved to the model's device and returned there. The model runs in eval mode
    without gradients; its training/eval mode is restored afterwards.
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
    takes_cache = bool(getattr(model, "takes_kv_cache", False))
    if use_cache and not takes_cache:
        raise TypeError(f"{type(model).__name__} takes no lmbook KVCache (its forward has no cache argument): "
                        f"call generate with use_cache=False")
    use_cache = takes_cache if use_cache is None else bool(use_cache)
    block, block_name = _context_length(model)
    if use_cache and block is not None and input_ids.shape[1] > block:
        raise ValueError(f"the prompt has {input_ids.shape[1]} tokens, more than the model's context "
                         f"({block_name}={block}): keep its last {block} tokens (input_ids[:, -{block}:]), "
                         f"or pass use_cache=False to let generate crop the context at every step")
    device = _model_device(model)
    ids = input_ids.to(device)
    mask = _check_mask(attention_mask, ids)
    generator = None
    if seed is not None and not greedy:
        generator = torch.Generator(device=device).manual_seed(int(seed))

    def pick(logits):
        return _next_token(logits, greedy, temperature, top_k, top_p, generator)

    was_training = model.training
    model.eval()
    try:
        if use_cache:
            return _generate_cached(model, ids, mask, max_new_tokens, pick, eos_id,
                                    block or ids.shape[1] + max_new_tokens)
        return _generate(model, ids, mask, max_new_tokens, pick, eos_id)
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
    src_mask = None if src_mask is None else src_mask.to(device)
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
