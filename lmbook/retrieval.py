"""Semantic search: texts embedded as unit vectors, top-k search by cosine similarity, and the
usual retrieval metrics (recall@k, mean reciprocal rank).

    tokenizer, model = lmbook.pretrained.load_bert("base")
    index = EmbeddingIndex.from_texts(questions, tokenizer, model)   # sentence embeddings
    found = index.search(["my printer won't print"], k=5)            # SearchResult (1, 5)
    index.texts[found.indices[0, 0]], found.scores[0, 0]
    recall_at_k(found.indices, relevant, k=1)

Any other text -> vector function works too (``embed=``), e.g. a bag-of-words baseline:
``EmbeddingIndex.from_texts(texts, embed=lambda t: bag_of_words(t, vocabulary))``.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from lmbook.embed import cosine_similarity_matrix, length_order, sentence_embeddings

__all__ = ["EmbeddingIndex", "SearchResult", "embed_texts", "top_k_cosine", "recall_at_k",
           "mean_reciprocal_rank"]


def embed_texts(texts, tokenizer, model, *, batch_size: int = 32, max_length: int = 128,
                progress: bool = False) -> torch.Tensor:
    """Unit-length sentence embeddings (len(texts), C), as
    ``sentence_embeddings(texts, tokenizer, model, normalize=True)`` computes them (equal up to
    float rounding), but faster: the texts are embedded in order of token length, so a batch
    pads to similar lengths, and the rows are put back in the order of ``texts``."""
    texts, order = length_order(texts, tokenizer, max_length)
    emb = sentence_embeddings([texts[i] for i in order], tokenizer, model, batch_size=batch_size,
                              max_length=max_length, normalize=True, progress=progress)
    out = torch.empty_like(emb)
    out[torch.tensor(order)] = emb
    return out


@dataclass
class SearchResult:
    """``scores`` (Q, k) cosine similarities, best first; ``indices`` (Q, k) the rows they belong to."""

    scores: torch.Tensor
    indices: torch.Tensor


def top_k_cosine(queries: torch.Tensor, keys: torch.Tensor, k: int) -> SearchResult:
    """For each query row (Q, C), the ``k`` key rows (N, C) of highest cosine similarity, best
    first; equal scores are ordered by key index, so the result is deterministic."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    sims = cosine_similarity_matrix(queries, keys)  # (Q, N); checks the shapes
    if k > keys.shape[0]:
        raise ValueError(f"k={k} but there are only {keys.shape[0]} keys: ask for at most that many")
    scores, indices = torch.sort(sims, dim=-1, descending=True, stable=True)
    return SearchResult(scores[:, :k], indices[:, :k])


