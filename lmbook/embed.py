"""Sentence embeddings from a BERT-style encoder: mean pooling over real (non-padding) tokens,
as all-MiniLM-L6-v2 was trained to be used (Reimers & Gurevych 2019), and cosine similarity.

    tokenizer, model = lmbook.pretrained.load_bert("base")
    E = sentence_embeddings(["a good film", "a great movie"], tokenizer, model)   # (2, 384)
    S = cosine_similarity_matrix(E)                                              # (2, 2)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` (N, C) with every row of ``b`` (M, C; default
    ``a``) -> (N, M), values in [-1, 1]."""
    b = a if b is None else b
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two (rows, features) matrices with the same number of "
                         f"features, got {tuple(a.shape)} and {tuple(b.shape)}")
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T
