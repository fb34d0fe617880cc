"""lmbook.exercises: every checker passes a correct solution and rejects plausible wrong ones
with a message that says what is wrong."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook import exercises as ex


def fails(checker, fn, *fragments):
    """checker(fn) raises AssertionError whose message contains every fragment."""
    with pytest.raises(AssertionError) as info:
        checker(fn)
    for f in fragments:
        assert f in str(info.value), str(info.value)
    return str(info.value)


def passes(checker, fn, capsys, n_cases):
    assert checker(fn) is None
    assert capsys.readouterr().out == f"\u2713 {checker.__name__}: {n_cases} cases passed\n"


# ------------------------------------------------------------------ attention and friends
def softmax(x):
    e = (x - x.max(-1, keepdim=True).values).exp()
    return e / e.sum(-1, keepdim=True)


def test_softmax(capsys):
    passes(ex.check_softmax, softmax, capsys, 5)
    fails(ex.check_softmax, lambda x: x.exp() / x.exp().sum(-1, keepdim=True),
          "large logits", "nan", "without subtracting the row maximum")
    fails(ex.check_softmax, lambda x: x.softmax(0) if x.dim() > 1 else x.softmax(0) * 2, "rows sum to")
    fails(ex.check_softmax, lambda x: softmax(x).float(), "float64", "wrong dtype")


def attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def test_attention(capsys):
    passes(ex.check_attention, attention, capsys, 6)
    passes(ex.check_attention, lambda q, k, v, mask=None: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
           capsys, 6)  # zeros, not NaN, for the fully blocked row: accepted
    fails(ex.check_attention, lambda q, k, v, mask=None: attention(q * math.sqrt(q.shape[-1]), k, v, mask),
          "case 'random", "max abs difference", "without the 1/sqrt(d_k) scale")
    fails(ex.check_attention, lambda q, k, v, mask=None: attention(q, k, v), "causal mask", "ignores the mask")
    fails(ex.check_attention, lambda q, k, v, mask=None: attention(q, k, v, None if mask is None else ~mask),
          "mask inverted")
    fails(ex.check_attention, lambda q, k, v, mask=None: attention(q, k, v[..., :k.shape[-1]], mask), "non-square",
          "wrong shape: expected (2, 3, 6), got (2, 3, 4)")
    fails(ex.check_attention, lambda q, k, v, mask=None: 1 / 0, "raised ZeroDivisionError")


def test_causal_mask(capsys):
    passes(ex.check_causal_mask, lambda T: torch.ones(T, T, dtype=torch.bool).tril(), capsys, 4)
    fails(ex.check_causal_mask, lambda T: torch.ones(T, T, dtype=torch.bool).tril(1),
          "case 'T=2'", "lets position 0 see position 1, which comes later")
    fails(ex.check_causal_mask, lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1),
          "blocks position 0 from seeing itself")
    fails(ex.check_causal_mask, lambda T: torch.ones(T, T, dtype=torch.bool).triu(1), "swapped")
    fails(ex.check_causal_mask, lambda T: torch.zeros(T, T).masked_fill(torch.ones(T, T).triu(1).bool(), -math.inf),
          "expected torch.bool", "mask == 0")


def rms_norm(x, weight, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def test_rms_norm(capsys):
    passes(ex.check_rms_norm, rms_norm, capsys, 4)
    fails(ex.check_rms_norm, lambda x, w, eps=1e-6: F.layer_norm(x, x.shape[-1:], w, None, eps), "LayerNorm")
    fails(ex.check_rms_norm, lambda x, w, eps=1e-6: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w,
          "tiny inputs", "outside the square root")


def rope(x, base=10000.0):
    T, d = x.shape[-2:]
    inv = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def test_rope(capsys):
    passes(ex.check_rope, rope, capsys, 4)

    def adjacent(x, base=10000.0):
        y = rope(torch.cat([x[..., 0::2], x[..., 1::2]], -1), base)
        d = x.shape[-1]
        return torch.stack([y[..., : d // 2], y[..., d // 2:]], -1).flatten(-2)
    fails(ex.check_rope, adjacent, "adjacent pairs")
    fails(ex.check_rope, lambda x, base=10000.0: rope(torch.cat([x[..., :1, :], x], -2), base)[..., 1:, :],
          "starting at 1")


# ------------------------------------------------------------------ counting and sampling
def bigram(text, k=1.0):
    vocab = sorted(set(text))
    idx = {c: i for i, c in enumerate(vocab)}
    counts = torch.zeros(len(vocab), len(vocab), dtype=torch.float64)
    for a, b in zip(text, text[1:]):
        counts[idx[a], idx[b]] += 1
    return (counts + k) / (counts + k).sum(1, keepdim=True)


def test_bigram_model(capsys):
    passes(ex.check_bigram_model, bigram, capsys, 4)
    fails(ex.check_bigram_model, lambda t, k=1.0: bigram(t, k).T, "sums to", "transposed")
    fails(ex.check_bigram_model, lambda t, k=1.0: bigram(t, 1.0), "k=0.1", "max abs difference")


def mlm(ids, vocab_size, mask_id, special_ids, p=0.15, mask_share=0.8):
    special = torch.isin(ids, torch.tensor(special_ids))
    selected = (torch.rand(ids.shape) < p) & ~special
    labels = torch.where(selected, ids, -100)
    out = ids.clone()
    u = torch.rand(ids.shape)
    out[selected & (u < mask_share)] = mask_id
    rnd = selected & (u >= mask_share) & (u < mask_share + (1 - mask_share) / 2)
    out[rnd] = torch.randint(len(special_ids), vocab_size, ids.shape)[rnd]  # specials are 0..3
    return out, labels


def test_mlm_corruption(capsys):
    passes(ex.check_mlm_corruption, mlm, capsys, 3)
    fails(ex.check_mlm_corruption, lambda *a: mlm(*a, mask_share=1.0), "100.0% became [MASK]", "about 80%")
    fails(ex.check_mlm_corruption, lambda ids, V, m, s, p=0.15: mlm(ids, V, m, s, 0.5),
          "selected 49", "expected about 15%", "mask_tokens on the same input")

    def labels_everywhere(*a):
        out, labels = mlm(*a)
        return out, a[0].clone()
    fails(ex.check_mlm_corruption, labels_everywhere, "special token")

    def in_place(ids, *a):
        out, labels = mlm(ids, *a)
        ids[labels != -100] = 3
        return ids, labels
    fails(ex.check_mlm_corruption, in_place, "in place")


def top_k(logits, k):
    kth = logits.topk(k, -1).values[..., -1:]
    return logits.masked_fill(logits < kth, -math.inf)


def top_p(logits, p):
    srt, order = logits.sort(-1, descending=True)
    probs = srt.softmax(-1)
    drop = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(drop.scatter(-1, order, drop), -math.inf)


def test_top_k_filter(capsys):
    passes(ex.check_top_k_filter, top_k, capsys, 5)
    fails(ex.check_top_k_filter, lambda x, k: top_k(x, min(k + 1, x.shape[-1])), "row 0 keeps 4 logits, expected 3")
    fails(ex.check_top_k_filter, lambda x, k: top_k(x, k).nan_to_num(neginf=0.0), "keeps 10 logits")
    fails(ex.check_top_k_filter, lambda x, k: top_k(x, k).softmax(-1).log(), "must stay unchanged")


def test_top_p_filter(capsys):
    passes(ex.check_top_p_filter, top_p, capsys, 5)
    # a common slip: drop a token once the mass INCLUDING it reaches p (drops the token that crosses p)
    def greedy_cut(x, p):
        srt, order = x.sort(-1, descending=True)
        drop = srt.softmax(-1).cumsum(-1) >= p
        drop[..., 0] = False
        return x.masked_fill(drop.scatter(-1, order, drop), -math.inf)
    fails(ex.check_top_p_filter, greedy_cut, "keeps", "expected")


# ------------------------------------------------------------------ tuning
class LoRALinear(nn.Module):
    def __init__(self, base, r, alpha, scale=True):
        super().__init__()
        self.base, self.scaling = base, (alpha / r if scale else 1.0)
        base.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        return self.base(x) + self.scaling * self.lora_B(self.lora_A(x))


def test_lora_layer(capsys):
    passes(ex.check_lora_layer, LoRALinear, capsys, 3)
    fails(ex.check_lora_layer, lambda b, r, a: LoRALinear(b, r, a, scale=False), "without the alpha/r = 2 scale")

    class Unfrozen(LoRALinear):
        def __init__(self, base, r, alpha):
            super().__init__(base, r, alpha)
            base.requires_grad_(True)
    fails(ex.check_lora_layer, Unfrozen, "trainable parameters, expected r (d_in + d_out) = 112")

    class RandomB(LoRALinear):
        def __init__(self, base, r, alpha):
            super().__init__(base, r, alpha)
            nn.init.normal_(self.lora_B.weight)
    fails(ex.check_lora_layer, RandomB, "initialise lora_B to zeros")


def sft_loss(logits, ids, answer):
    labels = ids.masked_fill(~answer, -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)


def test_sft_loss(capsys):
    passes(ex.check_sft_loss, sft_loss, capsys, 3)
    fails(ex.check_sft_loss, lambda lg, ids, a: sft_loss(lg, ids, torch.ones_like(a)), "prompt is not masked")
    fails(ex.check_sft_loss, lambda lg, ids, a: F.cross_entropy(lg.flatten(0, 1), ids.masked_fill(~a, -100).flatten()),
          "without the shift")


def dpo_loss(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def test_dpo_loss(capsys):
    passes(ex.check_dpo_loss, dpo_loss, capsys, 4)
    fails(ex.check_dpo_loss, lambda pc, pr, rc, rr, b: dpo_loss(pr, pc, rr, rc, b), "sign is flipped")
    fails(ex.check_dpo_loss, lambda pc, pr, rc, rr, b: dpo_loss(pc, pr, 0 * rc, 0 * rr, b), "without the reference")
    fails(ex.check_dpo_loss, lambda pc, pr, rc, rr, b: -torch.log(torch.sigmoid(b * ((pc - rc) - (pr - rr)))).mean(),
          "large margins", "inf")


def kv_bytes(*, n_layer, n_kv_heads, head_dim, seq_len, batch_size, dtype):
    return 2 * n_layer * n_kv_heads * head_dim * seq_len * batch_size * torch.finfo(dtype).bits // 8


def test_kv_cache_memory(capsys):
    passes(ex.check_kv_cache_memory, kv_bytes, capsys, 3)
    fails(ex.check_kv_cache_memory, lambda **c: kv_bytes(**c) // 2, "expected 75,497,472 bytes", "keys AND values")
    fails(ex.check_kv_cache_memory, lambda **c: kv_bytes(**{**c, "dtype": torch.float32}), "bfloat16", "4 bytes")


def test_checkers_leave_the_global_rng_alone(capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ex.check_mlm_corruption(mlm)
    assert torch.equal(torch.rand(3), expected)


def test_public_api():
    assert sorted(ex.__all__) == sorted(n for n in dir(ex) if n.startswith("check_"))
    assert all(getattr(ex, n).__doc__ for n in ex.__all__)
