"""Presets: training settings sized for the hardware at hand.

A preset fills the arguments of :func:`lmbook.train.fit` that the caller left as ``None`` (batch
size, steps, learning rate, evaluation cadence, precision, compilation), carries model-size
hints (``n_layer``, ``n_head``, ``n_embd``, ``block_size``, ``dropout``) that notebooks and the
command line use to build a model that fits the machine, and names the data and pretrained
models a chapter should load (``*_source``; None = the packaged copy the stored outputs use).

    cpu    a laptop CPU: the sizes of nanoGPT's README recipe for a CPU (4 layers, 4 heads,
           width 128, block 64, batch 12, dropout 0; nanoGPT runs 2000 steps, we default to 1000);
           the packaged data and models
    t4     a Colab T4 (16 GB, no bf16: fp16 autocast with a gradient scaler); nanoGPT's "baby
           GPT" of config/train_shakespeare_char.py (6 layers, 6 heads, width 384, block 256,
           dropout 0.2); bert-base-uncased, the hub's Rotten Tomatoes, SmolLM2-360M-Instruct
    large  an A100/H100-class GPU (bf16, torch.compile); 8 layers, width 512;
           bert-base-uncased, the hub's Rotten Tomatoes, SmolLM2-1.7B-Instruct

The hub sources need the Hugging Face Hub; ``LMBOOK_PACKAGED=1`` keeps the packaged data and
models under any preset (the stored numbers, at GPU speed). ``get_preset()`` picks
``$LMBOOK_PRESET`` if set, else one from the hardware.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

import torch


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    # fit() arguments
    batch_size: int
    steps: int
    lr: float
    warmup_steps: int
    eval_every: int
    eval_batches: int
    accum_steps: int = 1
    precision: str = "auto"  # "auto" | "fp32" | "bf16" | "fp16"
    compile: str | bool = "auto"  # "auto" | True | False
    # model-size hints (GPT; BERT-style models use the same names)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    # sources a chapter loads (the ``source=`` argument of the loaders); None = packaged
    bert_source: str | None = None             # lmbook.pretrained.load_bert, data.bert_tokenizer
    llm_source: str | None = None              # lmbook.pretrained.load_llm
    rotten_tomatoes_source: str | None = None  # lmbook.data.load_rotten_tomatoes

    def to_dict(self) -> dict:
        return asdict(self)

    def packaged(self) -> "Preset":
        """A copy that loads only the packaged data and models (every ``*_source`` None)."""
        return replace(self, **{f: None for f in SOURCE_FIELDS})

    def replace(self, **changes) -> "Preset":
        """A copy with some fields changed, e.g. ``get_preset("cpu").replace(steps=200)``."""
        return replace(self, **changes)


SOURCE_FIELDS = ("bert_source", "llm_source", "rotten_tomatoes_source")
HUB_SOURCES = dict(bert_source="bert-base-uncased",
                   rotten_tomatoes_source="cornell-movie-review-data/rotten_tomatoes")

PRESETS: dict[str, Preset] = {
    "cpu": Preset(
        name="cpu", description="laptop CPU, 2+ cores: nanoGPT's CPU recipe sizes, 1-3 minutes per run",
        batch_size=12, steps=1000, lr=1e-3, warmup_steps=100, eval_every=200, eval_batches=20,
        precision="fp32", compile=False,
        n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
    "t4": Preset(
        name="t4", description="Colab T4 (16 GB, no bf16): fp16 autocast + GradScaler",
        batch_size=64, steps=5000, lr=1e-3, warmup_steps=100, eval_every=250, eval_batches=200,
        precision="auto", compile="auto",
        n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2,
        llm_source="HuggingFaceTB/SmolLM2-360M-Instruct", **HUB_SOURCES),
    "large": Preset(
        name="large", description="A100/H100-class GPU (40 GB+): bf16, torch.compile",
        batch_size=128, steps=5000, lr=1e-3, warmup_steps=100, eval_every=250, eval_batches=200,
        precision="auto", compile="auto",
        n_layer=8, n_head=8, n_embd=512, block_size=256, dropout=0.2,
        llm_source="HuggingFaceTB/SmolLM2-1.7B-Instruct", **HUB_SOURCES),
}


def auto_preset_name() -> str:
    """"cpu" without CUDA; "large" on a GPU with bf16 and at least 32 GB; else "t4"."""
    if not torch.cuda.is_available():
        return "cpu"
    props = torch.cuda.get_device_properties(0)
    has_bf16 = torch.cuda.get_device_capability(0)[0] >= 8  # Ampere or newer (T4 is 7.5)
    return "large" if has_bf16 and props.total_memory >= 32 * 2**30 else "t4"


def packaged_only() -> bool:
    """True when ``$LMBOOK_PACKAGED`` is set to 1/true/yes/on."""
    return os.environ.get("LMBOOK_PACKAGED", "").strip().lower() in {"1", "true", "yes", "on"}


def get_preset(name: str | Preset | None = None) -> Preset:
    """The preset called ``name``, else ``$LMBOOK_PRESET``, else the one for this hardware; with
    ``$LMBOOK_PACKAGED=1`` its sources are the packaged ones (:meth:`Preset.packaged`)."""
    if isinstance(name, Preset):
        return name.packaged() if packaged_only() else name
    name = (name or os.environ.get("LMBOOK_PRESET") or "auto").strip().lower()
    if name == "auto":
        name = auto_preset_name()
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)} (or 'auto')")
    return PRESETS[name].packaged() if packaged_only() else PRESETS[name]