class EmbeddingIndex:
    """``texts`` with one unit vector each (``vectors``, (N, C)); ``search`` ranks them by cosine
    similarity to queries. ``embed`` (list of str -> (n, C) tensor) turns query texts into
    vectors; without it, ``search`` takes vectors only."""

    def __init__(self, texts: Sequence[str], vectors: torch.Tensor,
                 embed: Callable[[list], torch.Tensor] | None = None):
        texts = list(texts)
        if vectors.dim() != 2 or vectors.shape[0] != len(texts):
            raise ValueError(f"expected one vector per text: {len(texts)} texts but vectors of shape "
                             f"{tuple(vectors.shape)}")
        if not texts:
            raise ValueError("an index needs at least one text")
        self.texts = texts
        self.vectors = F.normalize(vectors.detach().float().cpu(), dim=-1)  # (N, C)
        self.embed = embed

    @classmethod
    def from_texts(cls, texts: Iterable[str], tokenizer=None, model=None, *,
                   embed: Callable[[list], torch.Tensor] | None = None, batch_size: int = 32,
                   max_length: int = 128, progress: bool = False) -> "EmbeddingIndex":
        """Embed ``texts`` with a BERT-style ``tokenizer`` and ``model`` (mean-pooled sentence
        embeddings, :func:`embed_texts`), or with your own ``embed`` function; queries are later
        embedded the same way."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string: wrap it as [text]")
        texts = list(texts)
        if (embed is None) == (tokenizer is None or model is None):
            raise ValueError("give either tokenizer and model, or embed (a function from a list of "
                             "texts to a (n, C) tensor), not both")
        if embed is None:
            def embed(batch, tokenizer=tokenizer, model=model):
                return embed_texts(batch, tokenizer, model, batch_size=batch_size,
                                   max_length=max_length)
            vectors = embed_texts(texts, tokenizer, model, batch_size=batch_size,
                                  max_length=max_length, progress=progress)
        else:
            if not texts:
                raise ValueError("an index needs at least one text")
            vectors = torch.as_tensor(embed(texts))
        return cls(texts, vectors, embed)

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return f"EmbeddingIndex({len(self)} texts, dim {self.vectors.shape[1]})"

    def search(self, queries, k: int = 5) -> SearchResult:
        """The ``k`` most similar texts for each query: ``queries`` is a list of strings (embedded
        with the index's ``embed``) or a (Q, C) tensor of vectors. Returns a SearchResult with
        (Q, k) scores and indices into ``texts``."""
        if isinstance(queries, str):
            raise TypeError("queries must be a list of strings, not one string: wrap it as [query]")
        if not isinstance(queries, torch.Tensor):
            queries = list(queries)
            if not queries:
                raise ValueError("queries is empty: pass at least one query")
            if self.embed is None:
                raise TypeError("this index has no embed function: pass query vectors (Q, C), "
                                "or build it with EmbeddingIndex.from_texts")
            queries = torch.as_tensor(self.embed(queries))
        if queries.dim() == 1:
            raise ValueError("queries must have shape (Q, C); for one vector use v[None]")
        return top_k_cosine(queries.detach().float().cpu(), self.vectors, k)


# ------------------------------------------------------------------------------------------
# metrics
def _relevant_sets(relevant, n: int) -> list[set]:
    relevant = list(relevant)
    if len(relevant) != n:
        raise ValueError(f"relevant must give one entry per query: {n} queries but {len(relevant)} entries")
    sets = []
    for r in relevant:
        scalar = isinstance(r, numbers.Integral) or (hasattr(r, "ndim") and r.ndim == 0)
        s = {int(r)} if scalar else {int(x) for x in r}  # one index (int, NumPy or 0-d tensor) or several
        if not s:
            raise ValueError("every query needs at least one relevant index (an empty set cannot be found)")
        sets.append(s)
    return sets


def _ranked_lists(indices) -> list[list[int]]:
    if isinstance(indices, SearchResult):
        indices = indices.indices
    if isinstance(indices, torch.Tensor):
        if indices.dim() != 2:
            raise ValueError(f"indices must have shape (Q, k), got {tuple(indices.shape)}")
        return indices.tolist()
    return [[int(i) for i in row] for row in indices]


def recall_at_k(indices, relevant, k: int) -> float:
    """Fraction of queries with at least one relevant item among their first ``k`` results.

    ``indices``: (Q, K >= k) ranked results (a tensor, a SearchResult or lists); ``relevant``: per
    query an index or a collection of indices that count as correct. (With one relevant item per
    query this is also "top-k accuracy".)"""
    ranked = _ranked_lists(indices)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    short = [len(r) for r in ranked if len(r) < k]
    if short:
        raise ValueError(f"recall@{k} needs at least {k} results per query, some have {min(short)}: "
                         f"search with k >= {k}")
    sets = _relevant_sets(relevant, len(ranked))
    if not ranked:
        raise ValueError("no queries")
    return sum(bool(set(r[:k]) & s) for r, s in zip(ranked, sets)) / len(ranked)


def mean_reciprocal_rank(indices, relevant) -> float:
    """Mean over queries of 1 / (rank of the first relevant result), 0 when none of the
    retrieved results is relevant (ranks start at 1)."""
    ranked = _ranked_lists(indices)
    sets = _relevant_sets(relevant, len(ranked))
    if not ranked:
        raise ValueError("no queries")
    total = 0.0
    for r, s in zip(ranked, sets):
        total += next((1.0 / (i + 1) for i, x in enumerate(r) if x in s), 0.0)
    return total / len(ranked)
