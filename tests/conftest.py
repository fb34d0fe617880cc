"""Fixtures shared by the unit tests."""
from __future__ import annotations

import pytest


def make_tiny_bert(num_hidden_layers: int = 1, seed: int = 0):
    """(tokenizer, model): the packaged bert-base-uncased WordPiece tokenizer and a randomly
    initialised BertModel of width 16, in eval mode: fast, and real enough for pooling and batching."""
    import torch
    import transformers

    from lmbook.pretrained import packaged_bert_dir

    tok = transformers.BertTokenizerFast.from_pretrained(packaged_bert_dir())
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=num_hidden_layers,
                                  num_attention_heads=2, intermediate_size=32)
    return tok, transformers.BertModel(cfg).eval()


@pytest.fixture(scope="module")
def tiny():
    """A one-layer tiny BERT and its tokenizer (see make_tiny_bert)."""
    return make_tiny_bert(1)


@pytest.fixture(scope="module")
def tiny_bert():
    """A two-layer tiny BERT and its tokenizer (see make_tiny_bert)."""
    return make_tiny_bert(2)
