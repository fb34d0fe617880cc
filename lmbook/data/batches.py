"""From token ids to training batches.

- :class:`LMBlocks` / :class:`LMWindows`: next-token prediction examples ``{"input_ids": x,
  "labels": y}`` cut from one long 1-D tensor of token ids, ``y`` = ``x`` shifted by one.
- :func:`get_batch`: nanoGPT's ``get_batch`` (random windows, stacked) for a hand-written loop.
- :func:`mask_tokens` and :class:`MLMCollator`: BERT's masked-language-model corruption.
- :class:`ClassificationCollator`: tokenise and pad a list of {"text", "label"} to the longest.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

IGNORE_INDEX = -100  # labels with this value are skipped by F.cross_entropy (its ignore_index)


def _as_ids(ids) -> torch.Tensor:
    if isinstance(ids, (list, tuple)):  # via NumPy: ~8x faster than torch.as_tensor on a long list
        ids = np.asarray(ids)
    ids = torch.as_tensor(ids)
    if ids.numel() == 0:
        raise ValueError("the corpus is empty: no token ids")
    if ids.dim() != 1:
        raise ValueError(f"expected a 1-D tensor of token ids, got shape {tuple(ids.shape)}; "
                         "flatten it with ids.view(-1)")
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"token ids must be integers, got dtype {ids.dtype}")
    return ids.long()


def _check_block(n: int, block_size: int) -> None:
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    if n < block_size + 1:
        raise ValueError(f"the corpus has {n:,} tokens but a block of block_size={block_size} needs "
                         f"{block_size + 1:,} ({block_size} inputs + 1 shifted target): use a "
                         "smaller block_size or more text")


class LMBlocks(Dataset):
    """Contiguous, non-overlapping blocks, in order (deterministic; for evaluation).

    Block ``i`` is ``x = ids[i*T : i*T+T]``, ``y = ids[i*T+1 : i*T+T+1]`` with ``T = block_size``;
    there are ``(len(ids) - 1) // T`` blocks, the tail that does not fill one is dropped."""

    def __init__(self, ids, block_size: int):
        self.ids = _as_ids(ids)
        _check_block(len(self.ids), block_size)
        self.block_size = block_size

    def __len__(self) -> int:
        return (len(self.ids) - 1) // self.block_size

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"block {i} out of range for {len(self)} blocks")
        start = (i % len(self)) * self.block_size
        chunk = self.ids[start:start + self.block_size + 1]
        return {"input_ids": chunk[:-1], "labels": chunk[1:]}  # (T,), (T,)


class LMWindows(Dataset):
    """``num_samples`` windows at random offsets (nanoGPT's ``get_batch``; for training).

    Offsets are drawn once from ``torch.Generator().manual_seed(seed)``, so item ``i`` is the same
    window on every run; ``set_epoch(e)`` redraws them with seed ``seed + e``."""

    def __init__(self, ids, block_size: int, num_samples: int, seed: int = 0):
        self.ids = _as_ids(ids)
        _check_block(len(self.ids), block_size)
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        self.block_size, self.num_samples, self.seed = block_size, num_samples, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        g = torch.Generator().manual_seed(self.seed + epoch)
        high = len(self.ids) - self.block_size  # last valid start + 1
        self.starts = torch.randint(high, (self.num_samples,), generator=g)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        start = int(self.starts[i])
        chunk = self.ids[start:start + self.block_size + 1]
        return {"input_ids": chunk[:-1], "labels": chunk[1:]}  # (T,), (T,)


def get_batch(ids, block_size: int, batch_size: int, *, generator: torch.Generator | None = None,
              device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows stacked: ``x, y`` of shape (B, T), ``y`` shifted by one."""
    ids = _as_ids(ids)
    _check_block(len(ids), block_size)
    starts = torch.randint(len(ids) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    chunks = ids[starts[:, None] + offsets]                   # (B, T+1)
    x, y = chunks[:, :-1], chunks[:, 1:]                      # (B, T), (B, T)
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


# --------------------------------------------------------------------------- masked LM
def mask_tokens(input_ids: torch.Tensor, vocab_size: int, mask_token_id: int, *,
                special_ids: Iterable[int] = (), special_mask: torch.Tensor | None = None,
                mlm_probability: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking (Devlin et al. 2019, section 3.1): returns ``(masked_input_ids, labels)``.

    Each token that is not special selects with probability ``mlm_probability``. A selected token
    becomes ``mask_token_id`` with probability 0.8, a random token with probability 0.1, and stays
    unchanged with probability 0.1; its label is the original id. Every other label is -100.

    A token is special (never selected, never drawn as a random replacement) when its id is in
    ``special_ids`` (e.g. [CLS], [SEP], [PAD]) or ``special_mask`` is True there (e.g. padding
    positions: ``attention_mask == 0``). The input is not modified."""
    if not 0 <= mlm_probability <= 1:
        raise ValueError(f"mlm_probability must be in [0, 1], got {mlm_probability}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id={mask_token_id} is outside the vocabulary 0..{vocab_size - 1}")
    input_ids = torch.as_tensor(input_ids)
    special_ids = torch.as_tensor(list(special_ids), dtype=torch.long)
    never = torch.isin(input_ids, special_ids)
    if special_mask is not None:
        special_mask = torch.as_tensor(special_mask, dtype=torch.bool)
        if special_mask.shape != input_ids.shape:
            raise ValueError(f"special_mask has shape {tuple(special_mask.shape)}, input_ids "
                             f"{tuple(input_ids.shape)}: they must match")
        never = never | special_mask
    probs = torch.full(input_ids.shape, float(mlm_probability)).masked_fill_(never, 0.0)
    selected = torch.bernoulli(probs, generator=generator).bool()
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))

    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & selected
    to_random = (torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool()
                 & selected & ~to_mask)
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[special_ids[(special_ids >= 0) & (special_ids < vocab_size)]] = False
    candidates = allowed.nonzero().squeeze(1)
    random_ids = candidates[torch.randint(len(candidates), input_ids.shape, generator=generator)]

    masked = input_ids.clone()
    masked[to_mask] = mask_token_id
    masked[to_random] = random_ids[to_random].to(masked.dtype)
    return masked, labels


