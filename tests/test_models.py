"""lmbook.models: GPT, the BERT-style encoder and heads, the encoder-decoder Transformer."""
from __future__ import annotations

import math

import pytest
import torch

from lmbook.generate import greedy_decode
from lmbook.models import (GPT, BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel,
                           DecoderLayer, EncoderLayer, GPTConfig, Transformer, TransformerConfig,
                           set_fast_attention)


def tiny_gpt(**kw):
    cfg = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)
    cfg.update(kw)
    torch.manual_seed(0)
    return GPT(GPTConfig(**cfg))


def tiny_bert_config(**kw):
    cfg = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=24)
    cfg.update(kw)
    return BertConfig(**cfg)


def tiny_transformer(**kw):
    cfg = dict(src_vocab_size=20, tgt_vocab_size=22, d_model=32, n_heads=4, n_encoder_layers=2,
               n_decoder_layers=2, d_ff=64, dropout=0.0, max_len=16)
    cfg.update(kw)
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**cfg))


def ids(B, T, V, seed=1, low=0):
    return torch.randint(low, V, (B, T), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# GPT
def test_gpt_shapes_and_loss_at_init_is_log_vocab():
    model = tiny_gpt()
    x, y = ids(4, 16, 50), ids(4, 16, 50, seed=2)
    out = model(input_ids=x, labels=y)
    assert out.logits.shape == (4, 16, 50)
    assert out.loss.shape == ()
    assert abs(out.loss.item() - math.log(50)) < 0.1  # near-uniform predictions at init
    assert model(x).loss is None


def test_gpt_labels_minus_100_are_ignored():
    model = tiny_gpt()
    x, y = ids(2, 8, 50), ids(2, 8, 50, seed=2)
    y_masked = y.clone()
    y_masked[:, 4:] = -100
    loss = model(x, labels=y_masked).loss
    logits = model(x).logits
    expected = torch.nn.functional.cross_entropy(logits[:, :4].reshape(-1, 50), y[:, :4].reshape(-1))
    torch.testing.assert_close(loss, expected)


def test_gpt_weight_tying_and_parameter_count():
    model = tiny_gpt()
    assert model.lm_head.weight is model.transformer.wte.weight
    total = sum(p.numel() for p in model.parameters())  # parameters() lists the tied matrix once
    assert model.num_parameters() == total
    assert model.num_parameters(non_embedding=True) == total - 16 * 32  # minus wpe


def test_gpt_spelled_out_attention_equals_sdpa():
    model = tiny_gpt().eval()
    x = ids(3, 16, 50)
    fast = model(x).logits
    set_fast_attention(model, False)
    assert not model.transformer.h[0].attn.fast
    slow = model(x).logits
    torch.testing.assert_close(slow, fast, atol=1e-5, rtol=1e-5)


def test_gpt_is_causal():
    model = tiny_gpt().eval()
    x = ids(1, 12, 50)
    x2 = x.clone()
    x2[0, 7] = (x[0, 7] + 1) % 50
    a, b = model(x).logits, model(x2).logits
    torch.testing.assert_close(a[:, :7], b[:, :7])  # earlier positions do not see the change
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_gpt_right_padding_changes_nothing_and_left_padding_is_refused():
    model = tiny_gpt().eval()
    x = ids(2, 10, 50)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    torch.testing.assert_close(model(x, attention_mask=mask).logits, model(x).logits)
    left = mask.flip(1)
    with pytest.raises(ValueError, match="padding on the right"):
        model(x, attention_mask=left)


def test_gpt_memorises_a_short_sequence():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2, n_embd=32))
    seq = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3]])
    x, y = seq[:, :-1], seq[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss = model(input_ids=x, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert loss.item() < 0.05
    assert torch.equal(model(x).logits.argmax(-1), y)


def test_gpt_dropout_only_in_training_and_bias_false():
    model = tiny_gpt(dropout=0.5, bias=False)
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))
    x = ids(2, 8, 50)
    model.train()
    assert not torch.allclose(model(x).logits, model(x).logits)
    model.eval()
    torch.testing.assert_close(model(x).logits, model(x).logits)


