"""Measuring a chat model on a task: label log-likelihoods, greedy replies, drift.

    label_accuracy(model, tok, examples, labels)   the label with the highest log-likelihood
    greedy_replies(model, tok, prompts)            what the model says (greedy, batched)
    reply_accuracy(model, tok, examples)           share of greedy replies equal to the answer
    mean_kl(model, reference, tok, prompts)        KL(model || reference) per reply token

Everything is deterministic (no sampling), runs in batches, and ignores padding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = ["render", "label_logprobs", "label_accuracy", "greedy_replies", "reply_accuracy",
           "mean_kl"]


def render(tok, prompt: list[dict]) -> list[int]:
    """Token ids of a chat prompt up to and including the assistant header."""
    out = tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
    return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)


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


@torch.no_grad()
def label_logprobs(model, tok, examples, labels: list[str], *, batch_size: int = 16,
                   progress: bool = True) -> torch.Tensor:
    """(N, L): log p(label | prompt) summed over each label's tokens, for every example and label.
    Each prompt is run once (left-padded batch, KV cache); each label then continues from a copy
    of the cache, so a second label costs its own few tokens, not the prompt again."""
    import copy

    label_ids = [tok(lab, add_special_tokens=False)["input_ids"] for lab in labels]
    out, dev = torch.empty(len(examples), len(labels)), _device(model)
    for s in tqdm(range(0, len(examples), batch_size), desc="scoring labels", disable=not progress, leave=False):
        ids, mask = _pad([render(tok, e.prompt) for e in examples[s:s + batch_size]], tok.pad_token_id, left=True)
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)                                   # (B, T) ignoring pads
        first = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
        last = first.logits[:, -1].float().log_softmax(-1)                         # (B, V) next-token
        B = ids.shape[0]
        for k, li in enumerate(label_ids):
            score = last[:, li[0]].clone()                                         # (B,)
            if len(li) > 1:  # continue the prompt with the label's tokens
                cont = torch.tensor(li[:-1], device=dev).expand(B, -1)              # (B, L-1)
                cpos = pos[:, -1:] + 1 + torch.arange(len(li) - 1, device=dev)      # (B, L-1)
                cmask = torch.cat([mask, torch.ones_like(cont)], 1)
                logp = model(input_ids=cont, attention_mask=cmask, position_ids=cpos, use_cache=True,
                             cache=copy.deepcopy(first.cache)).logits.float().log_softmax(-1)
                score += logp.gather(-1, torch.tensor(li[1:], device=dev).expand(B, -1)[..., None]).squeeze(-1).sum(-1)
            out[s:s + B, k] = score.cpu()
    return out


def label_accuracy(model, tok, examples, labels: list[str], **kw) -> float:
    """Share of examples whose answer is the label the model finds most likely."""
    pred = label_logprobs(model, tok, examples, labels, **kw).argmax(-1)
    return (pred == torch.tensor([e.label for e in examples])).float().mean().item()


@torch.no_grad()
def greedy_replies(model, tok, prompts: list[list[dict]], *, max_new_tokens: int = 8,
                   batch_size: int = 16, progress: bool = True) -> list[str]:
    """The model's greedy replies to chat prompts (left-padded batches, KV cache), stripped."""
    replies, dev = [], _device(model)
    end = tok.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tok.get_vocab() else tok.eos_token_id
    for s in tqdm(range(0, len(prompts), batch_size), desc="generating", disable=not progress, leave=False):
        ids, mask = _pad([render(tok, p) for p in prompts[s:s + batch_size]], tok.pad_token_id, left=True)
        out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=end, pad_token_id=tok.pad_token_id)
        replies += [t.strip() for t in tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)]
    return replies


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
        ids = render(tok, p)
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
