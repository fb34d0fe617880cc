"""``fit``: one training loop for every chapter, on a GPU when there is one, else on the CPU."""
from __future__ import annotations

import contextlib
import math
import numbers
import time
import warnings
from collections.abc import Mapping

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset

from lmbook.device import pick_device
from lmbook.train import distributed as ddp
from lmbook.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
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
def evaluate(model: nn.Module, data, *, batch_size: int = 32, max_batches: int | None = None,
             collate_fn=None, precision: str = "fp32", seed: int = 0) -> float:
    """Mean loss (weighted by examples) of ``model`` over ``data`` (a Dataset of dict examples, or
    a DataLoader) on the model's device, using at most ``max_batches`` batches of a seeded shuffle
    (the same batches on every call; None: all). In a DDP process group each process evaluates
    its shard and the result is averaged over all of them."""
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
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of loss * examples, examples)
    per_rank = None if max_batches is None else max(1, math.ceil(max_batches / info.world_size))
    for i, batch in enumerate(loader):
        if per_rank is not None and i >= per_rank:
            break
        n = _count(batch)[1] or 1  # before the copy: no GPU sync
        batch = _to_device(batch, device, non_blocking=device.type == "cuda")
        with _autocast(device, precision):
            loss = _loss_of(forward(**batch))
        total[0] += loss.double() * n
        total[1] += n
    total = ddp.sum_over_ranks(total, info)
    model.train(was_training)
    if total[1] == 0:
        raise ValueError("the validation data yielded no batches")
    return float(total[0] / total[1])