def test_gpt_errors():
    model = tiny_gpt()
    with pytest.raises(ValueError, match=r"has 17 tokens but the model's context is block_size=16; "
                                         r"crop the input or raise block_size"):
        model(ids(1, 17, 50))
    with pytest.raises(ValueError, match=r"token id 50.*vocab_size=50"):
        model(torch.tensor([[1, 2, 50]]))
    with pytest.raises(ValueError, match=r"token id -3.*vocab_size=50"):
        model(torch.tensor([[1, -3, 4]]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 8\)"):
        model(ids(2, 8, 50), labels=ids(2, 7, 50))
    with pytest.raises(ValueError, match=r"labels contains 50, outside \[0, 50\) \(or -100 for no target\)"):
        model(ids(2, 8, 50), labels=torch.full((2, 8), 50))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.rand(2, 8))
    with pytest.raises(ValueError, match=r"add a batch dimension"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"n_embd \(30\) must be divisible by n_head \(4\)"):
        GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=4, n_embd=30)
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=1.5)


# --------------------------------------------------------------------------------------------
# BERT
def test_bert_shapes_pooler_and_hidden_states():
    torch.manual_seed(0)
    model = BertModel(tiny_bert_config()).eval()
    x = ids(3, 10, 60)
    out = model(input_ids=x, output_hidden_states=True, output_attentions=True)
    assert out.last_hidden_state.shape == (3, 10, 32)
    assert out.pooler_output.shape == (3, 32)
    torch.testing.assert_close(out.pooler_output,
                               torch.tanh(model.pooler.dense(out.last_hidden_state[:, 0])))
    assert len(out.hidden_states) == 3 and out.hidden_states[-1] is out.last_hidden_state
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 4, 10, 10)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(3, 4, 10))
    assert out.logits is None and out.loss is None
    assert BertModel(tiny_bert_config(), add_pooling_layer=False)(x).pooler_output is None


def test_bert_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = BertModel(tiny_bert_config()).eval()
    x = ids(1, 6, 60, low=1)
    padded = torch.cat([x, torch.zeros(1, 4, dtype=torch.long)], dim=1)  # 4 [PAD]s
    mask = torch.tensor([[1] * 6 + [0] * 4])
    alone = model(x, output_attentions=True)
    together = model(padded, attention_mask=mask, output_attentions=True)
    torch.testing.assert_close(together.last_hidden_state[:, :6], alone.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert together.attentions[0][..., 6:].abs().max() == 0  # nobody attends to padding
    # without the mask the padding does leak in
    leaky = model(padded).last_hidden_state[:, :6]
    assert not torch.allclose(leaky, alone.last_hidden_state, atol=1e-3)


def test_bert_spelled_out_equals_sdpa_and_token_types_matter():
    torch.manual_seed(0)
    model = BertModel(tiny_bert_config()).eval()
    x = ids(2, 8, 60)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0
    fast = model(x, attention_mask=mask).last_hidden_state
    set_fast_attention(model, False)
    slow = model(x, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(slow, fast, atol=1e-5, rtol=1e-5)
    tt = torch.zeros_like(x)
    tt[:, 4:] = 1
    assert not torch.allclose(model(x, token_type_ids=tt).last_hidden_state, model(x).last_hidden_state)


def test_bert_mlm_tied_loss_at_init_and_ignore_index():
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_bert_config())
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.bert.pooler is None  # as transformers' BertForMaskedLM
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for p in model.bert.embeddings.parameters())
    assert model.num_parameters() == total and model.num_parameters(non_embedding=True) == total - embeddings
    x = ids(4, 12, 60)
    labels = torch.full_like(x, -100)
    labels[:, 3] = x[:, 3]
    out = model(x, labels=labels)
    assert out.logits.shape == (4, 12, 60)
    assert abs(out.loss.item() - math.log(60)) < 0.3
    expected = torch.nn.functional.cross_entropy(out.logits[:, 3], x[:, 3])
    torch.testing.assert_close(out.loss, expected)


