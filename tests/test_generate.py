"""lmbook.generate: filtering, sampling, greedy decoding."""
from __future__ import annotations

import pytest
import torch

from lmbook.generate import (KVCache, decoding_mask, decoding_positions, generate, greedy_decode, top_k_filter,
                             top_p_filter)
from lmbook.models import GPT, GPTConfig


class FixedLM(torch.nn.Module):
    """A causal LM stand-in whose next-token distribution is always ``probs``."""

    def __init__(self, probs, block_size=None):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(probs).log())
        self.config = type("Config", (), {"block_size": block_size})()
        self.seen_lengths = []

    def forward(self, input_ids):
        self.seen_lengths.append(input_ids.shape[1])
        B, T = input_ids.shape
        return type("Out", (), {"logits": self.logits.expand(B, T, -1)})()


def tiny_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=16))


# --------------------------------------------------------------------------------------------
# filters
def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = top_k_filter(logits, 2)
    assert torch.equal(torch.isfinite(out), torch.tensor([[False, True, False, True, False]]))
    assert torch.equal(out[torch.isfinite(out)], torch.tensor([5.0, 4.0]))
    assert torch.equal(top_k_filter(logits, 10), logits)


def test_top_p_keeps_the_smallest_set_with_enough_mass():
    probs = torch.tensor([0.1, 0.4, 0.2, 0.3])  # sorted: 0.4, 0.3, 0.2, 0.1
    logits = probs.log()[None]
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()  # noqa: E731
    assert kept(0.3) == [False, True, False, False]   # 0.4 >= 0.3 already
    assert kept(0.4) == [False, True, False, False]   # exactly enough
    assert kept(0.5) == [False, True, False, True]    # 0.4 + 0.3 = 0.7 >= 0.5
    assert kept(0.75) == [False, True, True, True]    # 0.4 + 0.3 + 0.2 = 0.9
    assert kept(0.95) == [True, True, True, True]
    assert kept(1.0) == [True, True, True, True]
    assert kept(1e-6) == [False, True, False, False]  # the most probable token always stays
    # the kept tokens' renormalised probabilities are the original ones rescaled
    renorm = top_p_filter(logits, 0.5).softmax(-1)[0]
    torch.testing.assert_close(renorm, torch.tensor([0.0, 0.4 / 0.7, 0.0, 0.3 / 0.7]))


def test_filters_reject_bad_arguments():
    logits = torch.zeros(1, 4)
    for p in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
            top_p_filter(logits, p)
    for k in (0, -1, 1.5):
        with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
            top_k_filter(logits, k)


# --------------------------------------------------------------------------------------------
# generate
def test_generate_shape_reproducibility_and_training_mode_restored():
    model = tiny_gpt().train()
    start = torch.tensor([[1, 2, 3], [4, 5, 6]])
    a = generate(model, start, 10, seed=123, top_k=10)
    b = generate(model, start, 10, seed=123, top_k=10)
    c = generate(model, start, 10, seed=124, top_k=10)
    assert a.shape == (2, 13) and a.dtype == torch.long
    assert torch.equal(a[:, :3], start)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training
    assert torch.is_grad_enabled()  # grad mode untouched outside generate
    model(a[:, -9:-1], labels=a[:, -8:]).loss.backward()  # generated ids can feed a training step


def test_generate_seed_does_not_touch_the_global_rng():
    model = tiny_gpt()
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    generate(model, torch.tensor([[1]]), 5, seed=0)
    assert torch.equal(torch.rand(1), expected)


def test_greedy_is_argmax_and_crops_to_block_size():
    model = tiny_gpt().eval()
    start = torch.tensor([[7, 8, 9]])
    out = generate(model, start, 12, greedy=True)  # 15 tokens > block_size=8: context is cropped
    assert out.shape == (1, 15)
    ids = start
    for _ in range(12):
        nxt = model(ids[:, -8:]).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
    assert torch.equal(out, ids)
    fixed = FixedLM([0.1, 0.2, 0.7], block_size=4)
    generate(fixed, torch.tensor([[0, 1]]), 6, seed=0)
    assert fixed.seen_lengths == [2, 3, 4, 4, 4, 4]


def test_sampling_follows_the_distribution_and_filters():
    fixed = FixedLM([0.1, 0.2, 0.3, 0.4])
    start = torch.zeros(2000, 1, dtype=torch.long)
    freq = lambda out: torch.bincount(out[:, 1], minlength=4).float() / out.shape[0]  # noqa: E731
    plain = freq(generate(fixed, start, 1, seed=0))
    torch.testing.assert_close(plain, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.04, rtol=0)
    assert set(generate(fixed, start, 1, seed=0, top_k=2)[:, 1].tolist()) == {2, 3}
    assert set(generate(fixed, start, 1, seed=0, top_p=0.6)[:, 1].tolist()) == {2, 3}
    cold = freq(generate(fixed, start, 1, seed=0, temperature=0.25))  # p^4, renormalised
    sharp = torch.tensor([0.1, 0.2, 0.3, 0.4]) ** 4
    torch.testing.assert_close(cold, sharp / sharp.sum(), atol=0.04, rtol=0)
    assert generate(fixed, start[:3], 4, greedy=True)[:, 1:].eq(3).all()


