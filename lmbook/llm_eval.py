"""Evaluating a chat LLM on small labelled sets: batched greedy answers with their confidence,
label scoring for classification by prompting, and the metrics that define each task.

    tok, model = lmbook.pretrained.load_llm()
    outs = generate_batched(model, tok, ["What is the capital of France?"], max_new_tokens=16)
    outs[0].text, outs[0].mean_logprob                 # 'The capital of France is Paris.', -0.2
    contains_answer(outs[0].text, "Paris")             # True: normalised, word-bounded containment
    label_log_probs(model, tok, prompts, ["positive", "negative"])   # (N, 2) log-probabilities
    chrf(hypotheses, references)                       # sacrebleu's corpus chrF, 0-100
    rouge(summaries, references)                       # rouge-score F1, mean over pairs

A prompt is a string (one user turn) or a conversation (a list of {"role", "content"} dicts); it
goes through the tokenizer's chat template (``lmbook.pretrained.encode_chat``). Generation is
transformers' ``model.generate`` with ``do_sample=False`` (greedy, its own KV cache), on batches
of left-padded prompts sorted by length; results come back in the caller's order.

Answer matching follows SQuAD's normalisation (lower case, no punctuation, no articles, single
spaces; Rajpurkar et al. 2016): ``exact_match``, ``token_f1`` and ``contains_answer`` (the
reference's words appear as a contiguous run in the prediction's words, so "1" is not found in
"1963").
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import torch

__all__ = ["Generation", "generate_batched", "label_log_probs", "prompt_ids", "normalize_answer",
           "exact_match", "token_f1", "contains_answer", "chrf", "rouge"]


@dataclass
class Generation:
    """One greedy answer. ``mean_logprob``: the mean log-probability the model gave the tokens it
    chose (the answer's tokens, not the end-of-turn token; NaN for an empty answer);
    ``exp(mean_logprob)`` is their geometric-mean probability, a confidence between 0 and 1.
    ``finished``: the model ended its turn before ``max_new_tokens``."""

    text: str
    tokens: int
    mean_logprob: float
    finished: bool

    @property
    def confidence(self) -> float:
        return math.exp(self.mean_logprob)


def _chats(prompts) -> list[list[dict]]:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of prompts, not one string: wrap it as [prompt]")
    chats = [[{"role": "user", "content": p}] if isinstance(p, str) else list(p) for p in prompts]
    if not chats:
        raise ValueError("no prompts: pass a list of strings or conversations")
    for c in chats:
        if not c or not all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in c):
            raise ValueError("each prompt must be a string or a non-empty list of "
                             "{'role': ..., 'content': ...} dicts")
    return chats


def prompt_ids(tokenizer, chat) -> list[int]:
    """The token ids of ``chat`` through the chat template, ending with the assistant's header."""
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # a dict in transformers 5


def _stop_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    return ids | {tokenizer.eos_token_id}


@torch.no_grad()
def generate_batched(model, tokenizer, prompts, *, max_new_tokens: int = 32, batch_size: int = 16,
                     system: str | None = None, progress: bool = False) -> list[Generation]:
    """Greedy answers to ``prompts`` (strings or conversations), one ``Generation`` each, in the
    order given. ``system``: a system message put before every prompt that has none (else the
    chat template's default, if it has one). Prompts are sorted by length and run
    ``batch_size`` at a time, left-padded; each row stops at the end-of-turn token."""
    from lmbook.pretrained import encode_chat

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    chats = _chats(prompts)
    if system is not None:
        chats = [c if c[0]["role"] == "system" else [{"role": "system", "content": system}] + c
                 for c in chats]
    lengths = [len(prompt_ids(tokenizer, c)) for c in chats]
    order = sorted(range(len(chats)), key=lambda i: lengths[i])  # shortest first, stable
    stop = _stop_ids(model, tokenizer)
    device = next(model.parameters()).device
    out: list[Generation | None] = [None] * len(chats)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc="generate", unit="batch")
    for rows in batches:
        batch = encode_chat(tokenizer, [chats[i] for i in rows], max_new_tokens=max_new_tokens)
        batch = {k: v.to(device) for k, v in batch.items()}
        res = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, return_dict_in_generate=True,
                             output_logits=True)
        new = res.sequences[:, batch["input_ids"].shape[1]:]           # (B, S)
        logp = torch.stack(res.logits, dim=1).float().log_softmax(-1)  # (B, S, V)
        chosen = logp.gather(-1, new[..., None])[..., 0]               # (B, S)
        for r, i in enumerate(rows):
            ids = new[r].tolist()
            end = next((t for t, tok in enumerate(ids) if tok in stop), None)
            n = len(ids) if end is None else end
            mean = chosen[r, :n].mean().item() if n else float("nan")
            text = tokenizer.decode(ids[:n], skip_special_tokens=True).strip()
            out[i] = Generation(text, n, mean, end is not None)
    return out