# --------------------------------------------------------------------------------------------
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
      accum_steps   micro-batches whose gradients are summed before each optimizer step.

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
                    (default: the preset's; "all": every batch of val_data).

    Hardware
      preset        a name ("cpu", "t4", "large"), a Preset, or None for ``$LMBOOK_PRESET`` or the
                    hardware's (see lmbook.train.get_preset); it fills every argument left as None.
      device        a torch.device (e.g. from ``lmbook.setup()``) or "auto", "cpu", "cuda", "cuda:N",
                    "mps" (default: ``$LMBOOK_DEVICE``, else the best one present); under torchrun
                    each process takes cuda:LOCAL_RANK.
      precision     "auto" (bf16 autocast on GPUs that have it, fp16 + gradient scaler on older
                    ones such as the T4, fp32 on CPU/MPS), "fp32", "bf16" or "fp16".
      compile       torch.compile the model: "auto" (on CUDA with Triton; falls back to eager if
                    compilation fails), True or False.

    Checkpoints and reproducibility
      checkpoint_dir    write checkpoints there (safetensors weights + optimizer/RNG state, atomic)
                        every ``checkpoint_every`` steps and after the last step.
      checkpoint_every  steps between checkpoints (None: only at the end).
      resume            continue from the newest checkpoint in ``checkpoint_dir`` if there is one:
                        same data order, optimizer and RNG state, so the result equals an
                        uninterrupted run (under DDP every process resumes with rank 0's RNG
                        state; a collate_fn's own random generator is not saved).
      seed          seeds the data order and torch's global RNG (dropout); the model's initial
                    weights are the caller's business (``lmbook.setup(seed)`` before building it).
      progress      show a tqdm progress bar with the loss (rank 0 only).

    Returns a :class:`History`. Raises NonFiniteLossError if the loss becomes NaN or infinite.
    Under ``torchrun --nproc_per_node=N`` the same call trains with DistributedDataParallel.
    """
    p = get_preset(preset)
    batch_size = p.batch_size if batch_size is None else batch_size
    lr = p.lr if lr is None else lr
    accum_steps = p.accum_steps if accum_steps is None else accum_steps
    eval_every = p.eval_every if eval_every is None else eval_every
    eval_batches = p.eval_batches if eval_batches is None else eval_batches
    eval_batches = None if eval_batches == "all" else eval_batches
    if eval_batches is not None and (not isinstance(eval_batches, int) or eval_batches < 1):
        raise ValueError(f"eval_batches must be a positive integer or 'all', got {eval_batches!r}")
    precision = p.precision if precision is None else precision
    compile = p.compile if compile is None else compile
    batch_size, accum_steps, eval_every = (_positive_int(n, v) for n, v in (
        ("batch_size", batch_size), ("accum_steps", accum_steps), ("eval_every", eval_every)))
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be between 0 and 1, got {min_lr_ratio!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be positive or None, got {grad_clip!r}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every!r}")
    if steps is not None and epochs is not None:
        raise ValueError("give steps or epochs, not both")

    dev = ddp.rank_device(pick_device(str(device) if isinstance(device, torch.device) else device))
    precision = resolve_precision(precision, dev)
    use_compile = resolve_compile(compile, dev)
    compile_auto = isinstance(compile, str) and compile.lower() == "auto"
    info = ddp.setup(dev)
    pbar = None
    try:
        batches = _Batches(train_data, batch_size=batch_size, collate_fn=collate_fn, shuffle=shuffle,
                           seed=seed, info=info, pin=dev.type == "cuda", num_workers=num_workers)
        if steps is None and epochs is not None:
            if batches.per_epoch is None:
                raise ValueError("epochs needs data of known length; give steps instead")
            if not epochs > 0:
                raise ValueError(f"epochs must be positive, got {epochs!r}")
            steps = max(1, int(epochs * batches.per_epoch) // accum_steps)
        steps = _positive_int("steps", p.steps if steps is None else steps)
        if warmup_steps is None:
            warmup_steps = min(p.warmup_steps, steps // 10)
        val_loader = _val_loader(val_data, batch_size, collate_fn, seed, info) if val_data is not None else None

        model.to(dev)
        raw = model
        n_params = sum(q.numel() for q in raw.parameters())
        if n_params == 0:
            raise ValueError("the model has no parameters to train")
        optimizer = make_optimizer(raw, lr, weight_decay, betas)
        scaler = _grad_scaler(precision == "fp16")
        torch.manual_seed(seed + info.rank)

        history = History()
        start = 0
        settings = {"batch_size": batch_size, "accum_steps": accum_steps, "world_size": info.world_size,
                    "seed": seed, "steps": steps, "lr": lr, "warmup_steps": warmup_steps,
                    "min_lr_ratio": min_lr_ratio, "weight_decay": weight_decay, "betas": list(betas),
                    "grad_clip": grad_clip, "shuffle": shuffle}
        if checkpoint_dir is not None and resume and latest_checkpoint(checkpoint_dir) is not None:
            state = load_checkpoint(checkpoint_dir, raw, optimizer, scaler=scaler)  # RNG states stay on the CPU
            start = state["step"]
            if state["history"]:
                history = History.from_dict(state["history"])
            if state["rng"] is not None:
                set_rng_state(state["rng"])
            _warn_if_changed(state["extra"].get("fit", {}), settings)
        history.info.update(device=str(dev), precision=precision, compile=use_compile, preset=p.name,
                            parameters=n_params, global_batch=batch_size * accum_steps * info.world_size,
                            resumed_from=start if start else None, **settings)

        wrapped = nn.parallel.DistributedDataParallel(
            raw, device_ids=[dev.index] if dev.type == "cuda" else None) if info.enabled else raw
        forward = torch.compile(wrapped) if use_compile else wrapped
        eval_forward = forward if not info.enabled else (torch.compile(raw) if use_compile else raw)
        stream = batches.stream(start * accum_steps)
        flush_every = 1 if dev.type == "cpu" else 10  # reading a GPU's loss waits for the GPU
        pending = []
        pbar = _progress_bar(steps, start, progress and info.is_main)
        t0 = time.perf_counter() - history.wall_time
        tokens = history.tokens[-1] if history.tokens else 0
        examples = history.examples[-1] if history.examples else 0
        last_val = history.final_val

        def save(step):
            if info.is_main:
                save_checkpoint(checkpoint_dir, raw, optimizer, step=step, scaler=scaler, history=history,
                                extra={"fit": settings})
            ddp.barrier(info)

        if start >= steps:
            warnings.warn(f"the checkpoint in {checkpoint_dir} is at step {start} >= steps={steps}: "
                          "nothing to train (pass a larger steps to continue)")
        raw.train()
        for step in range(start, steps):
            lr_now = lr_at(step, lr=lr, steps=steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            step_loss = torch.zeros((), device=dev)
            n_tok = n_ex = 0
            for micro in range(accum_steps):
                cpu_batch = next(stream)
                batch_tokens, batch_examples = _count(cpu_batch)  # before the copy: no GPU sync
                n_tok, n_ex = n_tok + batch_tokens, n_ex + batch_examples
                batch = _to_device(cpu_batch, dev, non_blocking=dev.type == "cuda")
                last = micro == accum_steps - 1
                sync = wrapped.no_sync() if info.enabled and not last else contextlib.nullcontext()
                try:
                    loss = _forward_backward(forward, batch, dev, precision, scaler, accum_steps, sync)
                except (ValueError, TypeError, NonFiniteLossError):
                    raise
                except Exception as e:  # torch.compile failed: fall back to eager (auto only)
                    if not (use_compile and compile_auto and step == start and micro == 0):
                        raise
                    warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); "
                                  "training without compilation")
                    optimizer.zero_grad(set_to_none=True)
                    forward = wrapped
                    eval_forward = raw
                    history.info["compile"] = False
                    loss = _forward_backward(forward, batch, dev, precision, scaler, accum_steps, sync)
                step_loss += loss.detach().float()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(raw.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            tokens += n_tok * info.world_size
            examples += n_ex * info.world_size
            pending.append((step + 1, step_loss / accum_steps, lr_now, tokens, examples))

            done = step + 1
            do_eval = val_loader is not None and (done % eval_every == 0 or done == steps)
            do_save = checkpoint_dir is not None and (
                done == steps or (checkpoint_every is not None and done % checkpoint_every == 0))
            flushed = len(pending) >= flush_every or do_eval or do_save or done == steps
            if flushed:
                _flush(pending, history, info, t0, precision)
                pending = []
            if do_eval:
                last_val = _evaluate(raw, val_loader, eval_batches, dev, precision, info, forward=eval_forward)
                history.val.append((done, last_val))
                raw.train()
            if pbar is not None and flushed:
                post = {"loss": f"{history.train_loss[-1]:.4f}"}
                if last_val is not None:
                    post["val"] = f"{last_val:.4f}"
                pbar.set_postfix(post, refresh=False)
                pbar.update(done - pbar.n)
            if do_save:
                save(done)
        raw.eval()
        return history
    finally:
        if pbar is not None:
            pbar.close()
        ddp.teardown(info)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _forward_backward(forward, batch, dev, precision, scaler, accum_steps, sync):
    with sync:
        with _autocast(dev, precision):
            out = forward(**batch)
        loss = _loss_of(out)
        scaler.scale(loss / accum_steps).backward()
    return loss


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
