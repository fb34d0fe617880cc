"""``fit``: one training loop for every chapter, on a GPU when there is one, else on the CPU."""
from __future__ import annotations

import contextlib
import math
import numbers
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

from lmbook.device import pick_device
from lmbook.train import distributed as ddp
from lmbook.train.checkpoint import (latest_checkpoint, load_checkpoint, restore_rng_state, rng_state,
                                     save_checkpoint)
from lmbook.train.history import History
from lmbook.train.optim import lr_at, make_optimizer
from lmbook.train.presets import Preset, get_preset


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


PRECISIONS = {"auto": "auto", "fp32": "fp32", "32": "fp32", "float32": "fp32",
              "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "16": "fp16", "float16": "fp16"}


# --------------------------------------------------------------------------------------------
# settings resolved from the hardware
def resolve_precision(precision: str, device: torch.device) -> str:
    """"fp32", "bf16" or "fp16" for ``device``. "auto": bf16 on CUDA GPUs that have it (Ampere and
    newer), fp16 with a gradient scaler on older ones (a T4 has no bf16), fp32 elsewhere."""
    name = PRECISIONS.get(str(precision).lower())
    if name is None:
        raise ValueError(f"unknown precision {precision!r}: use 'auto', 'fp32', 'bf16' or 'fp16'")
    has_bf16 = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8
    if name == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if has_bf16 else "fp16"
    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA GPU (this run is on {device.type}); "
                         "use 'fp32' (or 'bf16' on a CPU)")
    if name == "bf16" and device.type == "cuda" and not has_bf16:
        raise ValueError(f"{torch.cuda.get_device_name(device)} has no bf16 support: "
                         "use precision='fp16' (with a gradient scaler) or 'fp32'")
    return name


def resolve_compile(compile, device: torch.device) -> bool:
    """"auto" compiles on CUDA when Triton is installed; True/False force it."""
    if isinstance(compile, str):
        key = compile.lower()
        if key == "auto":
            if device.type != "cuda":
                return False
            try:
                import triton  # noqa: F401
            except ImportError:
                return False
            return True
        if key in ("true", "on", "yes", "1"):
            return True
        if key in ("false", "off", "no", "0"):
            return False
        raise ValueError(f"unknown compile setting {compile!r}: use 'auto', True or False")
    return bool(compile)


# --------------------------------------------------------------------------------------------
# batches
def _to_device(batch, device: torch.device, non_blocking: bool):
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"fit calls model(**batch), so batches must be dicts of tensors; got {type(batch).__name__}. "
            "Make the dataset yield dicts such as {'input_ids': x, 'labels': y} "
            "(or pass a collate_fn that builds one)")
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def _count(batch) -> tuple[int, int]:
    """(tokens, examples) in a batch: tokens from attention_mask or input_ids when present."""
    if not isinstance(batch, Mapping):
        return 0, 0  # _to_device says what is wrong
    examples = next((v.shape[0] for v in batch.values() if isinstance(v, torch.Tensor) and v.dim() > 0), 0)
    if isinstance(batch.get("attention_mask"), torch.Tensor):
        tokens = int(batch["attention_mask"].sum())
    elif isinstance(batch.get("input_ids"), torch.Tensor):
        tokens = batch["input_ids"].numel()
    else:
        tokens = 0
    return tokens, examples


def _targets(batch) -> int | None:
    """Targets a model's mean loss averages over: the labels other than -100 (integer labels; every
    label when they are floats, e.g. regression), or None when the batch has no "labels" tensor."""
    labels = batch.get("labels") if isinstance(batch, Mapping) else None
    if not isinstance(labels, torch.Tensor):
        return None
    if labels.dtype.is_floating_point:
        return labels.numel()
    return int((labels != -100).sum())