def test_bert_classifier_loss_and_learning():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(hidden_dropout_prob=0.0), num_labels=3)
    x = ids(6, 8, 60)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    out = model(x, labels=y)
    assert out.logits.shape == (6, 3)
    assert abs(out.loss.item() - math.log(3)) < 0.3
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = model(input_ids=x, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_bert_errors():
    torch.manual_seed(0)
    cfg = tiny_bert_config()
    clf = BertForSequenceClassification(cfg, num_labels=2)
    mlm = BertForMaskedLM(cfg)
    with pytest.raises(ValueError, match=r"has 25 tokens but the model's context is max_position_embeddings=24"):
        clf(ids(1, 25, 60))
    with pytest.raises(ValueError, match=r"token id 60.*vocab_size=60"):
        clf(torch.tensor([[1, 60]]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        clf(ids(2, 5, 60), labels=torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match=r"labels contains 2, outside \[0, 2\)$"):
        clf(ids(2, 5, 60), labels=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 5\)"):
        mlm(ids(2, 5, 60), labels=ids(2, 4, 60))
    with pytest.raises(TypeError, match=r"labels must be integer class ids"):
        mlm(ids(2, 5, 60), labels=torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"attention_mask must have the shape of input_ids"):
        mlm(ids(2, 5, 60), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"token_type_ids contains token id 2.*vocab_size=2"):
        mlm(ids(1, 3, 60), token_type_ids=torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="no head"):
        BertModel(cfg)(ids(1, 3, 60), labels=ids(1, 3, 60))
    with pytest.raises(ValueError, match=r"hidden_size \(30\) must be divisible by num_attention_heads \(4\)"):
        tiny_bert_config(hidden_size=30)
    with pytest.raises(ValueError, match="num_labels"):
        BertForSequenceClassification(cfg, num_labels=1)


# --------------------------------------------------------------------------------------------
# encoder-decoder Transformer
def test_transformer_shapes_layers_and_loss_at_init():
    model = tiny_transformer()
    src, tgt = ids(3, 9, 20, low=1), ids(3, 7, 22)
    memory = model.encode(src)
    assert memory.shape == (3, 9, 32)
    assert model.decode(tgt, memory).shape == (3, 7, 22)
    out = model(src_ids=src, tgt_ids=tgt, labels=ids(3, 7, 22, seed=5))
    assert out.logits.shape == (3, 7, 22)
    assert abs(out.loss.item() - math.log(22)) < 0.5
    assert model.generator.weight is model.tgt_embed.weight
    total = sum(p.numel() for p in model.parameters())
    assert model.num_parameters() == total and model.num_parameters(non_embedding=True) == total - 20 * 32
    # the layers work on their own, for tracing shapes
    enc, dec = EncoderLayer(32, 4, 64), DecoderLayer(32, 4, 64)
    x, y = torch.randn(2, 5, 32), torch.randn(2, 3, 32)
    assert enc(x).shape == (2, 5, 32) and dec(y, enc(x)).shape == (2, 3, 32)


def test_transformer_decoder_is_causal_and_source_padding_is_masked():
    model = tiny_transformer().eval()
    src, tgt = ids(1, 6, 20, low=1), ids(1, 6, 22)
    tgt2 = tgt.clone()
    tgt2[0, 4] = (tgt[0, 4] + 1) % 22
    a, b = model(src, tgt).logits, model(src, tgt2).logits
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], dim=1)  # pad_id = 0
    torch.testing.assert_close(model(padded, tgt).logits, a, atol=1e-5, rtol=1e-5)
    explicit = model(padded, tgt, src_mask=torch.tensor([[1] * 6 + [0] * 3])).logits
    torch.testing.assert_close(explicit, a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_spelled_out_equals_sdpa(norm_first):
    model = tiny_transformer(norm_first=norm_first).eval()
    src, tgt = ids(2, 8, 20, low=1), ids(2, 5, 22)
    src[1, 6:] = 0
    fast = model(src, tgt).logits
    set_fast_attention(model, False)
    torch.testing.assert_close(model(src, tgt).logits, fast, atol=1e-5, rtol=1e-5)


def test_transformer_learns_to_copy_and_greedy_decode_reproduces():
    """Trained to copy, the model's greedy decode reproduces unseen sources. Measured on a held-out
    batch in eval mode after a decaying learning rate, not on the last noisy training batch: the
    training path differs with the CPU's kernels (e.g. ATEN_CPU_CAPABILITY=default)."""
    BOS, EOS = 1, 2  # tokens 3..9 are "words"; 0 is padding
    model = tiny_transformer(src_vocab_size=10, tgt_vocab_size=10, n_encoder_layers=1, n_decoder_layers=1,
                             d_ff=64, max_len=8)
    g = torch.Generator().manual_seed(0)

    def batch(n):
        src = torch.randint(3, 10, (n, 5), generator=g)
        tgt_in = torch.cat([torch.full((n, 1), BOS), src], dim=1)  # BOS w1..w5
        labels = torch.cat([src, torch.full((n, 1), EOS)], dim=1)   # w1..w5 EOS
        return src, tgt_in, labels

    steps = 300
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - 0.9 * s / steps)
    for _ in range(steps):
        src, tgt_in, labels = batch(32)
        loss = model(src_ids=src, tgt_ids=tgt_in, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay.step()
    src, tgt_in, labels = batch(64)  # unseen
    model.eval()
    with torch.no_grad():
        assert model(src_ids=src, tgt_ids=tgt_in, labels=labels).loss.item() < 0.1
    model.train()
    out = greedy_decode(model, src, max_len=8, bos_id=BOS, eos_id=EOS)
    assert model.training  # mode restored
    assert out.shape == (64, 7)
    assert torch.equal(out[:, 0], torch.full((64,), BOS))
    assert torch.equal(out[:, 1:6], src)
    assert torch.equal(out[:, 6], torch.full((64,), EOS))


def test_transformer_errors():
    model = tiny_transformer()
    with pytest.raises(ValueError, match=r"src_ids has 17 tokens but the model's context is max_len=16"):
        model(ids(1, 17, 20), ids(1, 3, 22))
    with pytest.raises(ValueError, match=r"tgt_ids contains token id 22.*vocab_size=22"):
        model(ids(1, 4, 20), torch.tensor([[1, 22]]))
    with pytest.raises(ValueError, match=r"labels must have shape \(1, 3\)"):
        model(ids(1, 4, 20), ids(1, 3, 22), labels=ids(1, 4, 22))
    with pytest.raises(ValueError, match=r"labels contains -5, outside \[0, 22\)"):
        model(ids(1, 4, 20), ids(1, 3, 22), labels=torch.tensor([[1, -5, -100]]))
    with pytest.raises(ValueError, match=r"src_mask must have the shape of src_ids"):
        model(ids(1, 4, 20), ids(1, 3, 22), src_mask=torch.ones(1, 5))
    with pytest.raises(ValueError, match=r"d_model \(30\) must be divisible by n_heads \(4\)"):
        TransformerConfig(10, 10, d_model=30, n_heads=4)


# --------------------------------------------------------------------------------------------
# no GPU sync in forward
def test_forward_reads_no_tensor_value_off_the_cpu():
    """On a GPU, reading a value (int(t.max()), bool(t.all())) makes the CPU wait for the GPU at
    every step. The "meta" device has shapes but no values: any such read raises there, so a
    forward pass that runs on meta tensors reads none (the value checks run on CPU tensors only)."""
    meta = torch.device("meta")
    gpt = tiny_gpt().to(meta)
    x = ids(2, 8, 50).to(meta)
    mask = torch.ones(2, 8, dtype=torch.long, device=meta)
    assert gpt(x, labels=x, attention_mask=mask).loss.device == meta
    torch.manual_seed(0)
    mlm = BertForMaskedLM(tiny_bert_config()).to(meta)
    assert mlm(ids(2, 8, 60).to(meta), attention_mask=mask, labels=ids(2, 8, 60).to(meta)).loss.device == meta
    clf = BertForSequenceClassification(tiny_bert_config(), num_labels=2).to(meta)
    assert clf(ids(2, 8, 60).to(meta), labels=torch.zeros(2, dtype=torch.long, device=meta)).logits.shape == (2, 2)
    t = tiny_transformer().to(meta)
    src, tgt = ids(2, 6, 20).to(meta), ids(2, 5, 22).to(meta)
    out = t(src, tgt, src_mask=torch.ones(2, 6, device=meta), labels=tgt)
    assert out.logits.shape == (2, 5, 22) and t(src, tgt).logits.device == meta
    # shapes and dtypes are still checked everywhere
    with pytest.raises(ValueError, match="block_size=16"):
        gpt(ids(1, 17, 50).to(meta))
    with pytest.raises(TypeError, match="integer token ids"):
        gpt(torch.zeros(1, 4, device=meta))


def test_models_trace_into_one_graph_for_torch_compile():
    """torch.compile (fit's default on CUDA) runs a model as one fused graph unless something in
    forward breaks it (a value read, a data-dependent branch): then every step pays for the
    break. Dynamo's tracer alone (no C++ compiler needed) finds the breaks."""
    import torch._dynamo as dynamo

    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0
    x = ids(2, 8, 50)
    calls = {
        "GPT": (tiny_gpt(), dict(input_ids=x, labels=x, attention_mask=mask)),
        "BertForMaskedLM": (BertForMaskedLM(tiny_bert_config()),
                            dict(input_ids=x, attention_mask=mask, labels=x)),
        "Transformer": (tiny_transformer(), dict(src_ids=ids(2, 6, 20), tgt_ids=ids(2, 5, 22),
                                                 src_mask=mask[:, :6], labels=ids(2, 5, 22))),
    }
    for name, (model, batch) in calls.items():
        dynamo.reset()
        report = dynamo.explain(model)(**batch)
        assert report.graph_break_count == 0, (name, [str(b.reason) for b in report.break_reasons])
        assert report.graph_count == 1, name


# --------------------------------------------------------------------------------------------
# input dtypes and older torch
@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8, torch.bool])
def test_ids_and_labels_must_be_long(dtype):
    model, mlm = tiny_gpt(), BertForMaskedLM(tiny_bert_config())
    x = ids(2, 8, 2)
    with pytest.raises(TypeError, match=rf"input_ids must be torch.long \(int64\) token ids, got dtype {dtype}; "
                                        r"convert with input_ids.long\(\)"):
        model(x.to(dtype))
    with pytest.raises(TypeError, match=rf"labels must be torch.long \(int64\) class ids, got dtype {dtype}.*"
                                        r"labels.long\(\)"):
        model(x, labels=x.to(dtype))
    with pytest.raises(TypeError, match=r"labels.long\(\)"):
        mlm(x, labels=x.to(dtype))
    with pytest.raises(TypeError, match=r"tgt_ids must be torch.long.*tgt_ids.long\(\)"):
        tiny_transformer()(x, x.to(dtype))
    assert model(x, labels=x).loss.dtype == torch.float32  # torch.long passes


