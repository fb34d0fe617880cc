"""Checkers for counting and sampling (chapters 2, 4 and 6): a bigram model, BERT's masking
(80/10/10), top-k and top-p filtering. References: ``lmbook.ngram.NGramLM``,
``lmbook.data.mask_tokens`` and ``lmbook.generate``."""
from __future__ import annotations

import torch

from lmbook.data import IGNORE_INDEX, mask_tokens
from lmbook.exercises._report import call, checker, expect_close, expect_tensor, run_cases
from lmbook.generate import top_k_filter, top_p_filter
from lmbook.ngram import NGramLM

__all__ = ["check_bigram_model", "check_mlm_corruption", "check_top_k_filter", "check_top_p_filter"]


@checker
def check_bigram_model(fn) -> None:
    """``fn(text, k=1.0)`` -> (V, V) tensor P with P[i, j] = P(vocab[j] | vocab[i]), add-k
    smoothed: (count(ij) + k) / (count(i followed by anything) + k V), vocab = sorted(set(text)).
    Reference: ``NGramLM(2, smoothing="add-k", k=k)``."""
    def case(text, k):
        def run():
            vocab = sorted(set(text))
            lm = NGramLM(2, smoothing="add-k", k=k).fit(text)
            ref = torch.tensor([lm.distribution(c) for c in vocab], dtype=torch.float64)
            got = expect_tensor(call(fn, text, k), ref.shape)
            sums = got.double().sum(1)
            if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
                i = int((sums - 1).abs().argmax())
                hint = " (P looks transposed: rows are the context)" if torch.allclose(
                    got.double().sum(0), torch.ones_like(sums), atol=1e-4) else ""
                raise AssertionError(f"row {i} (context {vocab[i]!r}) sums to {sums[i].item():.4g}, not 1{hint}")
            expect_close(got, ref, what="probabilities")
        return run
    return run_cases("check_bigram_model", [
        ("'abracadabra', k=1", case("abracadabra", 1.0)), ("'abracadabra', k=0.1", case("abracadabra", 0.1)),
        ("last character never followed ('aab!')", case("aab!", 1.0)),
        ("two characters", case("ab", 0.5))])


@checker
def check_mlm_corruption(fn) -> None:
    """``fn(input_ids, vocab_size, mask_token_id, special_ids, mlm_probability=0.15)`` ->
    ``(corrupted_ids, labels)`` as BERT does: each non-special token is selected with
    ``mlm_probability``; a selected token becomes [MASK] 80% of the time, a random non-special
    token 10%, stays 10%; labels hold the original id where selected, -100 elsewhere. Draw
    randomness from torch's global RNG (the checker seeds it). Rates are checked on 16,384
    tokens, against the reference ``lmbook.data.mask_tokens`` on the same input."""
    V, MASK, special = 1000, 3, [0, 1, 2, 3]  # [PAD], [CLS], [SEP], [MASK]

    def batch(B, T):
        ids = torch.randint(4, V, (B, T))
        ids[:, 0], ids[:, -1] = 1, 2
        ids[::3, -5:] = 0  # padding
        return ids

    def case(ids, p):
        def run():
            original = ids.clone()
            out = call(fn, ids, V, MASK, special, p)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise AssertionError("return a tuple (corrupted_ids, labels)")
            corrupted, labels = expect_tensor(out[0], ids.shape, what="corrupted_ids"), expect_tensor(out[1], ids.shape, what="labels")
            if not torch.equal(ids, original):
                raise AssertionError("your function modified input_ids in place: work on a copy (ids.clone())")
            _check_mlm(ids, corrupted, labels, p, special, mask_tokens(ids, V, MASK, special_ids=special, mlm_probability=p))
        return run
    return run_cases("check_mlm_corruption", [
        ("128 x 128 tokens, p=0.15", case(batch(128, 128), 0.15)),
        ("one long sequence, p=0.3", case(batch(1, 16384), 0.3)),
        ("only special tokens", case(torch.tensor([[1, 0, 0, 2]]), 0.15))])


