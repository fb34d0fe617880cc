"""lmbook.models.hf: the book's models and Hugging Face transformers compute the same function."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lmbook.models import (GPT, BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel,  # noqa: E402
                           GPTConfig, Transformer, TransformerConfig, bert_from_hf, from_hf, gpt_from_hf,
                           load_pretrained, save_pretrained, to_hf)

ATOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def quiet_transformers():
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    yield
    transformers.logging.set_verbosity(verbosity)


def ids(B, T, V, seed=0):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def random_bert_config(seed):
    g = torch.Generator().manual_seed(seed)
    heads = int(torch.randint(1, 4, (1,), generator=g))
    return BertConfig(vocab_size=int(torch.randint(20, 80, (1,), generator=g)), hidden_size=8 * heads,
                      num_hidden_layers=int(torch.randint(1, 3, (1,), generator=g)), num_attention_heads=heads,
                      intermediate_size=int(torch.randint(8, 40, (1,), generator=g)), max_position_embeddings=20)


def randomise(model, seed):
    """Random values everywhere (LayerNorm gains near 1, biases too), so a misplaced weight
    cannot hide behind an initial value such as 0 or 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_gain = p.dim() == 1 and ("LayerNorm" in name or "ln_" in name) and name.endswith("weight")
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if is_gain else 0.0))
    return model


# --------------------------------------------------------------------------------------------
# GPT <-> GPT2LMHeadModel
@pytest.mark.parametrize("seed", [0, 1])
def test_gpt_to_hf_and_back_same_logits(seed):
    torch.manual_seed(seed)
    n_head = 1 + seed
    ours = randomise(GPT(GPTConfig(vocab_size=37 + seed, block_size=12, n_layer=1 + seed, n_head=n_head,
                                   n_embd=8 * n_head)), seed).eval()
    hf = to_hf(ours)
    assert isinstance(hf, transformers.GPT2LMHeadModel) and not hf.training
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # still tied
    x = ids(2, 12, ours.config.vocab_size, seed)
    with torch.no_grad():
        expected = ours(x).logits
        assert expected.std() > 0.1  # a test with tiny logits would prove little
        torch.testing.assert_close(hf(x).logits, expected, atol=ATOL, rtol=ATOL)
        back = from_hf(hf)
        assert isinstance(back, GPT) and back.config == ours.config
        torch.testing.assert_close(back(x).logits, expected, atol=ATOL, rtol=ATOL)
        # the loss agrees too: HF shifts labels inside, lmbook takes them already shifted
        hf_loss = hf(x, labels=x).loss
        ours_loss = ours(x[:, :-1], labels=x[:, 1:]).loss
        torch.testing.assert_close(hf_loss, ours_loss, atol=ATOL, rtol=ATOL)


def test_gpt_from_a_fresh_hf_model_and_bias_free_gpt_exports():
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=41, n_positions=10, n_embd=16, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None)).eval()
    ours = gpt_from_hf(hf)
    x = ids(3, 10, 41)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, hf(x).logits, atol=ATOL, rtol=ATOL)
    torch.manual_seed(0)
    nobias = randomise(GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=8, bias=False)), 3).eval()
    with torch.no_grad():
        torch.testing.assert_close(to_hf(nobias)(x[:, :8] % 30).logits, nobias(x[:, :8] % 30).logits,
                                   atol=ATOL, rtol=ATOL)


def test_gpt_from_hf_refuses_what_it_cannot_represent():
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=20, n_positions=8, n_embd=8, n_layer=1, n_head=2, activation_function="relu",
        bos_token_id=None, eos_token_id=None))
    with pytest.raises(ValueError, match="tanh GELU"):
        gpt_from_hf(hf)
    with pytest.raises(TypeError, match="from_hf converts"):
        from_hf(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="no Hugging Face counterpart"):
        to_hf(Transformer(TransformerConfig(10, 10, d_model=8, n_heads=2, n_encoder_layers=1,
                                            n_decoder_layers=1, d_ff=8)))


