"""lmbook.interpret: attributions, rank correlations, probes, the association test and the
memorisation measure, on hand-made scores, a tiny random BERT and a rule-following 'language model'."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from lmbook import interpret
from lmbook.models import ModelOutput


# ---------------------------------------------------------------- attributions
def bag_score(weights):
    """A score that adds one weight per token id: each token's exact contribution is known."""
    return lambda ids, mask: (weights[ids] * mask).sum(-1)


def test_occlusion_by_deletion_recovers_each_tokens_contribution():
    w = torch.tensor([0.0, 1.5, -2.0, 0.25, 3.0])
    ids = torch.tensor([4, 1, 2, 3, 1])
    got = interpret.occlusion(bag_score(w), ids)
    assert torch.allclose(got, w[ids])
    inner = interpret.occlusion(bag_score(w), ids[None], positions=range(1, 4), batch_size=2)
    assert torch.allclose(inner, w[ids[1:4]])


def test_occlusion_by_replacement_and_bad_positions():
    w = torch.tensor([0.0, 1.0, 2.0, 5.0])
    ids = torch.tensor([3, 2, 1])
    got = interpret.occlusion(bag_score(w), ids, replace_id=1)
    assert torch.allclose(got, w[ids] - w[1])
    with pytest.raises(ValueError, match="positions must lie"):
        interpret.occlusion(bag_score(w), ids, positions=[3])
    with pytest.raises(ValueError, match="one score per row"):
        interpret.occlusion(lambda i, m: torch.zeros(1), ids)


def test_gradient_x_input_is_exact_for_a_linear_score():
    torch.manual_seed(0)
    E, v = torch.randn(6, 4), torch.randn(4)
    got = interpret.gradient_x_input(lambda e: (e @ v).sum(), E)
    assert torch.allclose(got, E @ v, atol=1e-6)
    assert torch.allclose(got.sum(), E @ v @ torch.ones(6), atol=1e-5)  # completeness for linear f
    with pytest.raises(ValueError, match="one number"):
        interpret.gradient_x_input(lambda e: e.sum(-1), E)


def test_attention_received_averages_heads_and_real_queries_only():
    w = torch.zeros(1, 2, 3, 3)
    w[0, 0, :, 0] = 1.0                         # head 0: everyone looks at token 0
    w[0, 1, :, 1] = 1.0                         # head 1: everyone looks at token 1
    w[0, :, 2] = torch.tensor([0.0, 0.0, 1.0])  # the padded query looks at itself
    got = interpret.attention_received(w, torch.tensor([[1, 1, 0]]))
    assert torch.allclose(got, torch.tensor([[0.5, 0.5, 0.0]]))
    assert torch.allclose(interpret.attention_received(w).sum(-1), torch.ones(1))


def test_attention_rollout_identity_single_layer_and_row_sums():
    T = 4
    eye = torch.eye(T).expand(2, 3, T, T)
    assert torch.allclose(interpret.attention_rollout([eye, eye]), torch.eye(T).expand(2, T, T))
    A = torch.softmax(torch.randn(2, 3, T, T), -1)
    assert torch.allclose(interpret.attention_rollout([A], residual=0.0), A.mean(1), atol=1e-6)
    R = interpret.attention_rollout([A, A.flip(-1)])
    assert torch.allclose(R.sum(-1), torch.ones(2, T), atol=1e-5)
    # two layers compose: the second layer's weights times the first's
    W1, W2 = (0.5 * torch.eye(T) + 0.5 * X.mean(1) for X in (A, A.flip(-1)))
    assert torch.allclose(R, W2 @ W1, atol=1e-6)