def test_generate_stops_at_eos_and_pads_finished_rows():
    fixed = FixedLM([0.05, 0.9, 0.05])  # token 1 is eos and very likely
    out = generate(fixed, torch.zeros(3, 2, dtype=torch.long), 50, seed=0, eos_id=1)
    assert out.shape[1] < 52
    for row in out[:, 2:]:
        first = int((row == 1).nonzero()[0])
        assert row[first:].eq(1).all()


def test_generate_works_with_transformers_gpt2():
    transformers = pytest.importorskip("transformers")
    from lmbook.models import to_hf

    model = tiny_gpt().eval()
    hf = to_hf(model)
    start = torch.tensor([[1, 2], [3, 4]])
    assert torch.equal(generate(hf, start, 9, greedy=True), generate(model, start, 9, greedy=True))
    assert torch.equal(generate(hf, start, 9, seed=3, top_p=0.9), generate(model, start, 9, seed=3, top_p=0.9))
    assert isinstance(hf, transformers.GPT2LMHeadModel)


def test_generate_argument_errors():
    model = tiny_gpt()
    x = torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        generate(model, x, 3, temperature=0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        generate(model, x, 3, top_p=0)
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        generate(model, x, 3, top_k=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, x, -1)
    with pytest.raises(ValueError, match=r"ids\[None\]"):
        generate(model, torch.tensor([1, 2]), 3)
    with pytest.raises(TypeError, match=r"got a list; e.g. torch.tensor\(\[tokenizer.encode"):
        generate(model, [[1, 2]], 3)
    with pytest.raises(ValueError, match="empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(TypeError, match="encode"):
        greedy_decode(model, x, 5, bos_id=1, eos_id=2)



# --------------------------------------------------------------------------------------------
# the KV cache
def tiny_llama():
    from lmbook.models import Llama, LlamaConfig

    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=30, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=12,
                             rope_theta=100.0))


def test_kv_cache_appends_in_place_and_grows():
    cache = KVCache(max_len=3)
    k1, v1 = torch.randn(2, 1, 2, 4), torch.randn(2, 1, 2, 4)
    assert cache.update(0, k1, v1)[0] is k1  # first call: the inputs themselves
    k2, v2 = torch.randn(2, 1, 1, 4), torch.randn(2, 1, 1, 4)
    k, v = cache.update(0, k2, v2)
    assert torch.equal(k, torch.cat([k1, k2], 2)) and torch.equal(v, torch.cat([v1, v2], 2))
    assert k.data_ptr() == cache.keys[0].data_ptr()  # a view of the buffer, no copy
    k3 = torch.randn(2, 1, 2, 4)
    k, _ = cache.update(0, k3, k3)  # 5 > 3 positions: the buffer grows
    assert torch.equal(k, torch.cat([k1, k2, k3], 2)) and cache.keys[0].shape[2] == 6
    assert cache.length == 5
    with pytest.raises(IndexError, match="in order"):
        cache.update(2, k1, v1)
    with pytest.raises(ValueError, match="max_len"):
        KVCache(0)


def test_decoding_mask_and_positions():
    assert decoding_mask(None, 4) == (None, True)  # a prompt: plain causal attention
    assert decoding_mask(None, 1, past=5) == (None, False)  # one new token sees every key
    m, causal = decoding_mask(None, 2, past=3)  # two new tokens after three cached ones
    assert not causal and m.tolist() == [[True] * 4 + [False], [True] * 5]
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    m, _ = decoding_mask(mask, 4)
    assert m.shape == (2, 1, 4, 4)
    assert m[0, 0].tolist() == [[True, False, False, False], [False, True, False, False],  # padding: itself
                                [False, False, True, False], [False, False, True, True]]
    assert torch.equal(m[1, 0], torch.ones(4, 4, dtype=torch.bool).tril())
    assert decoding_positions(mask, 4).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]
    assert decoding_positions(mask, 1, past=3).tolist() == [[1], [3]]
    assert decoding_positions(None, 2, past=3).tolist() == [[3, 4]]
    with pytest.raises(ValueError, match="cached"):
        decoding_mask(mask, 1, past=5)


