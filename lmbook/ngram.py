"""A counted n-gram language model: the chain rule with a short memory.

    P(w_1 .. w_N) = prod_i P(w_i | w_1 .. w_{i-1})  ~  prod_i P(w_i | w_{i-n+1} .. w_{i-1})

An order-``n`` model keeps only the last ``n - 1`` tokens of context and estimates each
conditional probability from counts. Two estimators:

- ``"add-k"``: (c(h w) + k) / (c(h) + k V), Laplace's rule for k = 1; simple, and poor for long
  contexts, where most counts are zero.
- ``"kneser-ney"`` (default): interpolated Kneser-Ney (Chen & Goodman 1999). Each order subtracts
  a discount D from every seen count and gives the freed mass to the next lower order; lower
  orders count *in how many distinct contexts* a token follows ("continuation counts"), and
  order 0 is uniform over the vocabulary, so every token gets a non-zero probability.

Tokens are the items of a sequence: characters of a ``str`` (character-level model) or the
elements of a list/tuple (e.g. words, or token ids). Probabilities are computed from dict
counts on demand: clear code, fast enough for a few million characters.

    lm = NGramLM(order=5).fit(train_text)
    lm.cross_entropy(val_text)          # nats per token
    lm.sample(200, context="ROMEO:", seed=0)
"""
from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from typing import Iterable, Sequence

__all__ = ["NGramLM", "SMOOTHINGS", "bits", "scramble"]

SMOOTHINGS = ("kneser-ney", "add-k")


def _as_seq(seq) -> str | tuple:
    """A str stays a str (its slices are str); anything else becomes a tuple (hashable slices)."""
    if isinstance(seq, str):
        return seq
    if isinstance(seq, (bytes, bytearray)):
        raise TypeError("decode bytes to str first")
    return tuple(seq)