# ---------------------------------------------------------------- rank correlation
def test_rank_correlations_agree_with_their_definitions():
    a = [1.0, 2.0, 3.0, 4.0]
    assert interpret.kendall_tau(a, a) == pytest.approx(1.0)
    assert interpret.kendall_tau(a, a[::-1]) == pytest.approx(-1.0)
    # one discordant pair of six: (5 - 1) / 6
    assert interpret.kendall_tau(a, [1.0, 3.0, 2.0, 4.0]) == pytest.approx(4 / 6)
    # tau-b with a tie in b: 5 concordant, 0 discordant, tie-corrected denominator sqrt(6 * 5)
    assert interpret.kendall_tau(a, [1.0, 1.0, 2.0, 3.0]) == pytest.approx(5 / math.sqrt(30))
    assert interpret.spearman_rho(a, [10.0, 20.0, 30.0, 45.0]) == pytest.approx(1.0)
    # d = (0, 1, -1, 0): 1 - 6 * 2 / (4 * 15)
    assert interpret.spearman_rho(a, [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8)
    assert math.isnan(interpret.kendall_tau(a, [2.0] * 4))
    with pytest.raises(ValueError, match="same length"):
        interpret.spearman_rho(a, a[:3])


# ---------------------------------------------------------------- probing
def test_layer_embeddings_match_sentence_embeddings_in_the_given_order(tiny_bert):
    from lmbook.embed import sentence_embeddings

    tok, model = tiny_bert
    texts = ["a much longer sentence than the others, to force padding", "short", "mid size text"]
    H = interpret.layer_embeddings(texts, tok, model, batch_size=2)
    assert H.shape == (3, 3, 16)  # 2 layers + embeddings, 3 texts, width 16
    assert torch.allclose(H[-1], sentence_embeddings(texts, tok, model), atol=1e-5)
    alone = torch.cat([interpret.layer_embeddings([t], tok, model) for t in texts], 1)
    assert torch.allclose(H, alone, atol=1e-5)


def test_cross_validated_accuracy_separable_vs_random_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 2
    X = torch.randn(200, 5, generator=g) + 4.0 * y[:, None]
    assert interpret.cross_validated_accuracy(X, y).min() == 1.0
    noise = torch.randint(0, 2, (200,), generator=g)
    acc = interpret.cross_validated_accuracy(torch.randn(200, 5, generator=g), noise, folds=4)
    assert acc.shape == (4,) and 0.3 < acc.mean() < 0.7


# ---------------------------------------------------------------- association test
def clusters(seed=0):
    g = torch.Generator().manual_seed(seed)
    a_dir, b_dir = torch.zeros(8), torch.zeros(8)
    a_dir[0], b_dir[1] = 1.0, 1.0
    noise = lambda n: 0.3 * torch.randn(n, 8, generator=g)  # noqa: E731
    return a_dir + noise(6), b_dir + noise(6), a_dir + noise(5), b_dir + noise(5)


def test_association_test_finds_a_planted_association_and_is_antisymmetric():
    X, Y, A, B = clusters()
    r = interpret.association_test(X, Y, A, B)
    assert r.exact and r.permutations == math.comb(12, 6)
    assert r.effect_size > 1.5 and r.p_value < 0.01
    swapped = interpret.association_test(Y, X, A, B)
    assert swapped.effect_size == pytest.approx(-r.effect_size)
    assert swapped.p_value > 0.99


def test_association_test_exact_p_value_matches_brute_force_and_sampling():
    g = torch.Generator().manual_seed(1)
    X, Y, A, B = (torch.randn(n, 4, generator=g) for n in (4, 4, 3, 3))
    r = interpret.association_test(X, Y, A, B)
    s = torch.cat([r.s_x, r.s_y]).double()
    observed = s[:4].sum() - s[4:].sum()
    stats = [s[list(c)].sum() - (s.sum() - s[list(c)].sum()) for c in itertools.combinations(range(8), 4)]
    assert r.exact and r.p_value == pytest.approx(sum(float(t) >= float(observed) - 1e-9 for t in stats) / 70)
    sampled = interpret.association_test(X, Y, A, B, permutations=20, seed=3)
    assert not sampled.exact and sampled.permutations == 20
    assert abs(sampled.p_value - r.p_value) < 0.35
    again = interpret.association_test(X, Y, A, B, permutations=20, seed=3)
    assert again.p_value == sampled.p_value  # seeded


def test_association_test_effect_size_formula():
    X, Y, A, B = clusters(2)
    r = interpret.association_test(X, Y, A, B)
    s = torch.cat([r.s_x, r.s_y])
    assert r.effect_size == pytest.approx(float((r.s_x.mean() - r.s_y.mean()) / s.std()), rel=1e-5)
    cos = torch.nn.functional.cosine_similarity
    s0 = cos(X[:1], A).mean() - cos(X[:1], B).mean()
    assert r.s_x[0] == pytest.approx(float(s0), abs=1e-6)
    with pytest.raises(ValueError, match="same number of features"):
        interpret.association_test(X, Y, A[:, :3], B)


# ---------------------------------------------------------------- memorisation
class CountingLM(torch.nn.Module):
    """A 'language model' that always predicts token (last + 1) mod V."""

    def __init__(self, vocab=7):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, labels=None):
        logits = torch.nn.functional.one_hot((input_ids + 1) % self.vocab, self.vocab).float() * 10
        return ModelOutput(logits=logits + 0 * self.dummy)