def test_float_ids_and_labels_say_so():
    model = tiny_gpt()
    with pytest.raises(TypeError, match=r"input_ids must be integer token ids \(torch.long, int64\), got "
                                        r"floating-point dtype torch.float32.*input_ids.long\(\)"):
        model(ids(2, 8, 50).float())
    with pytest.raises(TypeError, match=r"labels must be integer class ids.*floating-point.*labels.long\(\)"):
        model(ids(2, 8, 50), labels=ids(2, 8, 50).double())


def test_compile_check_falls_back_on_older_torch(monkeypatch):
    """torch < 2.3 has no torch.compiler.is_compiling: torch._dynamo's is used, else none."""
    import importlib

    from lmbook.models import common

    dynamo = importlib.import_module("torch._dynamo")  # before: this torch's _dynamo imports torch.compiler's

    def old_dynamo_is_compiling():  # torch 2.1/2.2's own (this torch's forwards to torch.compiler)
        return False

    monkeypatch.delattr(torch.compiler, "is_compiling")
    monkeypatch.setattr(dynamo, "is_compiling", old_dynamo_is_compiling)
    found = common._find_is_compiling()
    assert found is old_dynamo_is_compiling
    monkeypatch.setattr(common, "_is_compiling", found)
    assert common.values_readable(torch.zeros(2)) is True
    assert tiny_gpt()(ids(2, 8, 50), labels=ids(2, 8, 50)).loss.ndim == 0
    monkeypatch.delattr(dynamo, "is_compiling")
    monkeypatch.delattr(torch, "compiler")
    assert common._find_is_compiling()() is False
