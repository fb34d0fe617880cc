"""Semantic search (lmbook.retrieval): embedding in length order, top-k cosine search, the index,
recall@k and MRR; on a tiny random BERT, hand-made vectors, and once on the packaged MiniLM."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lmbook import embed, retrieval


TEXTS = ["a much longer sentence that needs a lot of padding in a batch", "short",
         "a sentence of middle length", "tiny", "another long sentence, with several more words in it"]


def test_embed_texts_equals_sentence_embeddings_in_the_callers_order(tiny):
    tok, model = tiny
    fast = retrieval.embed_texts(TEXTS, tok, model, batch_size=2)
    plain = embed.sentence_embeddings(TEXTS, tok, model, batch_size=2, normalize=True)
    assert fast.shape == (5, 16)
    assert torch.allclose(fast, plain, atol=1e-5)
    assert torch.allclose(fast.norm(dim=-1), torch.ones(5), atol=1e-5)
    with pytest.raises(TypeError, match="wrap it"):
        retrieval.embed_texts("one text", tok, model)
    with pytest.raises(ValueError, match="empty"):
        retrieval.embed_texts([], tok, model)


def test_top_k_cosine_ranks_by_cosine_and_breaks_ties_by_index():
    g = torch.Generator().manual_seed(0)
    q, keys = torch.randn(3, 8, generator=g), torch.randn(20, 8, generator=g)
    res = retrieval.top_k_cosine(q, keys * 5.0, k=4)  # the length of a key must not matter
    sims = torch.nn.functional.cosine_similarity(q[:, None], keys[None], dim=-1)
    assert res.indices.shape == res.scores.shape == (3, 4)
    assert torch.equal(res.indices, sims.argsort(dim=-1, descending=True)[:, :4])
    assert torch.allclose(res.scores, sims.gather(1, res.indices), atol=1e-6)
    assert (res.scores[:, :-1] >= res.scores[:, 1:]).all()
    same = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [0.0, 3.0]])  # rows 0, 2, 3 tie
    assert retrieval.top_k_cosine(torch.tensor([[0.0, 1.0]]), same, k=3).indices.tolist() == [[0, 2, 3]]
    with pytest.raises(ValueError, match="only 20 keys"):
        retrieval.top_k_cosine(q, keys, k=21)
    with pytest.raises(ValueError, match="same number of features"):
        retrieval.top_k_cosine(q, keys[:, :4], k=1)


def test_index_with_a_bag_of_words_embedder_finds_the_matching_text():
    docs = ["my printer is not printing", "i forgot my password", "the screen is flickering"]
    vocab = embed.build_vocabulary(docs)
    index = retrieval.EmbeddingIndex.from_texts(docs, embed=lambda t: embed.bag_of_words(t, vocab))
    assert len(index) == 3 and "3 texts" in repr(index)
    res = index.search(["printer not printing", "password forgot", "flickering screen"], k=3)
    assert res.indices[:, 0].tolist() == [0, 1, 2]
    exact = index.search(docs, k=1)
    assert torch.allclose(exact.scores[:, 0], torch.ones(3), atol=1e-6)
    by_vector = index.search(index.vectors[1:2], k=1)  # vectors work as queries too
    assert by_vector.indices.tolist() == [[1]]
    with pytest.raises(TypeError, match="wrap it"):
        index.search("printer", k=1)
    with pytest.raises(ValueError, match="not both"):
        retrieval.EmbeddingIndex.from_texts(docs)
    bare = retrieval.EmbeddingIndex(docs, index.vectors)
    with pytest.raises(TypeError, match="no embed function"):
        bare.search(["printer"], k=1)
    with pytest.raises(ValueError, match="one vector per text"):
        retrieval.EmbeddingIndex(docs, index.vectors[:2])


def test_index_from_a_bert_embeds_queries_like_the_texts(tiny):
    tok, model = tiny
    index = retrieval.EmbeddingIndex.from_texts(TEXTS, tok, model, batch_size=2)
    res = index.search(TEXTS[::-1], k=1)  # each text is its own nearest neighbour
    assert res.indices[:, 0].tolist() == [4, 3, 2, 1, 0]
    assert torch.allclose(res.scores[:, 0], torch.ones(5), atol=1e-5)


def test_recall_at_k_and_mrr_follow_their_definitions():
    ranked = torch.tensor([[2, 0, 1], [1, 2, 0], [0, 1, 2]])
    relevant = [0, {1, 2}, {2}]  # ranks of the first hit: 2, 1, 3
    assert retrieval.recall_at_k(ranked, relevant, k=1) == pytest.approx(1 / 3)
    assert retrieval.recall_at_k(ranked, relevant, k=2) == pytest.approx(2 / 3)
    assert retrieval.recall_at_k(ranked, relevant, k=3) == pytest.approx(1.0)
    assert retrieval.mean_reciprocal_rank(ranked, relevant) == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    res = retrieval.SearchResult(scores=torch.zeros(3, 3), indices=ranked)
    assert retrieval.recall_at_k(res, relevant, k=2) == retrieval.recall_at_k(ranked.tolist(), relevant, k=2)
    assert retrieval.mean_reciprocal_rank([[5, 6]], [7]) == 0.0  # not retrieved: 0
    # one relevant index may be a NumPy or 0-d tensor scalar too
    assert retrieval.recall_at_k(ranked, [np.int64(0), {1, 2}, torch.tensor(2)], k=2) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least 4 results"):
        retrieval.recall_at_k(ranked, relevant, k=4)
    with pytest.raises(ValueError, match="one entry per query"):
        retrieval.recall_at_k(ranked, relevant[:2], k=1)


def test_pretrained_minilm_retrieves_a_reworded_question():
    from lmbook.pretrained import load_bert

    tok, model = load_bert("base", verbose=False)
    questions = ["My printer is not printing.", "I forgot my password.", "What is the capital of France?",
                 "My screen is flickering."]
    index = retrieval.EmbeddingIndex.from_texts(questions, tok, model)
    res = index.search(["the printer won't print anything", "I can't remember my login password"], k=2)
    assert res.indices[:, 0].tolist() == [0, 1]
    assert (res.scores[:, 0] - res.scores[:, 1] > 0.1).all()  # a clear margin, not a coin flip