def test_verbatim_completion_counts_matched_tokens():
    spans = torch.tensor([[0, 1, 2, 3, 4, 5],     # follows the rule: extractable
                          [3, 4, 5, 6, 0, 2],     # breaks at the 2nd suffix token
                          [1, 2, 0, 0, 0, 0]])    # breaks at once
    c = interpret.verbatim_completion(CountingLM(), spans, prefix_len=2)
    assert c.generated.shape == (3, 4)
    assert c.matched.tolist() == [4, 3, 0] and c.exact.tolist() == [True, False, False]
    assert c.exact_rate == pytest.approx(1 / 3) and c.mean_matched == pytest.approx(7 / 3)
    with pytest.raises(ValueError, match="prefix_len"):
        interpret.verbatim_completion(CountingLM(), spans, prefix_len=6)


def test_sample_spans_are_distinct_windows_and_seeded():
    ids = torch.arange(100)
    s = interpret.sample_spans(ids, 10, 8, seed=0)
    assert s.shape == (10, 8)
    assert torch.equal(s[:, 1:] - s[:, :-1], torch.ones(10, 7, dtype=torch.long))  # consecutive
    assert len(set(s[:, 0].tolist())) == 10
    assert torch.equal(s, interpret.sample_spans(ids, 10, 8, seed=0))
    with pytest.raises(ValueError, match="cannot cut"):
        interpret.sample_spans(ids, 95, 8)


def test_permutation_p_value_unequal_groups_brute_force():
    s_x, s_y = torch.tensor([0.9, 0.4, 0.7]), torch.tensor([0.1, 0.5, -0.2, 0.3, 0.0])
    s = torch.cat([s_x, s_y])
    observed = s_x.sum() - s_y.sum()
    stats = [s[list(c)].sum() - (s.sum() - s[list(c)].sum()) for c in itertools.combinations(range(8), 3)]
    expected = sum(float(t) >= float(observed) - 1e-6 for t in stats) / math.comb(8, 3)
    assert interpret.permutation_p_value(s_x, s_y) == pytest.approx(expected)
    assert expected < 0.05  # the three largest scores are mostly in s_x
    assert interpret.permutation_p_value(s_y, s_x) > 0.9
    tiny = interpret.permutation_p_value(s_x, s_y, permutations=10, seed=0)
    assert 1 / 11 <= tiny <= 1.0  # sampled: never below 1 / (permutations + 1)


def test_permutation_p_value_alternatives():
    s_x, s_y = [3.0, 2.5, 2.0], [0.0, 0.5, 1.0, -1.0]
    greater = interpret.permutation_p_value(s_x, s_y)
    less = interpret.permutation_p_value(s_x, s_y, alternative="less")
    assert greater == pytest.approx(1 / math.comb(7, 3))        # only the observed split is as extreme
    assert less == pytest.approx(interpret.permutation_p_value(s_y, s_x))
    assert less == pytest.approx(1.0)
    two = interpret.permutation_p_value(s_x, s_y, alternative="two-sided")
    assert two == pytest.approx(2 * greater)
    assert interpret.permutation_p_value(s_y, s_x, alternative="two-sided") == pytest.approx(two)
    same = interpret.permutation_p_value([1.0, 2.0], [1.0, 2.0], alternative="two-sided")
    assert same == 1.0                                          # capped at 1
    with pytest.raises(ValueError, match="two-sided"):
        interpret.permutation_p_value(s_x, s_y, alternative="both")
