"""Measuring a chat model on a task of ``ChatExample``s: label log-likelihoods, greedy replies,
drift. The model calls are ``lmbook.llm_eval``'s (batched, left-padded, greedy); this module
adds what a tuning task needs on top: its examples, its answers, and the KL to a reference.

    label_accuracy(model, tok, examples, labels)   the label with the highest log-likelihood
    greedy_replies(model, tok, prompts)            what the model says (greedy, batched)
    reply_accuracy(model, tok, examples)           share of greedy replies equal to the answer
    mean_kl(model, reference, tok, prompts)        KL(model || reference) per reply token

Everything is deterministic (no sampling), runs in batches, and ignores padding.
"""
from __future__ import annotations

import torch

from lmbook.llm_eval import generate_batched, label_log_probs, prompt_ids

__all__ = ["label_accuracy", "greedy_replies", "reply_accuracy", "mean_kl"]


def _pad(rows: list[list[int]], pad_id: int, left: bool = False):
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(T - len(r), T) if left else slice(0, len(r))
        ids[i, sl], mask[i, sl] = torch.tensor(r), 1
    return ids, mask


def _device(model):
    return next(model.parameters()).device


def label_accuracy(model, tok, examples, labels: list[str], *, batch_size: int = 16,
                   progress: bool = True) -> float:
    """Share of examples whose answer is the label the model finds most likely
    (``lmbook.llm_eval.label_log_probs`` over the examples' chat prompts)."""
    scores = label_log_probs(model, tok, [e.prompt for e in examples], labels,
                             batch_size=batch_size, progress=progress)           # (N, L)
    return (scores.argmax(-1) == torch.tensor([e.label for e in examples])).float().mean().item()


def greedy_replies(model, tok, prompts: list[list[dict]], *, max_new_tokens: int = 8,
                   batch_size: int = 16, progress: bool = True) -> list[str]:
    """The texts of the model's greedy replies to chat prompts (``lmbook.llm_eval.generate_batched``)."""
    outs = generate_batched(model, tok, prompts, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, progress=progress)
    return [g.text for g in outs]


def reply_accuracy(model, tok, examples, **kw) -> tuple[float, list[str]]:
    """(share of greedy replies that are exactly the answer, the replies)."""
    replies = greedy_replies(model, tok, [e.prompt for e in examples], **kw)
    return sum(r == e.answer for r, e in zip(replies, examples)) / len(examples), replies


@torch.no_grad()
def mean_kl(model, reference, tok, prompts: list[list[dict]], replies: list[str], *,
            batch_size: int = 8) -> float:
    """Mean over reply tokens of KL(model || reference) between the next-token distributions,
    on the given prompt + reply texts (e.g. the tuned model's own greedy replies)."""
    rows, starts = [], []
    for p, r in zip(prompts, replies):
        ids = prompt_ids(tok, p)
        starts.append(len(ids))
        rows.append(ids + tok(r + "<|im_end|>", add_special_tokens=False)["input_ids"])
    total, count, dev = 0.0, 0, _device(model)
    for s in range(0, len(rows), batch_size):
        ids, mask = _pad(rows[s:s + batch_size], tok.pad_token_id)
        ids, mask = ids.to(dev), mask.to(dev)
        lp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)      # (B, T, V)
        lq = reference(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)  # (B, T, V)
        kl = (lp.exp() * (lp - lq)).sum(-1)                                                # (B, T)
        for j, a in enumerate(starts[s:s + batch_size]):
            n = int(mask[j].sum())
            total += kl[j, a - 1:n - 1].sum().item()
            count += n - a
    return total / count