def _check_mlm(ids, corrupted, labels, p, special, reference):
    is_special = torch.isin(ids, torch.tensor(special))
    selected = labels != IGNORE_INDEX
    ref_sel = reference[1] != IGNORE_INDEX
    rate = lambda m, of: m.sum().item() / max(of.sum().item(), 1)  # noqa: E731
    if (selected & (labels != ids)).any():
        i = tuple((selected & (labels != ids)).nonzero()[0].tolist())
        raise AssertionError(f"label at {i} is {labels[i].item()} but the token there was {ids[i].item()}: labels "
                             f"hold the ORIGINAL id of each selected token, {IGNORE_INDEX} elsewhere")
    if (selected & is_special).any():
        raise AssertionError("a special token ([CLS], [SEP], [PAD]) was selected: they never are")
    changed_unlabelled = (corrupted != ids) & ~selected
    if changed_unlabelled.any():
        i = tuple(changed_unlabelled.nonzero()[0].tolist())
        raise AssertionError(f"position {i} changed from {ids[i].item()} to {corrupted[i].item()} but its label is "
                             f"{IGNORE_INDEX}: only selected tokens may change")
    n = (~is_special).sum().item()
    if n == 0:
        return
    tol = 5 * (p * (1 - p) / n) ** 0.5 + 1e-9
    got = rate(selected, ~is_special)
    if abs(got - p) > tol:
        raise AssertionError(f"selected {got:.1%} of the non-special tokens, expected about {p:.0%} "
                             f"(lmbook.data.mask_tokens on the same input: {rate(ref_sel, ~is_special):.1%})")
    k = selected.sum().item()
    became_mask = selected & (corrupted == 3)
    became_other = selected & (corrupted != ids) & (corrupted != 3)
    for name, m, share in (("became [MASK]", became_mask, 0.8), ("became a random token", became_other, 0.1),
                           ("stayed unchanged", selected & (corrupted == ids), 0.1)):
        got = rate(m, selected)
        if abs(got - share) > 5 * (share * (1 - share) / k) ** 0.5:
            raise AssertionError(f"of the selected tokens {got:.1%} {name}, expected about {share:.0%} "
                                 f"(BERT's 80/10/10 rule; out of {k} selected tokens)")
    if torch.isin(corrupted[became_other], torch.tensor(special)).any():
        raise AssertionError("a random replacement is a special token: draw replacements from the ordinary tokens")


def _check_filter(got, ref, logits, what: str):
    expect_tensor(got, logits.shape, logits.dtype)
    kept, ref_kept = torch.isfinite(got), torch.isfinite(ref)
    rows_got, rows_ref = kept.reshape(-1, logits.shape[-1]), ref_kept.reshape(-1, logits.shape[-1])
    for r in range(rows_ref.shape[0]):
        if rows_got[r].sum() != rows_ref[r].sum():
            raise AssertionError(f"row {r} keeps {int(rows_got[r].sum())} logits, expected {int(rows_ref[r].sum())} ({what})")
    if not torch.equal(kept, ref_kept):
        raise AssertionError(f"the kept logits are not the largest ones ({what})")
    if (got[~kept] != float("-inf")).any():
        raise AssertionError(f"filtered-out logits should be -inf (so softmax gives them 0), got {got[~kept][0].item()}")
    expect_close(got[kept], logits[kept], atol=0, rtol=0, what="kept logits (they must stay unchanged)")


@checker
def check_top_k_filter(fn) -> None:
    """``fn(logits, k)`` -> logits (..., V) with all but the k largest of each row set to -inf.
    Reference: ``lmbook.generate.top_k_filter``."""
    def case(logits, k):
        def run():
            _check_filter(call(fn, logits.clone(), k), top_k_filter(logits, k), logits, f"k={k}")
        return run
    x = torch.randn(3, 10)
    return run_cases("check_top_k_filter", [
        ("(3, 10), k=3", case(x, 3)), ("k=1 (greedy)", case(x, 1)), ("k = vocabulary size", case(x, 10)),
        ("one row (50,), k=5", case(torch.randn(50), 5)),
        ("(1, 2, 20) float64, k=4", case(torch.randn(1, 2, 20, dtype=torch.float64), 4))])


@checker
def check_top_p_filter(fn) -> None:
    """``fn(logits, p)`` -> logits (..., V) keeping the smallest set of most probable tokens whose
    probabilities add up to at least p (the most probable one always), the rest -inf.
    Reference: ``lmbook.generate.top_p_filter``."""
    def case(logits, p):
        def run():
            _check_filter(call(fn, logits.clone(), p), top_p_filter(logits, p), logits, f"p={p}")
        return run
    x = torch.randn(4, 12) * 2
    return run_cases("check_top_p_filter", [
        ("(4, 12), p=0.9", case(x, 0.9)), ("p=0.5", case(x, 0.5)),
        ("p tiny: only the most probable token", case(x, 1e-4)), ("p=1: nothing removed", case(x, 1.0)),
        ("one row (30,) float64, p=0.8", case(torch.randn(30, dtype=torch.float64) * 3, 0.8))])
