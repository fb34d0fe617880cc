"""lmbook.models.Llama: shapes, masks, rotary, grouped-query attention, the KV cache, conversion
to and from transformers' LlamaForCausalLM, and the packaged SmolLM2-135M-Instruct's weights
giving transformers' logits and greedy tokens."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmbook.generate import KVCache, generate
from lmbook.models import Llama, LlamaConfig, llama_from_hf, llama_to_hf, set_fast_attention
from lmbook.models.llama import RotaryEmbedding, apply_rotary, repeat_kv


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=24, rope_theta=500.0)
    return Llama(LlamaConfig(**{**cfg, **kw})).eval()


def left_padded(rows, pad=0):
    """Prompts of different lengths -> (ids, mask), (B, T) each, padded on the left."""
    T = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


# --------------------------------------------------------------------------------------------
# the model on its own (small random configurations)
def test_shapes_loss_and_last_only():
    model = tiny()
    x = torch.randint(0, 50, (3, 7))
    y = torch.randint(0, 50, (3, 7))
    y[0, :3] = -100
    out = model(x, labels=y)
    assert out.logits.shape == (3, 7, 50)
    expected = F.cross_entropy(out.logits.reshape(-1, 50), y.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    last = model(x, last_only=True).logits
    assert last.shape == (3, 1, 50)
    torch.testing.assert_close(last, out.logits[:, -1:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="last_only=False"):
        model(x, labels=y, last_only=True)


def test_causal_and_tied_head_option():
    model = tiny()
    x = torch.randint(0, 50, (1, 8))
    z = x.clone()
    z[0, 5:] = (z[0, 5:] + 1) % 50  # change the future only
    torch.testing.assert_close(model(x).logits[:, :5], model(z).logits[:, :5])
    assert not torch.allclose(model(x).logits[:, 5:], model(z).logits[:, 5:])
    assert model.lm_head.weight is model.model.embed_tokens.weight
    untied = tiny(tie_word_embeddings=False)
    assert untied.lm_head.weight is not untied.model.embed_tokens.weight
    assert untied.num_parameters() == model.num_parameters() + 50 * 32


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=3)
    with pytest.raises(ValueError, match="even head size"):
        LlamaConfig(hidden_size=12, num_attention_heads=4, num_key_value_heads=2)
    model = tiny()
    with pytest.raises(ValueError, match="max_position_embeddings=24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    cache = KVCache(8)
    model(torch.zeros(1, 20, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="the cache holds 20 positions"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_rotary_scores_depend_on_relative_position_only():
    rot = RotaryEmbedding(head_dim=8, max_pos=64, theta=10000.0)
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m, n):
        cm, sm = rot(torch.tensor([[m]]))
        cn, sn = rot(torch.tensor([[n]]))
        return (apply_rotary(q, cm, sm) * apply_rotary(k, cn, sn)).sum()

    torch.testing.assert_close(score(3, 1), score(40, 38))
    torch.testing.assert_close(score(10, 10), (q * k).sum())  # same position: the plain dot product
    assert not torch.allclose(score(3, 1), score(3, 2))
    v = torch.randn(1, 2, 5, 8)  # a rotation keeps the length
    c, s = rot(torch.arange(5)[None])
    torch.testing.assert_close(apply_rotary(v, c, s).norm(dim=-1), v.norm(dim=-1))


def test_grouped_query_attention_equals_multi_head_with_repeated_keys_and_values():
    gqa = tiny(num_key_value_heads=2)  # 4 query heads, 2 key/value heads
    mha = tiny(num_key_value_heads=4)
    state = dict(gqa.state_dict())
    d = 32 // 4
    for name, w in gqa.state_dict().items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):  # (Hkv*d, C): each head's rows twice
            state[name] = w.view(2, d, 32).repeat_interleave(2, dim=0).reshape(4 * d, 32)
    mha.load_state_dict(state)
    x = torch.randint(0, 50, (2, 9))
    torch.testing.assert_close(gqa(x).logits, mha(x).logits, atol=1e-5, rtol=1e-5)
    kv = torch.randn(1, 2, 3, 4)
    assert torch.equal(repeat_kv(kv, 2), kv.repeat_interleave(2, dim=1))


def test_left_padding_gives_each_prompt_its_own_logits():
    model = tiny()
    rows = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15]]
    ids, mask = left_padded(rows)
    for fast in (True, False):  # torch's kernel and the spelled-out formula
        set_fast_attention(model, fast)
        batch = model(ids, attention_mask=mask).logits
        assert torch.isfinite(batch).all()  # padding rows attend to themselves: no 0/0
        for b, r in enumerate(rows):
            alone = model(torch.tensor([r])).logits[0]
            torch.testing.assert_close(batch[b, -len(r):], alone, atol=1e-5, rtol=1e-5)


def test_cache_gives_the_logits_of_the_whole_sequence():
    model = tiny()
    x = torch.randint(0, 50, (2, 12))
    full = model(x).logits
    cache = KVCache(4)  # smaller than needed: it grows
    parts = [model(x[:, :5], cache=cache).logits]
    parts += [model(x[:, t:t + 1], cache=cache).logits for t in range(5, 9)]
    parts.append(model(x[:, 9:], cache=cache).logits)  # several new tokens after a cache
    assert cache.length == 12 and cache.keys[0].shape == (2, 2, 20, 8)  # (B, Hkv, 5 doubled twice, d)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cache_with_left_padding_one_token_at_a_time_gives_the_batch_logits():
    model = tiny()
    ids, mask = left_padded([[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18]])
    for fast in (True, False):  # a single new query takes the grouped path without copying K, V
        set_fast_attention(model, fast)
        full = model(ids, attention_mask=mask).logits
        cache = KVCache(8)
        steps = [model(ids[:, :4], attention_mask=mask[:, :4], cache=cache).logits]
        steps += [model(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], cache=cache).logits for t in range(4, 7)]
        real = mask.bool()
        torch.testing.assert_close(torch.cat(steps, 1)[real], full[real], atol=1e-5, rtol=1e-5)


def test_small_model_converts_to_transformers_and_back():
    transformers = pytest.importorskip("transformers")
    for tie in (True, False):
        model = tiny(tie_word_embeddings=tie)
        hf = llama_to_hf(model)
        assert isinstance(hf, transformers.LlamaForCausalLM)
        ids, mask = left_padded([[1, 2, 3, 4, 5], [6, 7]])
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            theirs = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        ours = model(ids, attention_mask=mask).logits
        real = mask.bool()
        torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)
        back = llama_from_hf(hf)
        assert back.config == model.config
        assert (back.lm_head.weight is back.model.embed_tokens.weight) == tie
        for name, t in model.state_dict().items():
            assert torch.equal(back.state_dict()[name], t), name
    with pytest.raises(TypeError, match="LlamaForCausalLM"):
        llama_from_hf(transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2)))


# --------------------------------------------------------------------------------------------
# the packaged SmolLM2-135M-Instruct
@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("transformers")
    from lmbook.pretrained import load_llm

    torch.manual_seed(0)
    tok, hf = load_llm(verbose=False)
    return tok, hf, llama_from_hf(hf)


@pytest.mark.slow
def test_smollm2_weights_give_transformers_logits_on_a_left_padded_batch(smollm2):
    tok, hf, ours = smollm2
    texts = ["The capital of France is", "Hello", "def fibonacci(n):\n    return"]
    batch = tok(texts, return_tensors="pt", padding=True, padding_side="left")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (mask == 0).any()  # the batch does have padding
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # what transformers' generate passes
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        mine = ours(ids, attention_mask=mask).logits
    real = mask.bool()
    assert (mine[real] - theirs[real]).abs().max().item() <= 1e-4
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters())


@pytest.mark.slow
def test_smollm2_greedy_tokens_match_transformers_generate_with_and_without_cache(smollm2):
    tok, hf, ours = smollm2
    chat = [{"role": "user", "content": "Write a short poem about the sea."}]
    text = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        theirs = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=50, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    assert theirs.shape[1] == ids.shape[1] + 50  # no early end: 50 steps are compared
    cached = generate(ours, ids, 50, greedy=True)
    assert torch.equal(cached, theirs)
    # without the cache each step reads the whole context again: 25 steps keep the test short
    assert torch.equal(generate(ours, ids, 25, greedy=True, use_cache=False), theirs[:, :ids.shape[1] + 25])


@pytest.mark.slow
def test_smollm2_round_trip_to_transformers_gives_the_same_state_dict(smollm2):
    _, hf, ours = smollm2
    back = llama_to_hf(ours)
    a, b = hf.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert back.config.rope_parameters["rope_theta"] == hf.config.rope_parameters["rope_theta"]
