"""lmbook.attention: the spelled-out formula, torch's fused kernel and torch.nn.MultiheadAttention
agree; masks do what they say; sinusoidal positions have the properties the chapter uses; and bad
input is refused with a message that says what is wrong."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lmbook.attention import (
    MultiHeadAttention,
    SinusoidalPositions,
    attention_weights,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positions,
)

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-12, rtol=1e-10),
       torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def qkv(B=2, H=3, T=5, S=None, d=8, d_v=None, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = T if S is None else S
    d_v = d if d_v is None else d_v
    q = torch.randn(B, H, T, d, generator=g, dtype=torch.float64).to(dtype)
    k = torch.randn(B, H, S, d, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(B, H, S, d_v, generator=g, dtype=torch.float64).to(dtype)
    return q, k, v


def lengths_mask(lengths, S):
    """(B, S) 1/0 attention mask: the first lengths[b] positions are real tokens."""
    return (torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]).long()


# ---------------------------------------------------------------------------------------------
# the two paths agree with each other and with torch
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 1, 4), (2, 3, 5, 8), (3, 2, 17, 16)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_spelled_out_equals_fast_and_torch(dtype, shape, is_causal):
    B, H, T, d = shape
    q, k, v = qkv(B, H, T, d=d, dtype=dtype)
    slow = scaled_dot_product_attention(q, k, v, is_causal=is_causal, fast=False)
    fast = scaled_dot_product_attention(q, k, v, is_causal=is_causal, fast=True)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    assert slow.shape == fast.shape == (B, H, T, d) and slow.dtype == dtype
    torch.testing.assert_close(slow, fast, **TOL[dtype])
    torch.testing.assert_close(fast, ref, **TOL[dtype])


def test_formula_written_out_in_float64():
    q, k, v = qkv(1, 1, 4, d=6, dtype=torch.float64)
    scores = q @ k.transpose(-2, -1) / math.sqrt(6)
    expected = torch.softmax(scores, dim=-1) @ v
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, fast=False), expected)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, fast=True), expected)


@pytest.mark.parametrize("is_causal", [False, True])
def test_padding_mask_both_paths_and_torch(is_causal):
    B, H, T = 3, 2, 6
    q, k, v = qkv(B, H, T, d=4)
    mask = padding_mask(lengths_mask([6, 4, 1], T))  # (B, 1, 1, T)
    slow = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal, fast=False)
    fast = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal, fast=True)
    full = mask & causal_mask(T) if is_causal else mask
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=full)
    torch.testing.assert_close(slow, fast)
    torch.testing.assert_close(fast, ref)


def test_mask_and_is_causal_combine_as_and():
    q, k, v = qkv(2, 2, 5, d=4)
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(2, 1, 5, 5, generator=g) > 0.3
    mask[..., 0] = True  # every query may see key 0, so no row is fully blocked
    w = attention_weights(q, k, mask, is_causal=True)
    allowed = mask & causal_mask(5)
    assert torch.all(w[~allowed.expand_as(w)] == 0)
    both = scaled_dot_product_attention(q, k, v, mask, is_causal=True, fast=True)
    torch.testing.assert_close(both, scaled_dot_product_attention(q, k, v, allowed, fast=False))
    torch.testing.assert_close(both, F.scaled_dot_product_attention(q, k, v, attn_mask=allowed))


def test_cross_attention_T_differs_from_S_and_d_v_from_d_k():
    q, k, v = qkv(2, 3, T=4, S=7, d=8, d_v=5)
    kv_mask = padding_mask(lengths_mask([7, 3], 7))
    for mask in (None, kv_mask):
        slow = scaled_dot_product_attention(q, k, v, mask, fast=False)
        fast = scaled_dot_product_attention(q, k, v, mask, fast=True)
        assert slow.shape == (2, 3, 4, 5)
        torch.testing.assert_close(slow, fast)
        torch.testing.assert_close(fast, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_causal_mask_with_more_keys_than_queries_sees_the_past():
    m = causal_mask(2, 5)  # the last 2 of 5 positions
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    q, k, v = qkv(1, 1, T=2, S=5, d=4)
    torch.testing.assert_close(
        scaled_dot_product_attention(q, k, v, is_causal=True, fast=False),
        scaled_dot_product_attention(q, k, v, m, fast=True))


def test_query_with_every_key_blocked_is_nan_spelled_out_and_zero_fused():
    # causal + left padding: queries 0 and 1 may see no key at all (documented in the docstring)
    mask = causal_mask(4) & padding_mask(torch.tensor([[0, 0, 1, 1]]))
    q, k, v = qkv(1, 2, T=4, d=8)
    spelled = scaled_dot_product_attention(q, k, v, mask, fast=False)
    fused = scaled_dot_product_attention(q, k, v, mask, fast=True)
    assert spelled[..., :2, :].isnan().all() and not spelled[..., 2:, :].isnan().any()
    assert (fused[..., :2, :] == 0).all()
    torch.testing.assert_close(spelled[..., 2:, :], fused[..., 2:, :], **TOL[torch.float32])


# ---------------------------------------------------------------------------------------------
# what the weights look like
def test_weights_rows_sum_to_one_and_are_nonnegative():
    q, k, _ = qkv(2, 3, T=4, S=6, d=8)
    w = attention_weights(q, k)
    assert w.shape == (2, 3, 4, 6) and torch.all(w >= 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 4))


def test_causal_weights_are_zero_above_the_diagonal():
    q, k, _ = qkv(2, 2, T=6, d=4)
    w = attention_weights(q, k, is_causal=True)
    upper = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert torch.all(w[..., upper] == 0)
    assert torch.all(w[..., ~upper] > 0)
    torch.testing.assert_close(w[..., 0, 0], torch.ones(2, 2))  # token 0 can only see itself
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def test_padding_keys_get_zero_weight():
    am = lengths_mask([5, 2], 5)
    m = padding_mask(am)
    assert m.shape == (2, 1, 1, 5) and m.dtype == torch.bool
    q, k, _ = qkv(2, 4, T=5, d=8)
    w = attention_weights(q, k, m)
    assert torch.all(w[1, :, :, 2:] == 0)
    torch.testing.assert_close(w[1, :, :, :2].sum(-1), torch.ones(4, 5))
    assert torch.all(w[0] > 0)


# ---------------------------------------------------------------------------------------------
# multi-head attention
def copy_to_torch(mha: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    """Written out here rather than with mha.to_torch(), which is tested against this."""
    ref = torch.nn.MultiheadAttention(mha.d_model, mha.n_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([mha.q_proj.weight, mha.k_proj.weight, mha.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([mha.q_proj.bias, mha.k_proj.bias, mha.v_proj.bias]))
        ref.out_proj.weight.copy_(mha.out_proj.weight)
        ref.out_proj.bias.copy_(mha.out_proj.bias)
    return ref.eval()


@pytest.mark.parametrize("bias", [True, False])
def test_to_torch_copies_the_weights(bias):
    torch.manual_seed(3)
    mha = MultiHeadAttention(d_model=8, n_heads=2, bias=bias).eval()
    ref = mha.to_torch()
    assert isinstance(ref, torch.nn.MultiheadAttention) and ref.batch_first and not ref.training
    if bias:
        for a, b in zip(ref.state_dict().values(), copy_to_torch(mha).state_dict().values()):
            torch.testing.assert_close(a, b)
    x, mem = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    with torch.no_grad():
        torch.testing.assert_close(ref(x, mem, mem, need_weights=False)[0], mha(x, context=mem))


def test_multihead_equals_torch_multiheadattention():
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=16, n_heads=4).eval()
    ref = copy_to_torch(mha)
    x = torch.randn(2, 5, 16)
    am = lengths_mask([5, 3], 5)
    with torch.no_grad():
        # self-attention, no mask
        y_ref, w_ref = ref(x, x, x, average_attn_weights=False)
        y, w = mha(x, need_weights=True)
        torch.testing.assert_close(mha(x), y_ref)
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(w, w_ref)
        # causal: torch's bool attn_mask means the opposite (True = blocked)
        y_ref, _ = ref(x, x, x, attn_mask=~causal_mask(5), need_weights=False)
        torch.testing.assert_close(mha(x, is_causal=True), y_ref)
        # padding: key_padding_mask True = padding
        y_ref, _ = ref(x, x, x, key_padding_mask=~am.bool(), need_weights=False)
        torch.testing.assert_close(mha(x, mask=padding_mask(am)), y_ref)
        # cross-attention, T != S
        mem = torch.randn(2, 7, 16)
        y_ref, _ = ref(x, mem, mem, need_weights=False)
        torch.testing.assert_close(mha(x, context=mem), y_ref)


@pytest.mark.parametrize("is_causal", [False, True])
def test_multihead_need_weights_path_equals_fast_and_spelled_out_paths(is_causal):
    torch.manual_seed(1)
    mha = MultiHeadAttention(d_model=12, n_heads=3).eval()
    x = torch.randn(3, 6, 12)
    mask = padding_mask(lengths_mask([6, 5, 2], 6))
    with torch.no_grad():
        fast = mha(x, mask=mask, is_causal=is_causal)
        y, w = mha(x, mask=mask, is_causal=is_causal, need_weights=True)
        mha.fast = False
        slow = mha(x, mask=mask, is_causal=is_causal)
    assert w.shape == (3, 3, 6, 6)
    torch.testing.assert_close(y, fast)
    torch.testing.assert_close(slow, fast)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 3, 6))


def test_multihead_has_the_parameters_of_one_big_head():
    mha = MultiHeadAttention(d_model=32, n_heads=4)
    assert mha.d_k == 8
    assert sum(p.numel() for p in mha.parameters()) == 4 * (32 * 32 + 32)
    one = MultiHeadAttention(d_model=32, n_heads=1)
    assert sum(p.numel() for p in one.parameters()) == sum(p.numel() for p in mha.parameters())


def test_multihead_split_heads_shape():
    mha = MultiHeadAttention(d_model=12, n_heads=3)
    x = torch.arange(2 * 5 * 12, dtype=torch.float32).view(2, 5, 12)
    h = mha.split_heads(x)
    assert h.shape == (2, 3, 5, 4)
    torch.testing.assert_close(h[:, 1], x[..., 4:8])  # head 1 holds features 4..7


def test_self_attention_is_permutation_equivariant():
    torch.manual_seed(2)
    mha = MultiHeadAttention(d_model=8, n_heads=2).eval()
    x = torch.randn(1, 6, 8)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        torch.testing.assert_close(mha(x[:, perm]), mha(x)[:, perm])


# ---------------------------------------------------------------------------------------------
# sinusoidal positions
def test_sinusoidal_values_at_known_positions():
    pe = sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16)
    torch.testing.assert_close(pe[0, 0::2], torch.zeros(8))  # sin 0
    torch.testing.assert_close(pe[0, 1::2], torch.ones(8))   # cos 0
    torch.testing.assert_close(pe[1, 0], torch.tensor(math.sin(1.0)))  # i = 0: wavelength 2 pi
    torch.testing.assert_close(pe[1, 1], torch.tensor(math.cos(1.0)))
    i, pos = 3, 7  # PE(pos, 2i) = sin(pos / 10000^(2i/d))
    torch.testing.assert_close(pe[pos, 2 * i], torch.tensor(math.sin(pos / 10000 ** (2 * i / 16))))
    torch.testing.assert_close(pe[pos, 2 * i + 1], torch.tensor(math.cos(pos / 10000 ** (2 * i / 16))))
    assert pe.abs().max() <= 1.0


def test_sinusoidal_shift_is_a_fixed_rotation():
    """PE(p + k) = R_k PE(p) with R_k block-diagonal 2x2 rotations that do not depend on p."""
    d, k = 16, 5
    pe = sinusoidal_positions(64, d).double()
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float64) / d)
    R = torch.zeros(d, d, dtype=torch.float64)
    for j, w in enumerate(inv_freq):
        c, s = math.cos(k * w), math.sin(k * w)
        # (sin(a + b), cos(a + b)) = [[cos b, sin b], [-sin b, cos b]] (sin a, cos a)
        R[2 * j:2 * j + 2, 2 * j:2 * j + 2] = torch.tensor([[c, s], [-s, c]])
    torch.testing.assert_close(pe[k:] , pe[:-k] @ R.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(R @ R.T, torch.eye(d, dtype=torch.float64))
    # and so the dot product depends on the offset only
    dots = pe @ pe.T
    torch.testing.assert_close(dots[10, 10 + k], dots[40, 40 + k], atol=1e-4, rtol=0)


def test_sinusoidal_module_adds_positions():
    m = SinusoidalPositions(8, max_len=10)
    x = torch.zeros(2, 6, 8)
    torch.testing.assert_close(m(x), sinusoidal_positions(6, 8).expand(2, 6, 8))


# ---------------------------------------------------------------------------------------------
# bad input: errors that say what is wrong
def test_mismatched_q_k_last_dims():
    with pytest.raises(ValueError, match=r"same last dimension d_k: q has 8, k has 6"):
        scaled_dot_product_attention(torch.randn(2, 3, 8), torch.randn(2, 3, 6), torch.randn(2, 3, 8))


def test_k_v_lengths_differ():
    with pytest.raises(ValueError, match=r"same number of positions: k has 3, v has 4"):
        scaled_dot_product_attention(torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.randn(2, 4, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8])
@pytest.mark.parametrize("fast", [True, False])
def test_non_bool_mask_is_a_type_error_that_mentions_bool(dtype, fast):
    q, k, v = qkv(1, 1, 3, d=4)
    with pytest.raises(TypeError, match=r"mask must be a bool tensor.*mask\.bool\(\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 3, dtype=dtype), fast=fast)
    with pytest.raises(TypeError, match="bool"):
        MultiHeadAttention(4, 2)(torch.randn(1, 3, 4), mask=torch.ones(3, 3, dtype=dtype))


def test_mask_that_does_not_broadcast():
    q, k, v = qkv(2, 2, T=3, S=4, d=4)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 3\) does not broadcast.*\(2, 2, 3, 4\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        attention_weights(q, k, torch.ones(5, 1, 1, 4, dtype=torch.bool))


def test_d_model_not_divisible_by_heads():
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by n_heads \(4\)"):
        MultiHeadAttention(10, 4)


def test_x_of_wrong_last_dim_or_rank():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, seq_len, 8\), got \(2, 3, 6\)"):
        mha(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, seq_len, 8\), got \(3, 8\)"):
        mha(torch.randn(3, 8))


def test_padding_mask_of_wrong_rank():
    with pytest.raises(ValueError, match=r"expects \(batch, seq_len\).*got shape \(5,\)"):
        padding_mask(torch.ones(5))
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 5\)"):
        padding_mask(torch.ones(2, 1, 5))


def test_odd_d_model_for_sinusoids():
    with pytest.raises(ValueError, match=r"d_model must be even.*got 7"):
        sinusoidal_positions(10, 7)
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositions(5)


def test_sequence_longer_than_max_len():
    m = SinusoidalPositions(8, max_len=4)
    m(torch.zeros(1, 4, 8))  # exactly max_len is fine
    with pytest.raises(ValueError, match=r"sequence of 5 positions is longer than max_len=4"):
        m(torch.zeros(1, 5, 8))


def test_sinusoidal_module_checks_feature_size():
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, seq_len, 8\), got \(1, 3, 6\)"):
        SinusoidalPositions(8)(torch.zeros(1, 3, 6))