@pytest.mark.parametrize("make", [tiny_gpt, tiny_llama])
def test_cache_gives_the_same_tokens_as_recomputing(make):
    model = make().eval()
    start = torch.tensor([[1, 2, 3], [4, 5, 6]])
    n = 15  # 18 tokens: past GPT's block_size=8 and the Llama's 12 positions, where the window slides
    for kw in (dict(greedy=True), dict(seed=3, temperature=0.9), dict(seed=4, top_k=5, top_p=0.9)):
        cached = generate(model, start, n, use_cache=True, **kw)
        assert torch.equal(cached, generate(model, start, n, use_cache=False, **kw)), kw
    with_eos = generate(model, start, n, seed=0, eos_id=7)
    assert torch.equal(with_eos, generate(model, start, n, seed=0, eos_id=7, use_cache=False))


def test_cache_reads_the_prompt_once_then_one_token_per_step():
    model = tiny_gpt().eval()
    calls = []
    forward = model.forward

    def spy(input_ids, **kw):
        out = forward(input_ids, **kw)
        calls.append((input_ids.shape[1], kw["cache"].length, out.logits.shape[1]))
        return out

    model.forward = spy
    generate(model, torch.tensor([[1, 2, 3]]), 4, greedy=True)
    # (tokens fed, positions in the cache after the call, positions whose logits were computed)
    assert calls == [(3, 3, 1), (1, 4, 1), (1, 5, 1), (1, 6, 1)]
    calls.clear()
    generate(model, torch.tensor([[1, 2, 3, 4, 5, 6]]), 5, greedy=True)  # block_size=8
    assert [c[:2] for c in calls] == [(6, 6), (1, 7), (1, 8), (8, 8), (8, 8)]  # full: the window slides


@pytest.mark.parametrize("make", [tiny_gpt, tiny_llama])
def test_batched_prompts_of_different_lengths_give_each_prompts_tokens(make):
    model = make().eval()
    rows = [[3, 4, 5, 6], [7], [8, 9]]
    ids = torch.tensor([[0] * (4 - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (4 - len(r)) + [1] * len(r) for r in rows])
    modes = [True, False] if make is tiny_llama else [True]  # GPT refuses left padding without a cache
    for use_cache in modes:
        batch = generate(model, ids, 6, attention_mask=mask, greedy=True, use_cache=use_cache)
        assert torch.equal(batch[:, :4], ids)
        for b, r in enumerate(rows):
            alone = generate(model, torch.tensor([r]), 6, greedy=True, use_cache=use_cache)
            assert torch.equal(batch[b, 4:], alone[0, len(r):]), (use_cache, b)
    assert torch.equal(batch, generate(model, ids, 6, attention_mask=mask.bool(), greedy=True))


def test_generate_context_and_cache_errors():
    model = tiny_gpt()  # block_size=8
    long = torch.ones(1, 9, dtype=torch.long)
    with pytest.raises(ValueError, match=r"more than the model's context \(block_size=8\).*use_cache=False"):
        generate(model, long, 2)
    assert generate(model, long, 2, use_cache=False).shape == (1, 11)  # cropped at every step
    with pytest.raises(ValueError, match="max_position_embeddings=12"):
        generate(tiny_llama(), torch.ones(1, 13, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="use_cache=False"):
        generate(FixedLM([0.5, 0.5]), torch.tensor([[0]]), 2, use_cache=True)
    x = torch.tensor([[1, 2], [3, 0]])
    with pytest.raises(ValueError, match="on the left"):
        generate(model, x, 2, attention_mask=torch.tensor([[1, 1], [1, 0]]))
    with pytest.raises(ValueError, match="shape of input_ids"):
        generate(model, x, 2, attention_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="padding on the right"):  # GPT without a cache: no left padding
        generate(model, x, 2, attention_mask=torch.tensor([[1, 1], [0, 1]]), use_cache=False)


def test_greedy_decode_moves_the_source_mask_to_the_model_device():
    class Recorder(torch.nn.Module):  # an encoder-decoder stand-in whose weights live on 'meta'
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.empty(1, device="meta"))
            self.seen = {}

        def encode(self, src_ids, src_mask):
            self.seen = {"src_ids": src_ids.device, "src_mask": src_mask.device}
            raise RuntimeError("recorded")

        def decode(self, *args, **kwargs):
            raise AssertionError("not reached")

    model = Recorder()
    with pytest.raises(RuntimeError, match="recorded"):
        greedy_decode(model, torch.tensor([[3, 4, 0]]), 5, bos_id=1, eos_id=2,
                      src_mask=torch.tensor([[1, 1, 0]], dtype=torch.bool))
    assert model.seen == {"src_ids": torch.device("meta"), "src_mask": torch.device("meta")}
