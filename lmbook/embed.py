"""Sentence embeddings from a BERT-style encoder: mean pooling over real (non-padding) tokens,
as all-MiniLM-L6-v2 was trained to be used (Reimers & Gurevych 2019), and cosine similarity;
a bag-of-words baseline and a linear probe (logistic regression) on any fixed features.

    tokenizer, model = lmbook.pretrained.load_bert("base")
    E = sentence_embeddings(["a good film", "a great movie"], tokenizer, model)   # (2, 384)
    S = cosine_similarity_matrix(E)                                              # (2, 2)
    probe = train_linear_probe(E_train, y_train); probe_accuracy(probe, E_val, y_val)
"""
from __future__ import annotations

import re
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["mean_pool", "sentence_embeddings", "length_order", "cosine_similarity_matrix", "words", "build_vocabulary", "bag_of_words", "train_linear_probe", "probe_accuracy"]

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors where ``attention_mask`` is 1.
    hidden (B, T, C), attention_mask (B, T) -> (B, C)."""
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"expected hidden (B, T, C) and attention_mask (B, T), got "
                         f"{tuple(hidden.shape)} and {tuple(attention_mask.shape)}")
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)            # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)        # (B, C)


@torch.no_grad()
def sentence_embeddings(texts, tokenizer, model, batch_size: int = 32, max_length: int = 128,
                        normalize: bool = False, progress: bool = False) -> torch.Tensor:
    """Embed each text as the mask-aware mean of the encoder's last hidden states.

    ``texts``: a list of strings; ``tokenizer``/``model``: a Hugging Face tokenizer and a model
    whose output has ``last_hidden_state`` (``BertModel``, as ``load_bert("base")`` returns).
    Returns a float tensor (len(texts), hidden size) on the CPU; ``normalize=True`` scales each
    row to unit length. The result does not depend on ``batch_size`` (up to float rounding).
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string: wrap it as [text]")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: pass at least one sentence")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    starts = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="embedding", unit="batch")
    out = []
    try:
        for i in starts:
            enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt").to(device)
            hidden = model(**enc).last_hidden_state                    # (B, T, C)
            out.append(mean_pool(hidden, enc["attention_mask"]).float().cpu())
    finally:
        model.train(was_training)
    emb = torch.cat(out)
    return F.normalize(emb, dim=-1) if normalize else emb


def length_order(texts, tokenizer, max_length: int = 128) -> tuple[list[str], list[int]]:
    """``(texts, order)``: the texts as a list and their indices sorted by token length (ties keep
    their order). Batches taken in this order pad to similar lengths, which saves work; put the
    rows back with ``out[order] = rows``. A single string or an empty list is an error."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string: wrap it as [text]")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: pass at least one text")
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    return texts, sorted(range(len(texts)), key=lambda i: lengths[i])


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` (N, C) with every row of ``b`` (M, C; default
    ``a``) -> (N, M), values in [-1, 1]."""
    b = a if b is None else b
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two (rows, features) matrices with the same number of "
                         f"features, got {tuple(a.shape)} and {tuple(b.shape)}")
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


# ------------------------------------------------------------------------------------------
# a baseline without pretraining: bag of words
def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, with an apostrophe suffix such as n't or 's)."""
    return WORD.findall(text.lower().replace("\u2019", "'"))


def build_vocabulary(texts, min_count: int = 1) -> dict[str, int]:
    """Word -> column index for the words of ``texts`` seen at least ``min_count`` times
    (sorted, so the same texts always give the same columns)."""
    counts = Counter(w for t in texts for w in words(t))
    return {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_count))}


def bag_of_words(texts, vocabulary: dict[str, int], normalize: bool = True) -> torch.Tensor:
    """(len(texts), len(vocabulary)) word-presence features (1 if the word occurs); words not in
    the vocabulary are dropped. ``normalize`` scales each non-empty row to unit length."""
    if not vocabulary:
        raise ValueError("the vocabulary is empty: build it from some texts first")
    X = torch.zeros(len(texts), len(vocabulary))
    for i, t in enumerate(texts):
        for w in set(words(t)):
            j = vocabulary.get(w)
            if j is not None:
                X[i, j] = 1.0
    return F.normalize(X, dim=-1) if normalize else X


# ------------------------------------------------------------------------------------------
# a linear classifier on frozen features
def train_linear_probe(X: torch.Tensor, y: torch.Tensor, num_classes: int | None = None, *,
                       l2: float = 1e-3, max_iter: int = 200) -> nn.Linear:
    """Multinomial logistic regression on fixed features: minimise mean cross-entropy +
    ``l2``/2 * ||W||^2 (bias not penalised) with full-batch L-BFGS, from zero weights, so the
    result is deterministic. X (N, C) float, y (N,) class ids -> an ``nn.Linear(C, classes)``.

    The fit runs in float64: in float32 the optimiser stops where rounding does, and that point
    (hence a probe's third decimal) moved between CPU kernel sets. The returned layer is float32."""
    X = X.detach().double()
    y = torch.as_tensor(y, dtype=torch.long)
    if X.dim() != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"expected X (N, C) and y (N,), got {tuple(X.shape)} and {tuple(y.shape)}")
    if X.shape[0] == 0:
        raise ValueError("no training examples")
    k = int(num_classes or int(y.max()) + 1)
    if k < 2:
        raise ValueError("need at least two classes")
    probe = nn.Linear(X.shape[1], k)  # float32; its random init is overwritten below
    W = torch.zeros(k, X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(X @ W.T + b, y) + 0.5 * l2 * W.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        probe.weight.copy_(W)
        probe.bias.copy_(b)
    return probe.eval()


@torch.no_grad()
def probe_accuracy(probe: nn.Module, X: torch.Tensor, y) -> float:
    """Fraction of rows of ``X`` whose highest-scoring class is ``y``."""
    y = torch.as_tensor(y, dtype=torch.long)
    return (probe(X.float()).argmax(-1) == y).float().mean().item()