_ENCODED = ("input_ids", "attention_mask", "token_type_ids")


def _encode(tokenizer, examples, text_key: str, max_length: int, **kwargs):
    """Tokenise texts (truncated to ``max_length``), or pad examples that are already tokenised
    (dicts with "input_ids" and no ``text_key``, e.g. rows of
    ``ds.map(lambda e: tokenizer(e["text"], truncation=True))``; padded as they are)."""
    if examples and all(isinstance(e, dict) and "input_ids" in e and text_key not in e
                        for e in examples):
        rows = [{k: list(e[k]) for k in _ENCODED if k in e} for e in examples]
        enc = tokenizer.pad(rows, padding="longest", return_tensors="pt")
        if kwargs.get("return_special_tokens_mask"):
            enc["special_tokens_mask"] = torch.isin(enc["input_ids"],
                                                    torch.tensor(tokenizer.all_special_ids))
        return enc
    return tokenizer(_texts(examples, text_key), padding="longest", truncation=True,
                     max_length=max_length, return_tensors="pt", **kwargs)


def _texts(examples, text_key: str) -> list[str]:
    if not examples:
        raise ValueError("empty batch: no examples")
    out = []
    for e in examples:
        if isinstance(e, str):
            out.append(e)
        elif isinstance(e, dict) and text_key in e:
            out.append(e[text_key])
        else:
            keys = list(e) if isinstance(e, dict) else type(e).__name__
            raise KeyError(f"each example must be a string or a dict with a {text_key!r} key "
                           f"(or tokenised, with 'input_ids'); got {keys}")
    return out


class MLMCollator:
    """DataLoader ``collate_fn`` for masked-LM training with a Hugging Face tokenizer.

    Takes a list of strings, of dicts with ``text_key``, or of already tokenised dicts (with
    "input_ids"); returns ``input_ids`` (masked), ``attention_mask``, ``token_type_ids`` (if the
    tokenizer makes them) and ``labels`` (original ids at selected positions, -100 elsewhere),
    padded to the longest example (texts are truncated to ``max_length`` tokens). Special tokens
    and padding are never selected. ``seed`` makes the masking reproducible (one generator,
    advanced batch by batch)."""

    def __init__(self, tokenizer, *, mlm_probability: float = 0.15, max_length: int = 128,
                 text_key: str = "text", seed: int | None = None):
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token ([MASK]); MLM needs one")
        self.tokenizer, self.mlm_probability = tokenizer, mlm_probability
        self.max_length, self.text_key = max_length, text_key
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __call__(self, examples: Sequence) -> dict[str, torch.Tensor]:
        enc = _encode(self.tokenizer, examples, self.text_key, self.max_length,
                      return_special_tokens_mask=True)
        special = enc.pop("special_tokens_mask").bool() | (enc["attention_mask"] == 0)
        enc["input_ids"], enc["labels"] = mask_tokens(
            enc["input_ids"], len(self.tokenizer), self.tokenizer.mask_token_id,
            special_ids=self.tokenizer.all_special_ids, special_mask=special,
            mlm_probability=self.mlm_probability, generator=self.generator)
        return dict(enc)


class ClassificationCollator:
    """DataLoader ``collate_fn`` for sequence classification: a list of {"text", "label"} (or of
    already tokenised {"input_ids", ..., "label"}) -> ``input_ids``, ``attention_mask``,
    ``token_type_ids`` (if the tokenizer makes them), padded to the longest example in the batch
    (dynamic padding; texts truncated to ``max_length``), and ``labels`` (LongTensor, omitted when
    the examples have no label)."""

    def __init__(self, tokenizer, max_length: int = 128, *, text_key: str = "text",
                 label_key: str = "label"):
        if getattr(tokenizer, "pad_token_id", None) is None:
            raise ValueError("the tokenizer has no padding token; set tokenizer.pad_token first")
        self.tokenizer, self.max_length = tokenizer, max_length
        self.text_key, self.label_key = text_key, label_key

    def __call__(self, examples: Sequence) -> dict[str, torch.Tensor]:
        enc = _encode(self.tokenizer, examples, self.text_key, self.max_length)
        batch = dict(enc)
        has = [isinstance(e, dict) and self.label_key in e for e in examples]
        if any(has):
            if not all(has):
                raise KeyError(f"some examples have a {self.label_key!r} and some do not")
            batch["labels"] = torch.tensor([int(e[self.label_key]) for e in examples])
        return batch
