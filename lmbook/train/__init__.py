"""Training: one ``fit`` for every chapter, presets sized for the hardware, checkpoints, DDP.

    history = fit(model, train_ds, val_data=val_ds, steps=2000)   # GPU if present, else CPU
    history.plot(); history.best_val

Modules: ``loop`` (fit, evaluate), ``presets`` (Preset, get_preset), ``optim`` (AdamW groups,
warm-up + cosine schedule), ``checkpoint`` (safetensors, atomic, resumable), ``distributed``
(torchrun / DistributedDataParallel), ``history`` (History).
"""
from lmbook.train.checkpoint import load_checkpoint, save_checkpoint
from lmbook.train.history import History
from lmbook.train.loop import NonFiniteLossError, evaluate, fit, resolve_precision
from lmbook.train.optim import lr_at, make_optimizer, param_groups
from lmbook.train.presets import PRESETS, Preset, get_preset

__all__ = ["fit", "evaluate", "History", "Preset", "PRESETS", "get_preset", "save_checkpoint",
           "load_checkpoint", "NonFiniteLossError", "make_optimizer", "param_groups", "lr_at",
           "resolve_precision"]