class NGramLM:
    """An order-``order`` n-gram model over the tokens of sequences (see the module docstring).

    ``fit(seq)`` / ``update(seq)`` count one sequence (call ``update`` again for more; n-grams do
    not cross sequence boundaries). ``vocab`` fixes the vocabulary (default: every token seen).
    """

    def __init__(self, order: int, smoothing: str = "kneser-ney", k: float = 1.0):
        if not isinstance(order, int) or isinstance(order, bool) or order < 1:
            raise ValueError(f"order must be an integer >= 1 (1 = unigram, 2 = bigram...), got {order!r}")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"unknown smoothing {smoothing!r}: use one of {', '.join(SMOOTHINGS)}")
        if smoothing == "add-k" and not k > 0:
            raise ValueError(f"add-k smoothing needs k > 0, got {k}")
        self.order, self.smoothing, self.k = order, smoothing, float(k)
        self.counts = [Counter() for _ in range(order + 1)]  # counts[m]: m-gram -> count (m >= 1)
        self._vocab: set = set()
        self._fixed_vocab: list | None = None
        self._text: bool | None = None  # counted str (characters) or token sequences
        # probability tables, built lazily from the counts and shared with with_order() views
        self._shared = {"version": 0, "cache": {}}
        self._tables, self._built_at = None, -1
        self._view = False

    # ------------------------------------------------------------------ counting
    def fit(self, seq, vocab: Iterable | None = None) -> "NGramLM":
        """Count ``seq`` (a str or a sequence of tokens); ``vocab`` fixes the vocabulary.
        Returns self."""
        if vocab is not None:
            self._fixed_vocab = sorted(set(vocab))
        return self.update(seq)

    def update(self, seq) -> "NGramLM":
        """Add the n-grams (orders 1..order) of one more sequence."""
        if self._view:
            raise TypeError("this model is a view made by with_order(): update the model it came from")
        s = _as_seq(seq)
        if len(s) == 0:
            raise ValueError("cannot count an empty sequence")
        if self._text is not None and self._text != isinstance(s, str):
            raise TypeError("do not mix str and token sequences in one model")
        self._text = isinstance(s, str)
        for m in range(1, self.order + 1):
            self.counts[m].update(s[i:i + m] for i in range(len(s) - m + 1))
        self._vocab.update(s)
        self._shared["version"] += 1
        self._shared["cache"].clear()
        return self

    def with_order(self, order: int) -> "NGramLM":
        """The same counts seen as a lower-order model (no recounting): ``with_order(2)`` of a
        5-gram model equals a bigram model fitted on the same data."""
        if not 1 <= order <= self.order:
            raise ValueError(f"order must be between 1 and {self.order}, got {order}")
        lm = NGramLM(order, smoothing=self.smoothing, k=self.k)
        lm.counts, lm._shared, lm._view = self.counts, self._shared, True
        lm._vocab, lm._fixed_vocab, lm._text = self._vocab, self._fixed_vocab, self._text
        return lm

    @property
    def vocab(self) -> list:
        """The vocabulary, sorted: the ``vocab`` given to ``fit``, else every token counted."""
        if self._fixed_vocab is not None:
            return self._fixed_vocab
        cache = self._shared["cache"]
        if "vocab" not in cache:
            cache["vocab"] = sorted(self._vocab)
        return cache["vocab"]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def num_ngrams(self) -> int:
        """Distinct n-grams of orders 1..``order`` counted (a ``with_order`` view shares its
        parent's counts but counts only its own orders)."""
        return sum(len(self.counts[m]) for m in range(1, self.order + 1))

    def _build(self):
        """Per order m: the table T_m (raw counts for the top order, continuation counts below
        for Kneser-Ney), its context totals, numbers of distinct followers, and discount D_m."""
        if not self._vocab:
            raise RuntimeError("the model has no counts yet: call fit(sequence) first")
        if self._fixed_vocab is not None and not self._vocab <= set(self._fixed_vocab):
            extra = sorted(self._vocab - set(self._fixed_vocab))[:5]
            raise ValueError(f"tokens {extra} were counted but are not in the given vocab")
        tables = [None] * (self.order + 1)
        cache = self._shared["cache"]
        for m in range(1, self.order + 1):
            continuation = self.smoothing == "kneser-ney" and m < self.order
            key = (m, continuation)
            if key in cache:
                tables[m] = cache[key]
                continue
            if continuation:
                table = Counter(g[1:] for g in self.counts[m + 1])  # N1+(. g): distinct left contexts
                # a sequence's first m-grams have no left neighbour; count them as raw so no token
                # seen only at the start gets zero continuation mass
                for g in self.counts[m]:
                    table.setdefault(g, 1)
            else:
                table = self.counts[m]
            totals, followers = defaultdict(int), defaultdict(int)
            for g, c in table.items():
                totals[g[:-1]] += c
                followers[g[:-1]] += 1
            n1 = sum(1 for c in table.values() if c == 1)
            n2 = sum(1 for c in table.values() if c == 2)
            discount = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5
            tables[m] = cache[key] = (table, totals, followers, discount)
        self._tables, self._built_at = tables, self._shared["version"]
        return tables

    def _ready(self):
        if self._tables is None or self._built_at != self._shared["version"]:
            return self._build()
        return self._tables

    # ------------------------------------------------------------------ probabilities
    def prob(self, token, context=()) -> float:
        """P(token | the last ``order - 1`` tokens of ``context``)."""
        tables = self._ready()
        h = _as_seq(context)
        h = h[len(h) - (self.order - 1):] if self.order > 1 else h[:0]
        if isinstance(h, str) and not isinstance(token, str):
            raise TypeError("a str context needs a str (one character) token")
        w = token if isinstance(h, str) else (token,)
        return self._p(tables, h, w)

    def _p(self, tables, h, w) -> float:
        V = len(self.vocab)
        if self.smoothing == "add-k":
            table, totals, _, _ = tables[len(h) + 1]
            return (table.get(h + w, 0) + self.k) / (totals.get(h, 0) + self.k * V)
        p = 1.0 / V  # order 0: uniform
        for m in range(1, len(h) + 2):  # from unigram up to the full context
            table, totals, followers, D = tables[m]
            hm = h[len(h) - (m - 1):] if m > 1 else h[:0]
            total = totals.get(hm, 0)
            if total == 0:
                continue  # unseen context: keep the lower-order estimate
            p = max(table.get(hm + w, 0) - D, 0.0) / total + D * followers[hm] / total * p
        return p

    def distribution(self, context=()) -> list[float]:
        """P(w | context) for every w of ``vocab``, in that order (sums to 1)."""
        return [self.prob(w, context) for w in self.vocab]

    def log_prob(self, seq, context=()) -> float:
        """ln P(seq | context): the sum over positions of ln P(token | up to order-1 previous
        tokens, drawn from ``context`` + seq)."""
        s, c = _as_seq(seq), _as_seq(context)
        if type(s) is not type(c) and len(c):
            raise TypeError("seq and context must both be str or both token sequences")
        full = c + s if len(c) else s
        tables = self._ready()
        n = self.order - 1
        total = 0.0
        for i in range(len(c), len(full)):
            h = full[max(0, i - n):i]
            w = full[i:i + 1]
            p = self._p(tables, h, w)
            if p <= 0.0:
                return -math.inf
            total += math.log(p)
        return total

    def cross_entropy(self, seq) -> float:
        """Mean negative log-probability per token of ``seq`` (nats); each token conditioned on
        the tokens before it in ``seq`` (the first ones on a shorter context)."""
        s = _as_seq(seq)
        if len(s) == 0:
            raise ValueError("cannot score an empty sequence")
        return -self.log_prob(s) / len(s)

    def perplexity(self, seq) -> float:
        """exp(cross-entropy): the effective number of equally likely next tokens."""
        return math.exp(self.cross_entropy(seq))

    def predict(self, context):
        """The most probable next token after ``context`` (ties: the first in ``vocab``)."""
        dist = self.distribution(context)
        return self.vocab[max(range(len(dist)), key=dist.__getitem__)]

    def sample(self, n: int, context=(), seed: int | None = None, temperature: float = 1.0):
        """Generate ``n`` tokens after ``context``: a str when the model counted str (characters),
        else a list of tokens. ``seed`` makes it reproducible (a private ``random.Random``)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        rng = random.Random(seed)
        vocab = self.vocab
        text_mode = bool(self._text)
        h = _as_seq(context)
        if text_mode != isinstance(h, str):
            h = "".join(h) if text_mode else tuple(h)
        out = []
        for _ in range(n):
            ctx = h[len(h) - (self.order - 1):] if self.order > 1 else h[:0]
            weights = self.distribution(ctx)
            if temperature != 1.0:
                weights = [p ** (1.0 / temperature) for p in weights]
            w = rng.choices(vocab, weights=weights)[0]
            out.append(w)
            h = h + (w if text_mode else (w,))
        return "".join(out) if text_mode else out


def bits(nats: float) -> float:
    """Convert nats (natural-log units) to bits: divide by ln 2."""
    return nats / math.log(2)


def scramble(seq: Sequence, seed: int = 0):
    """The same tokens in a random order (a str stays a str): a control with identical unigram
    counts and none of the order."""
    s = _as_seq(seq)
    items = list(s)
    random.Random(seed).shuffle(items)
    return "".join(items) if isinstance(s, str) else items