@torch.no_grad()
def label_log_probs(model, tokenizer, prompts, labels: Sequence[str], *,
                    batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """(N, L) log-probability of each label text as the start of the model's answer to each
    prompt: the sum over the label's tokens of log P(token | chat prompt, earlier label tokens).
    Classification by prompting picks the argmax over labels, so the model never answers
    outside them. ``progress``: a progress bar over the batches."""
    if isinstance(labels, str) or len(labels) < 2:
        raise ValueError("labels must be a list of at least two label texts")
    label_ids = [tokenizer(lab, add_special_tokens=False)["input_ids"] for lab in labels]
    if any(not ids for ids in label_ids):
        raise ValueError("a label text is empty")
    chats = _chats(prompts)
    prompts_ids = [prompt_ids(tokenizer, c) for c in chats]
    if all(len(ids) == 1 for ids in label_ids):  # one forward pass per prompt scores every label
        logp = _next_token_log_probs(model, tokenizer, prompts_ids, batch_size, progress)
        return logp[:, [i[0] for i in label_ids]]
    items = [(n, j) for n in range(len(chats)) for j in range(len(labels))]
    items.sort(key=lambda it: len(prompts_ids[it[0]]) + len(label_ids[it[1]]))
    scores = torch.empty(len(chats), len(labels))
    for start in _steps(len(items), batch_size, progress):
        chunk = items[start:start + batch_size]
        seqs = [prompts_ids[n] + label_ids[j] for n, j in chunk]
        keep = max(len(label_ids[j]) for _, j in chunk) + 1
        logp = _log_probs(model, tokenizer, seqs, keep)                 # (B, keep, V)
        for r, (n, j) in enumerate(chunk):
            k = len(label_ids[j])
            pred = logp[r, keep - k - 1:keep - 1]                       # positions that predict the label
            scores[n, j] = pred.gather(-1, torch.tensor(label_ids[j], device=pred.device)[:, None]).sum()
    return scores


def _log_probs(model, tokenizer, seqs: list[list[int]], keep: int) -> torch.Tensor:
    """Next-token log-probabilities (B, keep, V) at the last ``keep`` positions of token-id
    lists left-padded to one width (the head runs on those positions only: a (B, T, V) tensor
    for a few-shot prompt takes gigabytes)."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, s in enumerate(seqs):
        ids[r, width - len(s):] = torch.tensor(s)
        mask[r, width - len(s):] = 1
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                   logits_to_keep=keep).logits
    return logits.float().log_softmax(-1)


def _next_token_log_probs(model, tokenizer, prompts_ids, batch_size, progress=False) -> torch.Tensor:
    """(N, V) log P(next token | prompt) for each prompt, batched in order of length."""
    order = sorted(range(len(prompts_ids)), key=lambda n: len(prompts_ids[n]))
    out = torch.empty(len(prompts_ids), model.config.vocab_size)
    for start in _steps(len(order), batch_size, progress):
        rows = order[start:start + batch_size]
        out[rows] = _log_probs(model, tokenizer, [prompts_ids[n] for n in rows], 1)[:, -1].cpu()
    return out


def _steps(n: int, batch_size: int, progress: bool):
    """The batch start indices 0, batch_size, ... below n, with a progress bar if asked."""
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm
        return tqdm(starts, desc="score labels", unit="batch")
    return starts


# ------------------------------------------------------------------------------------------
# answer matching (SQuAD's normalisation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation + "‘’“”")


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and the articles a/an/the removed, whitespace collapsed."""
    text = _ARTICLES.sub(" ", str(text).lower().translate(_PUNCT))
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> bool:
    """The normalised texts are equal."""
    return normalize_answer(prediction) == normalize_answer(reference)


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of precision and recall of the normalised words (counted with
    multiplicity), as SQuAD scores answers; 1.0 when both are empty."""
    p, r = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def contains_answer(prediction: str, reference: str) -> bool:
    """The normalised reference's words occur as a contiguous run in the normalised prediction's
    words: "It was 1963." contains "1963", "1963" does not contain "1"."""
    p, r = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not r:
        raise ValueError(f"the reference {reference!r} is empty after normalisation: "
                         "it cannot be matched")
    return any(p[i:i + len(r)] == r for i in range(len(p) - len(r) + 1))


# ------------------------------------------------------------------------------------------
# text-generation metrics from their reference libraries
def _pairs(hypotheses, references) -> tuple[list[str], list[str]]:
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("pass lists of texts (one hypothesis and one reference per item)")
    hyps, refs = [str(h) for h in hypotheses], [str(r) for r in references]
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references: one reference per item")
    if not hyps:
        raise ValueError("no items to score")
    return hyps, refs


def chrf(hypotheses, references) -> float:
    """Corpus-level chrF (character n-gram F-score, Popović 2015) as sacrebleu computes it,
    0-100, with one reference per hypothesis."""
    import sacrebleu

    hyps, refs = _pairs(hypotheses, references)
    return sacrebleu.corpus_chrf(hyps, [refs]).score


def rouge(hypotheses, references, types: Sequence[str] = ("rouge1", "rouge2", "rougeL")) -> dict:
    """Mean ROUGE F1 over the pairs (Lin 2004), computed by Google's ``rouge-score`` with its
    Porter stemmer: {type: mean F1 in [0, 1]}."""
    from rouge_score import rouge_scorer

    hyps, refs = _pairs(hypotheses, references)
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=True)
    scores = [scorer.score(r, h) for h, r in zip(hyps, refs)]  # score(target, prediction)
    return {t: sum(s[t].fmeasure for s in scores) / len(scores) for t in types}
