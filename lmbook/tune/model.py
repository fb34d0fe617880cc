"""The chat model that the tuning runs start from.

``load_chat_model()`` returns ``(tokenizer, model)`` from ``lmbook.pretrained.load_llm``: the
packaged SmolLM2-135M-Instruct as a plain float32 ``LlamaForCausalLM`` in eval mode, or a hub
SmolLM2 when ``source`` names one (e.g. "HuggingFaceTB/SmolLM2-360M-Instruct"). The tokenizer is
set to pad on the right, as training collators expect (``lmbook.tune.evaluate`` pads by hand).

``trainer_precision()`` and ``without_autocast(trainer)`` keep the precision of a TRL run
explicit: bfloat16 autocast only on a GPU that has it, and the trained model handed back
without the autocast wrapper that accelerate puts on its ``forward`` (else every later
measurement of the "tuned" model would silently run in bfloat16).
"""
from __future__ import annotations

__all__ = ["load_chat_model", "load_chat_tokenizer", "tiny_llama", "trainer_precision", "without_autocast",
           "timed_train"]


def load_chat_model(source: str | None = None, *, verbose: bool = True):
    """``(tokenizer, model)``: ``source=None`` is the packaged SmolLM2-135M-Instruct (never the
    network), else a SmolLM2 hub name that ``load_llm`` accepts."""
    from lmbook.pretrained import load_llm

    tok, model = load_llm(source, verbose=verbose)
    tok.padding_side = "right"
    return tok, model


def load_chat_tokenizer():
    """The packaged SmolLM2 tokenizer alone (chat template included), padding on the right."""
    return load_chat_model(verbose=False)[0]


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


def trainer_precision() -> dict:
    """The ``bf16``/``fp16`` arguments of a TRL config: bfloat16 autocast on a CUDA GPU that
    supports it, float32 everywhere else (TRL's configs default to ``bf16=True``, which on a CPU
    means bfloat16 autocast there too)."""
    import torch

    return {"bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()), "fp16": False}


def without_autocast(trainer):
    """``trainer.model`` after training, with accelerate's mixed-precision wrapper taken off its
    ``forward`` (a no-op for a float32 run), in eval mode."""
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    trainer.model = model
    return model.eval()


def timed_train(trainer) -> tuple[float, float, list[float]]:
    """Run ``trainer.train()``; return (wall seconds, CPU seconds of this process, the logged
    training losses), with the model handed back by ``without_autocast``."""
    import time

    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    without_autocast(trainer)
    return seconds, cpu, [h["loss"] for h in trainer.state.log_history if "loss" in h]