# --------------------------------------------------------------------------------------------
# BERT family
@pytest.mark.parametrize("kind", ["base", "base-no-pooler", "masked-lm", "classification"])
def test_bert_to_hf_and_back_same_outputs(kind):
    cfg = random_bert_config({"base": 0, "base-no-pooler": 1, "masked-lm": 2, "classification": 3}[kind])
    torch.manual_seed(0)
    ours = {"base": lambda: BertModel(cfg), "base-no-pooler": lambda: BertModel(cfg, add_pooling_layer=False),
            "masked-lm": lambda: BertForMaskedLM(cfg),
            "classification": lambda: BertForSequenceClassification(cfg, num_labels=3)}[kind]()
    ours = randomise(ours, 7).eval()
    hf = to_hf(ours)
    assert type(hf).__name__ == type(ours).__name__
    x = ids(3, 9, cfg.vocab_size, seed=4)
    mask = torch.ones_like(x)
    mask[1, 6:] = 0
    tt = torch.zeros_like(x)
    tt[:, 5:] = 1
    with torch.no_grad():
        a = ours(x, attention_mask=mask, token_type_ids=tt)
        b = hf(input_ids=x, attention_mask=mask, token_type_ids=tt)
        back = from_hf(hf)
        assert type(back) is type(ours) and back.config == ours.config
        c = back(x, attention_mask=mask, token_type_ids=tt)
    assert (a.last_hidden_state if a.logits is None else a.logits).std() > 0.1
    if kind.startswith("base"):
        torch.testing.assert_close(b.last_hidden_state, a.last_hidden_state, atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(c.last_hidden_state, a.last_hidden_state, atol=ATOL, rtol=ATOL)
        if kind == "base":
            torch.testing.assert_close(b.pooler_output, a.pooler_output, atol=ATOL, rtol=ATOL)
        else:
            assert b.pooler_output is None and c.pooler_output is None
    else:
        torch.testing.assert_close(b.logits, a.logits, atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(c.logits, a.logits, atol=ATOL, rtol=ATOL)


def test_bert_losses_and_attention_maps_match_hf():
    cfg = random_bert_config(5)
    torch.manual_seed(0)
    mlm = randomise(BertForMaskedLM(cfg), 1).eval()
    hf = to_hf(mlm, attn_implementation="eager")
    x = ids(2, 7, cfg.vocab_size, seed=2)
    labels = torch.full_like(x, -100)
    labels[:, 2] = x[:, 2]
    mask = torch.ones_like(x)
    mask[0, 5:] = 0
    with torch.no_grad():
        a = mlm(x, attention_mask=mask, labels=labels, output_attentions=True)
        b = hf(input_ids=x, attention_mask=mask, labels=labels, output_attentions=True)
    torch.testing.assert_close(b.loss, a.loss, atol=ATOL, rtol=ATOL)
    for wa, wb in zip(a.attentions, b.attentions, strict=True):
        torch.testing.assert_close(wb, wa, atol=ATOL, rtol=ATOL)


def test_save_pretrained_and_load_back(tmp_path):
    torch.manual_seed(0)
    gpt = randomise(GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=8)), 2).eval()
    clf = randomise(BertForSequenceClassification(random_bert_config(6), num_labels=4), 3).eval()
    for name, model in [("gpt", gpt), ("clf", clf)]:
        save_pretrained(model, tmp_path / name)
        assert (tmp_path / name / "config.json").exists()
        x = ids(2, 8, model.config.vocab_size)
        auto = {"gpt": transformers.AutoModelForCausalLM,
                "clf": transformers.AutoModelForSequenceClassification}[name].from_pretrained(tmp_path / name).eval()
        ours_back = load_pretrained(tmp_path / name).eval()
        with torch.no_grad():
            expected = model(x).logits
            torch.testing.assert_close(auto(input_ids=x).logits, expected, atol=ATOL, rtol=ATOL)
            torch.testing.assert_close(ours_back(x).logits, expected, atol=ATOL, rtol=ATOL)


# --------------------------------------------------------------------------------------------
# a real pretrained model: all-MiniLM-L6-v2, packaged on PyPI
def test_real_minilm_converts_with_the_same_hidden_states():
    from lmbook.pretrained import packaged_bert_dir

    try:
        path = packaged_bert_dir()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    hf = transformers.BertModel.from_pretrained(path).eval()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(path)
    ours = bert_from_hf(hf).eval()
    assert ours.config.num_hidden_layers == 6 and ours.config.hidden_size == 384
    batch = tokenizer(["Attention is all you need.", "A short one."], padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0  # the second sentence is padded
    with torch.no_grad():
        a = ours(**batch, output_hidden_states=True)
        b = hf(**batch, output_hidden_states=True)
    real = batch["attention_mask"].bool()
    for ha, hb in zip(a.hidden_states, b.hidden_states, strict=True):
        torch.testing.assert_close(ha[real], hb[real], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.pooler_output, b.pooler_output, atol=1e-4, rtol=1e-4)
    # and back again: lmbook -> transformers reproduces the original
    again = to_hf(ours).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).last_hidden_state[real], b.last_hidden_state[real],
                                   atol=1e-5, rtol=1e-5)
