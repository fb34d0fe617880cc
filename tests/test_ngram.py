"""lmbook.ngram: counts, normalisation of both smoothings, Kneser-Ney against a hand computation,
scoring, sampling and error messages, on tiny texts."""
from __future__ import annotations

import math

import pytest

from lmbook.ngram import NGramLM, bits, scramble

TEXT = "abracadabra arbadacarba " * 20


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_conditional_distribution_sums_to_one(order, smoothing):
    lm = NGramLM(order, smoothing=smoothing, k=0.5).fit(TEXT, vocab=set(TEXT) | {"z"})
    for ctx in ["", "a", "ab", "abr", "zzz", "q"[:0]]:
        dist = lm.distribution(ctx)
        assert len(dist) == lm.vocab_size
        assert sum(dist) == pytest.approx(1.0, abs=1e-12)
        assert min(dist) > 0, "smoothing must give every token some probability"


def test_counts_are_the_ngrams_of_the_text():
    lm = NGramLM(3).fit("abcab")
    assert lm.counts[1] == {"a": 2, "b": 2, "c": 1}
    assert lm.counts[2] == {"ab": 2, "bc": 1, "ca": 1}
    assert lm.counts[3] == {"abc": 1, "bca": 1, "cab": 1}


def test_sequences_do_not_join():
    lm = NGramLM(2).fit(["a", "b"]).update(["b", "a"])
    assert lm.counts[2] == {("a", "b"): 1, ("b", "a"): 1}
    assert lm.vocab == ["a", "b"]
    with pytest.raises(TypeError, match="mix"):
        lm.update("ab")


def test_add_one_bigram_is_laplace():
    lm = NGramLM(2, smoothing="add-k", k=1.0).fit("aab")
    # c(aa)=1, c(ab)=1, c(a.)=2, V=2
    assert lm.prob("a", "a") == pytest.approx((1 + 1) / (2 + 2))
    assert lm.prob("b", "b") == pytest.approx((0 + 1) / (0 + 2))


def test_kneser_ney_bigram_matches_hand_computation():
    lm = NGramLM(2).fit("abab")
    # bigram counts ab:2, ba:1 -> n1=1, n2=1, D2 = 1/3; continuation counts of unigrams:
    # b follows 1 distinct token, a follows 1 (and 'a' opens the text) -> a:1, b:1, D1 = 1
    d2 = 1 / 3
    p_uni_b = max(1 - 1.0, 0) / 2 + 1.0 * 2 / 2 * (1 / 2)  # = 0.5
    expected = (2 - d2) / 2 + d2 * 1 / 2 * p_uni_b
    assert lm.prob("b", "a") == pytest.approx(expected)
    assert lm.prob("b", "zzz") == pytest.approx(p_uni_b)  # unseen context backs off


def test_uses_only_the_last_order_minus_one_tokens():
    lm = NGramLM(3).fit(TEXT)
    assert lm.prob("a", "xxxxbr") == lm.prob("a", "br")


def test_real_text_beats_scrambled_and_higher_order_fits_better():
    train, held = TEXT[:-48], TEXT[-48:]
    ce = [NGramLM(n).fit(train, vocab=set(TEXT)).cross_entropy(held) for n in (1, 2, 3)]
    assert ce[0] > ce[1] > ce[2]
    lm = NGramLM(3).fit(train)
    assert lm.log_prob(held) > lm.log_prob(scramble(held, seed=1))
    assert lm.perplexity(held) == pytest.approx(math.exp(lm.cross_entropy(held)))
    assert bits(math.log(2)) == pytest.approx(1.0)


def test_log_prob_is_the_chain_rule():
    lm = NGramLM(2).fit(TEXT)
    lp = lm.log_prob("cab", context="a")
    assert lp == pytest.approx(math.log(lm.prob("c", "a")) + math.log(lm.prob("a", "c"))
                               + math.log(lm.prob("b", "a")))


def test_sampling_is_seeded_and_follows_the_counts():
    lm = NGramLM(4).fit(TEXT)
    a, b = lm.sample(60, context="abr", seed=3), lm.sample(60, context="abr", seed=3)
    assert a == b and len(a) == 60 and set(a) <= set(TEXT)
    assert lm.sample(1, context="abr", seed=0) == "a"  # "abr" is always followed by "a"
    assert lm.predict("abr") == "a"
    words = NGramLM(2).fit("the cat sat on the mat".split())
    assert isinstance(words.sample(5, context=["the"], seed=0), list)


def test_clear_errors():
    with pytest.raises(ValueError, match="order"):
        NGramLM(0)
    with pytest.raises(ValueError, match="smoothing"):
        NGramLM(2, smoothing="witten-bell")
    with pytest.raises(RuntimeError, match="fit"):
        NGramLM(2).prob("a", "b")
    with pytest.raises(ValueError, match="empty"):
        NGramLM(2).fit("")
    with pytest.raises(ValueError, match="not in the given vocab"):
        NGramLM(2).fit("abc", vocab="ab").prob("a")


def test_with_order_shares_counts():
    big = NGramLM(4).fit(TEXT)
    small = big.with_order(2)
    ref = NGramLM(2).fit(TEXT)
    assert small.order == 2
    assert small.num_ngrams == ref.num_ngrams == len(set(TEXT)) + len(ref.counts[2])
    assert big.num_ngrams > small.num_ngrams
    for ctx in ["a", "b", "r"]:
        assert small.distribution(ctx) == pytest.approx(ref.distribution(ctx))


def test_views_follow_their_parent_and_cannot_be_updated():
    big = NGramLM(3).fit("abab")
    view = big.with_order(2)
    before = view.prob("c", "a")
    big.update("acac")  # the view sees the new counts
    assert view.prob("c", "a") > before
    assert view.prob("c", "a") == pytest.approx(NGramLM(2).fit("abab").update("acac").prob("c", "a"))
    with pytest.raises(TypeError, match="view"):
        view.update("abc")