def _loss_of(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        loss = out
    elif isinstance(out, Mapping):
        loss = out.get("loss")
    else:
        loss = getattr(out, "loss", None)
    if loss is None:
        raise ValueError(
            f"the model returned no loss (it returned {type(out).__name__}): fit needs model(**batch) "
            "to return a loss. Put the targets in the batch (e.g. a 'labels' entry in every example) "
            "so that the model computes its loss, or return the loss tensor itself")
    if loss.dim() != 0:
        if loss.numel() != 1:
            raise ValueError(f"the loss must be a scalar, got shape {tuple(loss.shape)}: "
                             "reduce it in the model (e.g. .mean())")
        loss = loss.reshape(())
    return loss


class _ResumableSampler(DistributedSampler):
    """DistributedSampler (a seeded shuffle per epoch, one shard per rank) that can start part way
    through an epoch, so a resumed run sees exactly the batches an uninterrupted one would."""

    skip = 0

    def __iter__(self):
        it = super().__iter__()
        for _ in range(self.skip):
            next(it)
        return it

    def __len__(self):
        return super().__len__() - self.skip


class _Batches:
    """An endless stream of micro-batches over epochs, resumable at any micro-batch index."""

    def __init__(self, data, *, batch_size, collate_fn, shuffle, seed, info, pin, num_workers):
        self.user_loader = isinstance(data, DataLoader)
        if not self.user_loader and isinstance(data, IterableDataset):
            data = DataLoader(data, batch_size=batch_size, collate_fn=collate_fn)
            self.user_loader = True
        if self.user_loader:
            self.loader = data
            if info.enabled and not isinstance(getattr(data, "sampler", None), DistributedSampler):
                warnings.warn("fit runs under DDP with a DataLoader whose sampler is no DistributedSampler: "
                              "every process sees the same batches. Pass the Dataset itself instead.")
            try:
                self.per_epoch = len(data)
            except TypeError:
                self.per_epoch = None
            if self.per_epoch == 0:
                raise ValueError("the training DataLoader is empty: it yields no batches")
            return
        try:
            n = len(data)
        except TypeError:
            raise TypeError(f"train_data must be a Dataset with __len__ or a DataLoader, got {type(data).__name__}") from None
        if n == 0:
            raise ValueError("the training dataset is empty: it has no examples")
        self.sampler = _ResumableSampler(data, num_replicas=info.world_size, rank=info.rank,
                                         shuffle=shuffle, seed=seed, drop_last=False)
        shard = len(self.sampler)
        self.drop_last = shard >= batch_size  # equal-sized batches, except for tiny data sets
        self.per_epoch = shard // batch_size if self.drop_last else 1
        self.batch_size, self.dataset = batch_size, data
        self.loader = DataLoader(data, batch_size=batch_size, sampler=self.sampler, collate_fn=collate_fn,
                                 drop_last=self.drop_last, pin_memory=pin, num_workers=num_workers,
                                 generator=torch.Generator().manual_seed(seed))

    def stream(self, start: int):
        """Micro-batches from global micro-batch index ``start`` on."""
        if self.per_epoch is None:  # an iterable of unknown length: skip by consuming
            it = iter(self.loader)
            for _ in range(start):
                next(it)
            yield from it
            raise ValueError("the training data ran out: an iterable dataset must be endless, "
                             "or pass a Dataset with a length")
        epoch, within = divmod(start, self.per_epoch)
        while True:
            if self.user_loader:
                if hasattr(getattr(self.loader, "sampler", None), "set_epoch"):
                    self.loader.sampler.set_epoch(epoch)
                it = iter(self.loader)
                for _ in range(within):
                    next(it)
            else:
                self.sampler.set_epoch(epoch)
                if hasattr(self.dataset, "set_epoch"):  # e.g. LMWindows redraws its windows
                    self.dataset.set_epoch(epoch)
                self.sampler.skip = within * self.batch_size
                it = iter(self.loader)
            yield from it
            epoch, within = epoch + 1, 0


# --------------------------------------------------------------------------------------------
# evaluation
def evaluate(model: nn.Module, data, *, batch_size: int = 32, max_batches: int | None = None,
             collate_fn=None, precision: str = "auto", seed: int = 0) -> float:
    """Mean loss per target of ``model`` over ``data`` (a Dataset of dict examples, or a
    DataLoader) on the model's device, using at most ``max_batches`` batches of a seeded shuffle
    (the same batches on every call; None: all). Each batch's mean loss weighs by its number of
    targets (labels other than -100; examples when a batch has no labels); batches without any
    target are skipped. ``precision`` as in :func:`fit` ("auto": what fit uses on that device).
    In a DDP process group each process evaluates its shard and the result covers all of them.
    Raises NonFiniteLossError if the loss is NaN or infinite."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    dev = next(model.parameters()).device
    info = ddp.current()
    loader = _val_loader(data, batch_size, collate_fn, seed, info)
    return _evaluate(model, loader, max_batches, dev, resolve_precision(precision, dev), info)


def _val_loader(data, batch_size, collate_fn, seed, info):
    if isinstance(data, DataLoader):
        return data
    if len(data) == 0:
        raise ValueError("the validation dataset is empty: it has no examples")
    sampler = DistributedSampler(data, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=seed, drop_last=False)
    return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                      generator=torch.Generator().manual_seed(seed))


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def _evaluate(model, loader, max_batches, device, precision, info, forward=None) -> float:
    forward = model if forward is None else forward
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of loss * targets, targets)
    per_rank = None if max_batches is None else max(1, math.ceil(max_batches / info.world_size))
    for i, batch in enumerate(loader):
        if per_rank is not None and i >= per_rank:
            break
        n = _targets(batch)  # before the copy: no GPU sync
        if n is None:  # no labels to count: weigh by examples
            n = _count(batch)[1] or 1
        if n == 0:
            continue  # every label ignored: its mean loss is 0/0
        batch = _to_device(batch, device, non_blocking=device.type == "cuda")
        with _autocast(device, precision):
            loss = _loss_of(forward(**batch))
        total[0] += loss.double() * n
        total[1] += n
    total = ddp.sum_over_ranks(total, info).tolist()
    model.train(was_training)
    if total[1] == 0:
        raise ValueError("the validation data yielded no batch with a target (labels other than -100)")
    mean = total[0] / total[1]
    if not math.isfinite(mean):
        raise NonFiniteLossError(
            f"the validation loss is {mean} (precision {precision}). Likely causes: the weights "
            "diverged (lower lr), fp16 overflow (use precision='bf16' or 'fp32'), or bad data "
            "(NaN/inf inputs, labels outside the vocabulary).")
    return mean


# --------------------------------------------------------------------------------------------
# torch.compile, with compile="auto"'s fallback to eager
def _out_of_memory(e: BaseException) -> bool:
    """True if ``e`` (or an error it wraps) is an out-of-memory error: retrying eagerly would
    hide it."""
    oom = tuple(t for t in (MemoryError, getattr(torch, "OutOfMemoryError", None),
                            getattr(torch.cuda, "OutOfMemoryError", None)) if isinstance(t, type))
    while e is not None:
        if isinstance(e, oom) or "out of memory" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False


class _Forward:
    """The model's forward for training and for evaluation, compiled when asked.

    With compile="auto" every compiled call (the first compilation, a recompilation, the
    evaluation graph) that raises is retried eagerly: if eager code succeeds, fit warns that
    torch.compile failed and continues without it. An error that eager code raises as well (a
    bug in the model or the data) and an out-of-memory error are raised as they are."""

    def __init__(self, wrapped, raw, *, compile: bool, auto: bool, distributed: bool, record: dict):
        self.eager = (wrapped, raw)  # (training, evaluation): DDP's wrapper only for training
        if compile:
            train = torch.compile(wrapped)
            self.fns = (train, torch.compile(raw) if distributed else train)
        else:
            self.fns = self.eager
        self.compiled, self.auto, self.record = compile, auto, record

    def run(self, work, *, training: bool, undo=None):
        """``work(forward)``; on a compiled failure under "auto", ``undo()`` then ``work`` eagerly."""
        which = 0 if training else 1
        if not self.compiled:
            return work(self.eager[which])
        try:
            return work(self.fns[which])
        except Exception as e:
            if not self.auto or _out_of_memory(e):
                raise
            error = f"{type(e).__name__}: {str(e)[:200]}"
        if undo is not None:
            undo()
        result = work(self.eager[which])  # raises the model's own error if eager fails as well
        warnings.warn(f"torch.compile failed ({error}); training without compilation")
        self.compiled, self.fns = False, self.eager
        self.record["compile"] = False
        return result

    def evaluate(self, **batch):
        return self.run(lambda forward: forward(**batch), training=False)


# --------------------------------------------------------------------------------------------
@dataclass
class _Settings:
    """fit's arguments once the preset has filled the gaps and each was checked."""
    batch_size: int
    accum_steps: int
    lr: float
    warmup_steps: int | None
    min_lr_ratio: float
    weight_decay: float
    betas: tuple
    grad_clip: float | None
    eval_every: int
    eval_batches: int | None
    precision: str
    compile: object
    checkpoint_dir: object
    checkpoint_every: int | None
    resume: bool
    seed: int
    shuffle: bool
    progress: bool
    preset: Preset
    steps: int | None = None
    use_compile: bool = False

    def recorded(self, world_size: int) -> dict:
        """What checkpoints and History.info keep (a resumed run checks the data settings)."""
        return {"batch_size": self.batch_size, "accum_steps": self.accum_steps, "world_size": world_size,
                "seed": self.seed, "steps": self.steps, "lr": self.lr, "warmup_steps": self.warmup_steps,
                "min_lr_ratio": self.min_lr_ratio, "weight_decay": self.weight_decay,
                "betas": list(self.betas), "grad_clip": self.grad_clip, "shuffle": self.shuffle}


def _settings(p: Preset, steps, epochs, **a) -> _Settings:
    fill = {k: getattr(p, k) if a[k] is None else a[k]
            for k in ("batch_size", "lr", "accum_steps", "eval_every", "eval_batches", "precision", "compile")}
    a.update(fill)
    a["eval_batches"] = None if a["eval_batches"] == "all" else a["eval_batches"]
    eb = a["eval_batches"]
    if eb is not None and (not isinstance(eb, int) or eb < 1):
        raise ValueError(f"eval_batches must be a positive integer or 'all', got {eb!r}")
    for name in ("batch_size", "accum_steps", "eval_every"):
        a[name] = _positive_int(name, a[name])
    if not a["lr"] > 0:
        raise ValueError(f"lr must be positive, got {a['lr']!r}")
    if not 0.0 <= a["min_lr_ratio"] <= 1.0:
        raise ValueError(f"min_lr_ratio must be between 0 and 1, got {a['min_lr_ratio']!r}")
    if a["grad_clip"] is not None and not a["grad_clip"] > 0:
        raise ValueError(f"grad_clip must be positive or None, got {a['grad_clip']!r}")
    if a["checkpoint_every"] is not None and a["checkpoint_every"] < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {a['checkpoint_every']!r}")
    if steps is not None and epochs is not None:
        raise ValueError("give steps or epochs, not both")
    return _Settings(preset=p, **a)


def fit(model: nn.Module, train_data, *, val_data=None, steps: int | None = None,
        epochs: float | None = None, batch_size: int | None = None, lr: float | None = None,
        weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int | None = None, min_lr_ratio: float = 0.1, grad_clip: float | None = 1.0,
        accum_steps: int | None = None, eval_every: int | None = None, eval_batches: int | None = None,
        collate_fn=None, preset: str | Preset | None = None, device=None, precision: str | None = None,
        compile=None, checkpoint_dir=None, checkpoint_every: int | None = None, resume: bool = True,
        seed: int = 0, progress: bool = True, shuffle: bool = True, num_workers: int = 0) -> History:
    """Train ``model`` on ``train_data`` with AdamW, warm-up + cosine decay and gradient clipping.

    Data and model
      model         any nn.Module whose ``model(**batch)`` returns the loss: an object with ``.loss``
                    (lmbook models, Hugging Face models given labels), a dict with "loss", or the
                    scalar loss tensor itself. It is moved to the device; fit returns it in eval mode.
      train_data    a map-style Dataset (or list) of dict examples, batched by ``collate_fn``
                    (default: stack tensors), reshuffled every epoch with a generator seeded by
                    ``seed`` and sharded across processes under DDP (a dataset with a
                    ``set_epoch(epoch)`` method, such as LMWindows, is told each new epoch); or
                    a DataLoader, used as is (resuming then skips batches by reading them).
      val_data      like train_data; evaluated every ``eval_every`` steps and after the last one.
      collate_fn    turns a list of examples into a dict batch (e.g. padding); default stacks.
      shuffle       reshuffle the training examples every epoch (default True).
      num_workers   DataLoader worker processes (default 0: load in the training process).

    Length and batch
      steps         optimizer steps to take. Default: from ``epochs``, else the preset's.
      epochs        passes over train_data (may be fractional) when ``steps`` is None.
      batch_size    examples per micro-batch per process. The global batch per optimizer step is
                    batch_size * accum_steps * number of processes.
      accum_steps   micro-batches whose gradients are summed before each optimizer step. With
                    several micro-batches (or processes) each micro-batch's mean loss weighs by
                    its number of targets (labels other than -100), so the step's gradient is
                    that of the mean over all its targets, as one big batch would give (Hugging
                    Face's ``num_items_in_batch``); batches without labels weigh equally.

    Optimisation
      lr            peak learning rate, reached after ``warmup_steps`` of linear warm-up, then cosine
                    decay to ``min_lr_ratio * lr`` at the last step (nanoGPT's schedule).
      warmup_steps  default: the preset's, at most a tenth of ``steps``.
      min_lr_ratio  final learning rate as a fraction of ``lr`` (1.0: constant after warm-up).
      weight_decay  AdamW decay on matrices (linear weights, embeddings); none on biases, norms.
      betas         AdamW betas (nanoGPT: (0.9, 0.95); (0.9, 0.99) for small models).
      grad_clip     clip the global gradient norm to this (None: no clipping).

    Evaluation
      eval_every    evaluate every this many optimizer steps (default: the preset's).
      eval_batches  batches per evaluation, the same seeded sample of val_data every time
                    (default: the preset's; "all": every batch of val_data). See :func:`evaluate`.

    Hardware
      preset        a name ("cpu", "t4", "large"), a Preset, or None for ``$LMBOOK_PRESET`` or the
                    hardware's (see lmbook.train.get_preset); it fills every argument left as None.
      device        a torch.device (e.g. from ``lmbook.setup()``) or "auto", "cpu", "cuda", "cuda:N",
                    "mps" (default: ``$LMBOOK_DEVICE``, else the best one present); under torchrun
                    each process takes cuda:LOCAL_RANK.
      precision     "auto" (bf16 autocast on GPUs that have it, fp16 + gradient scaler on older
                    ones such as the T4, fp32 on CPU/MPS), "fp32", "bf16" or "fp16".
      compile       torch.compile the model: "auto" (on CUDA with Triton; falls back to eager
                    when compiled code fails where eager code works), True or False.

    Checkpoints and reproducibility
      checkpoint_dir    write checkpoints there (safetensors weights + optimizer/RNG state, atomic)
                        every ``checkpoint_every`` steps and after the last step.
      checkpoint_every  steps between checkpoints (None: only at the end).
      resume            continue from the newest checkpoint in ``checkpoint_dir`` if there is one:
                        same data order, optimizer and RNG state, so the result equals an
                        uninterrupted run (under DDP rank 0 picks the checkpoint and every process
                        restores its own RNG state; a collate_fn's own random generator is not saved).
      seed          seeds the data order and torch's global RNG (dropout); the model's initial
                    weights are the caller's business (``lmbook.setup(seed)`` before building it).
      progress      show a tqdm progress bar with the loss (rank 0 only).

    Returns a :class:`History`. Raises NonFiniteLossError if the loss becomes NaN or infinite.
    Under ``torchrun --nproc_per_node=N`` the same call trains with DistributedDataParallel.
    """
    s = _settings(get_preset(preset), steps, epochs, batch_size=batch_size, lr=lr, accum_steps=accum_steps,
                  eval_every=eval_every, eval_batches=eval_batches, precision=precision, compile=compile,
                  warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio, weight_decay=weight_decay,
                  betas=betas, grad_clip=grad_clip, checkpoint_dir=checkpoint_dir,
                  checkpoint_every=checkpoint_every, resume=resume, seed=seed, shuffle=shuffle,
                  progress=progress)
    dev = ddp.rank_device(pick_device(str(device) if isinstance(device, torch.device) else device))
    s.precision = resolve_precision(s.precision, dev)
    s.use_compile = resolve_compile(s.compile, dev)
    info = ddp.setup(dev)
    trainer = None
    try:
        trainer = _Trainer(model, train_data, val_data, s, dev, info, steps=steps, epochs=epochs,
                           collate_fn=collate_fn, num_workers=num_workers)
        return trainer.train()
    finally:
        if trainer is not None:
            trainer.close()
        ddp.teardown(info)


class _Trainer:
    """One fit() call: set up (and resumed) by the constructor, then ``train()`` takes the steps."""

    # ---- set-up and resume
    def __init__(self, model, train_data, val_data, s: _Settings, dev, info, *, steps, epochs,
                 collate_fn, num_workers):
        self.s, self.dev, self.info, self.raw = s, dev, info, model
        self.batches = _Batches(train_data, batch_size=s.batch_size, collate_fn=collate_fn,
                                shuffle=s.shuffle, seed=s.seed, info=info, pin=dev.type == "cuda",
                                num_workers=num_workers)
        s.steps = self._total_steps(steps, epochs)
        if s.warmup_steps is None:
            s.warmup_steps = min(s.preset.warmup_steps, s.steps // 10)
        self.val_loader = (_val_loader(val_data, s.batch_size, collate_fn, s.seed, info)
                           if val_data is not None else None)
        model.to(dev)
        n_params = sum(q.numel() for q in model.parameters())
        if n_params == 0:
            raise ValueError("the model has no parameters to train")
        self.optimizer = make_optimizer(model, s.lr, s.weight_decay, s.betas)
        self.scaler = _grad_scaler(s.precision == "fp16")
        torch.manual_seed(s.seed + info.rank)
        self.history = History()
        self.start = self._resume()
        self.history.info.update(
            device=str(dev), precision=s.precision, compile=s.use_compile, preset=s.preset.name,
            parameters=n_params, global_batch=s.batch_size * s.accum_steps * info.world_size,
            resumed_from=self.start or None, **s.recorded(info.world_size))
        self.wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None) if info.enabled else model
        self.forward = _Forward(self.wrapped, model, compile=s.use_compile, distributed=info.enabled,
                                auto=isinstance(s.compile, str) and s.compile.lower() == "auto",
                                record=self.history.info)
        self.pbar = _progress_bar(s.steps, self.start, s.progress and info.is_main)

    def _total_steps(self, steps, epochs) -> int:
        if steps is None and epochs is not None:
            if self.batches.per_epoch is None:
                raise ValueError("epochs needs data of known length; give steps instead")
            if not epochs > 0:
                raise ValueError(f"epochs must be positive, got {epochs!r}")
            steps = max(1, int(epochs * self.batches.per_epoch) // self.s.accum_steps)
        return _positive_int("steps", self.s.preset.steps if steps is None else steps)

    def _resume(self) -> int:
        """Load the newest checkpoint, if asked and there is one; returns its step (0: none).
        Rank 0 picks it for every process; each process restores its own RNG state."""
        s = self.s
        if s.checkpoint_dir is None or not s.resume:
            return 0
        found = latest_checkpoint(s.checkpoint_dir) if self.info.is_main else None
        weights = ddp.broadcast_from_main(None if found is None else str(found["model"]), self.info)
        if weights is None:
            return 0
        state = load_checkpoint(weights, self.raw, self.optimizer, scaler=self.scaler)  # RNG stays on the CPU
        if state["history"]:
            self.history = History.from_dict(state["history"])
        restore_rng_state(state, self.info.rank)
        _warn_if_changed(state["extra"].get("fit", {}), s.recorded(self.info.world_size))
        return state["step"]

    def close(self):
        if self.pbar is not None:
            self.pbar.close()

    # ---- the loop
    def train(self) -> History:
        s, h = self.s, self.history
        if self.start >= s.steps:
            warnings.warn(f"the checkpoint in {s.checkpoint_dir} is at step {self.start} >= steps={s.steps}: "
                          "nothing to train (pass a larger steps to continue)")
        self.stream = self.batches.stream(self.start * s.accum_steps)
        self.pending = []  # steps whose losses are still on the device
        self.t0 = time.perf_counter() - h.wall_time
        self.tokens = h.tokens[-1] if h.tokens else 0
        self.examples = h.examples[-1] if h.examples else 0
        self.last_val = h.final_val
        self.raw.train()
        for step in range(self.start, s.steps):
            self._optimizer_step(step)
            self._after_step(step + 1)
        self.raw.eval()
        return self.history

    # ---- one optimizer step
    def _optimizer_step(self, step: int) -> None:
        """accum_steps micro-batches' gradients (averaged over processes by DDP), clipped, applied."""
        s = self.s
        lr_now = lr_at(step, lr=s.lr, steps=s.steps, warmup_steps=s.warmup_steps, min_lr_ratio=s.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_now
        micro = [next(self.stream) for _ in range(s.accum_steps)]  # CPU batches
        weights = _loss_weights(micro, s.accum_steps, self.info, self.dev)
        loss = self.forward.run(lambda forward: self._forward_backward(forward, micro, weights),
                                training=True, undo=lambda: self.optimizer.zero_grad(set_to_none=True))
        if s.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.raw.parameters(), s.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        counts = [_count(b) for b in micro]  # CPU tensors: no GPU sync
        self.tokens += sum(c[0] for c in counts) * self.info.world_size
        self.examples += sum(c[1] for c in counts) * self.info.world_size
        self.pending.append((step + 1, loss, lr_now, self.tokens, self.examples))

    def _forward_backward(self, forward, micro: list, weights: list | None) -> torch.Tensor:
        """Backward of each micro-batch's loss times its weight (None: 1 / accum_steps); returns
        this process's part of the step's loss. A micro-batch without targets is skipped, except
        the last one under DDP (every process must take part in the gradient all-reduce)."""
        dev, last = self.dev, len(micro) - 1
        step_loss = torch.zeros((), device=dev)
        for i, cpu_batch in enumerate(micro):
            w = None if weights is None else weights[i]
            if w == 0 and not (self.info.enabled and i == last):
                continue
            batch = _to_device(cpu_batch, dev, non_blocking=dev.type == "cuda")
            # DDP all-reduces the gradients after the last micro-batch only
            sync = self.wrapped.no_sync() if self.info.enabled and i < last else contextlib.nullcontext()
            with sync:
                with _autocast(dev, self.s.precision):
                    loss = _loss_of(forward(**batch))
                self.scaler.scale(loss / self.s.accum_steps if w is None else loss * w).backward()
            if w is None:
                step_loss += loss.detach().float()
            elif w:
                step_loss += loss.detach().float() * w
        return step_loss / self.s.accum_steps if weights is None else step_loss

    # ---- evaluation, progress and checkpoints
    def _after_step(self, done: int) -> None:
        s, h = self.s, self.history
        do_eval = self.val_loader is not None and (done % s.eval_every == 0 or done == s.steps)
        do_save = s.checkpoint_dir is not None and (
            done == s.steps or (s.checkpoint_every is not None and done % s.checkpoint_every == 0))
        flush_every = 1 if self.dev.type == "cpu" else 10  # reading a GPU's loss waits for the GPU
        flushed = len(self.pending) >= flush_every or do_eval or do_save or done == s.steps
        if flushed:
            _flush(self.pending, h, self.info, self.t0, s.precision)
            self.pending = []
        if do_eval:
            self.last_val = _evaluate(self.raw, self.val_loader, s.eval_batches, self.dev, s.precision,
                                      self.info, forward=self.forward.evaluate)
            h.val.append((done, self.last_val))
            self.raw.train()
        if self.pbar is not None and flushed:
            post = {"loss": f"{h.train_loss[-1]:.4f}"}
            if self.last_val is not None:
                post["val"] = f"{self.last_val:.4f}"
            self.pbar.set_postfix(post, refresh=False)
            self.pbar.update(done - self.pbar.n)
        if do_save:
            self._save(done)

    def _save(self, step: int) -> None:
        """Rank 0 writes the checkpoint, with every process's RNG state; all wait for it."""
        rng = ddp.gather_to_main(rng_state(), self.info)
        if self.info.is_main:
            save_checkpoint(self.s.checkpoint_dir, self.raw, self.optimizer, step=step, scaler=self.scaler,
                            history=self.history, extra={"fit": self.s.recorded(self.info.world_size)},
                            rng_states=rng)
        ddp.barrier(self.info)


def _loss_weights(micro: list, accum_steps: int, info, dev) -> list[float] | None:
    """The factor for each micro-batch's mean loss that makes the step's gradient the gradient of
    the mean over all its targets: n_i * world_size / N, with n_i the micro-batch's targets and N
    those of every micro-batch on every process (DDP then averages over processes). None: one
    micro-batch on one process (the model's mean is that already), batches without labels to
    count, or no target at all; the micro-batches then weigh 1 / accum_steps each."""
    if accum_steps == 1 and not info.enabled:
        return None
    counts = [_targets(b) for b in micro]
    known = all(c is not None for c in counts)
    local = torch.tensor([sum(counts) if known else 0, 0 if known else 1], dtype=torch.float64,
                         device=dev if info.enabled else "cpu")
    total, unknown = ddp.sum_over_ranks(local, info).tolist()  # the same on every process
    if unknown or total == 0:
        return None
    return [c * info.world_size / total for c in counts]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _flush(pending, history, info, t0, precision):
    """Move buffered step losses to the history (one device sync), checking they are finite."""
    losses = torch.stack([p[1] for p in pending])
    losses = ddp.mean_over_ranks(losses, info).tolist()
    now = time.perf_counter() - t0
    for (step, _, lr_now, tokens, examples), loss in zip(pending, losses):
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss is {loss} at step {step} (lr {lr_now:.3g}, precision {precision}). "
                "Likely causes: the learning rate is too high (lower lr or lengthen warmup_steps), "
                "fp16 overflow (use precision='bf16' or 'fp32'), or bad data (NaN/inf inputs, labels "
                "outside the vocabulary, a batch whose labels are all ignored (-100)).")
        history.steps.append(step)
        history.train_loss.append(loss)
        history.lr.append(lr_now)
        history.tokens.append(tokens)
        history.examples.append(examples)
        history.time.append(now)


def _grad_scaler(enabled: bool):
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch < 2.3


def _progress_bar(total, initial, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="fit", dynamic_ncols=True)  # "it" = optimizer step


def _warn_if_changed(saved: dict, now: dict) -> None:
    keys = ("batch_size", "accum_steps", "world_size", "seed", "shuffle")
    changed = [f"{k}: {saved[k]} -> {now[k]}" for k in keys if k in saved and saved[k] != now[k]]
    if changed:
        warnings.warn("resuming with other data settings than the checkpoint's (" + ", ".join(changed)
                      + "): the data order differs from an uninterrupted run")
