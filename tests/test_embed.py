"""Mean-pooled sentence embeddings and cosine similarity (lmbook.embed), on a tiny random BERT
with the packaged WordPiece tokenizer, and once on the packaged all-MiniLM-L6-v2."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmbook import embed


def test_mean_pool_ignores_padding():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    m = torch.tensor([[1, 1, 0]])
    assert torch.allclose(embed.mean_pool(h, m), torch.tensor([[2.0, 3.0]]))
    with pytest.raises(ValueError, match="attention_mask"):
        embed.mean_pool(h, torch.ones(1, 2))


def test_embedding_does_not_depend_on_batching_or_padding(tiny):
    tok, model = tiny
    texts = ["short", "a much longer sentence that forces padding of the short one", "mid size text"]
    together = embed.sentence_embeddings(texts, tok, model, batch_size=3)
    alone = torch.cat([embed.sentence_embeddings([t], tok, model) for t in texts])
    assert together.shape == (3, 16)
    assert torch.allclose(together, alone, atol=1e-5)


def test_normalize_and_input_errors(tiny):
    tok, model = tiny
    e = embed.sentence_embeddings(["one", "two"], tok, model, normalize=True)
    assert torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-6)
    with pytest.raises(TypeError, match="list of strings"):
        embed.sentence_embeddings("one", tok, model)
    with pytest.raises(ValueError, match="empty"):
        embed.sentence_embeddings([], tok, model)
    assert not model.training


def test_cosine_similarity_matrix_matches_torch():
    torch.manual_seed(0)
    a, b = torch.randn(4, 8), torch.randn(3, 8)
    s = embed.cosine_similarity_matrix(a, b)
    assert s.shape == (4, 3)
    assert torch.allclose(s, F.cosine_similarity(a[:, None], b[None], dim=-1), atol=1e-6)
    sa = embed.cosine_similarity_matrix(a)
    assert torch.allclose(sa, sa.T) and torch.allclose(sa.diagonal(), torch.ones(4), atol=1e-6)
    with pytest.raises(ValueError, match="same number of features"):
        embed.cosine_similarity_matrix(a, torch.randn(3, 5))


def test_pretrained_minilm_ranks_a_paraphrase_above_an_unrelated_sentence():
    from lmbook.pretrained import load_bert

    tok, model = load_bert("base", verbose=False)
    e = embed.sentence_embeddings(["The film was wonderful.", "I loved this movie.",
                                   "The stock market fell sharply today."], tok, model)
    s = embed.cosine_similarity_matrix(e)
    assert s[0, 1] > s[0, 2] + 0.2


def test_bag_of_words_features():
    vocab = embed.build_vocabulary(["A good film.", "a BAD film", "isn't it"])
    assert vocab == {"a": 0, "bad": 1, "film": 2, "good": 3, "isn't": 4, "it": 5}
    X = embed.bag_of_words(["good good film", "unknown words only"], vocab, normalize=False)
    assert X.tolist() == [[0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]]
    Xn = embed.bag_of_words(["good film"], vocab)
    assert torch.allclose(Xn.norm(dim=-1), torch.ones(1))
    assert embed.words("It\u2019s FUN!") == ["it's", "fun"]
    with pytest.raises(ValueError, match="empty"):
        embed.bag_of_words(["x"], {})


def test_linear_probe_separates_separable_data_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 5, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    p1, p2 = embed.train_linear_probe(X, y), embed.train_linear_probe(X, y)
    assert torch.equal(p1.weight, p2.weight)
    assert embed.probe_accuracy(p1, X, y) > 0.97
    # a strong L2 penalty shrinks the weights
    assert embed.train_linear_probe(X, y, l2=10.0).weight.norm() < p1.weight.norm()
    three = embed.train_linear_probe(X, torch.arange(200) % 3)
    assert three.out_features == 3
    with pytest.raises(ValueError, match="expected X"):
        embed.train_linear_probe(X, y[:10])


def test_length_order_sorts_by_tokens_and_keeps_ties(tiny):
    tok, _ = tiny
    texts = ["a b c d", "a", "b", "a b"]
    listed, order = embed.length_order(iter(texts), tok)
    assert listed == texts
    assert order == [1, 2, 3, 0]  # "a" before "b": equal lengths keep their order
    with pytest.raises(TypeError, match="wrap it"):
        embed.length_order("one string", tok)
    with pytest.raises(ValueError, match="empty"):
        embed.length_order([], tok)


def test_linear_probe_is_float32_and_reaches_the_optimum():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 8, generator=g)
    y = (X[:, 0] + 0.5 * torch.randn(200, generator=g) > 0).long()
    probe = embed.train_linear_probe(X, y, l2=1e-2)
    assert probe.weight.dtype == torch.float32
    # the gradient of the objective at the returned weights, in float64, is ~0: the fit converged
    W = probe.weight.detach().double().requires_grad_()
    b = probe.bias.detach().double().requires_grad_()
    loss = F.cross_entropy(X.double() @ W.T + b, y) + 0.5 * 1e-2 * W.pow(2).sum()
    loss.backward()
    assert max(W.grad.abs().max().item(), b.grad.abs().max().item()) < 1e-5
