"""Checkpoints: model weights in safetensors, training state in a small torch file, written
atomically so that a crash at any moment leaves the previous checkpoint intact.

A checkpoint folder holds

    model-0000100.safetensors   the weights after optimizer step 100 (tied weights stored once)
    state-0000100.pt            optimizer, gradient scaler, step, history, extras, and the RNG
                                states of every process (under DDP rank 0 gathers them)
    config.json                 the model's class and configuration, and the fit() settings
    latest.json                 {"step": 100, "model": ..., "state": ...}: written last

Every file is first written to a temporary file in the same folder and then moved over its name
with ``os.replace`` (atomic on POSIX and Windows). ``latest.json`` is replaced only after the files
it names are complete, so a reader always finds a consistent pair; older pairs are deleted after.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

LATEST = "latest.json"
CONFIG = "config.json"


# --------------------------------------------------------------------------------------------
# atomic writes
def _atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then move it into place."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as f:  # "x": never clobber; permissions follow the umask
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text.encode()))


# --------------------------------------------------------------------------------------------
# model configuration
def model_config(model: nn.Module) -> dict | None:
    """The model's configuration as a JSON-able dict (a dataclass ``config``/``cfg``, a Hugging Face
    ``PretrainedConfig``, or a dict), or None when the model has none."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        cfg = getattr(model, "cfg", None)
    if cfg is None:
        return None
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        d = dataclasses.asdict(cfg)
    elif hasattr(cfg, "to_dict"):
        d = cfg.to_dict()
    elif isinstance(cfg, dict):
        d = dict(cfg)
    else:
        return None
    return json.loads(json.dumps(d, default=str))


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


# --------------------------------------------------------------------------------------------
# RNG state (stored as tensors and lists so that torch.load(weights_only=True) reads it back)
def rng_state() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the generators saved by :func:`rng_state` (torch CPU, CUDA, NumPy, Python). The
    CUDA states are restored when this machine has as many GPUs as the saving one; otherwise
    those of the first GPUs are, and a warning says that CUDA random numbers will differ."""
    torch.set_rng_state(state["torch"])
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if not torch.cuda.is_available():
        return  # a run on the CPU draws no CUDA random numbers
    saved, here = state.get("cuda") or [], torch.cuda.device_count()
    if len(saved) == here:
        torch.cuda.set_rng_state_all(saved)
        return
    for i in range(min(len(saved), here)):
        torch.cuda.set_rng_state(saved[i], i)
    warnings.warn(f"the checkpoint holds CUDA RNG states for {len(saved)} GPU(s), this machine has {here}: "
                  f"only those of the first {min(len(saved), here)} GPU(s) were restored, so random numbers "
                  "drawn on the others (e.g. dropout) differ from an uninterrupted run")


def restore_rng_state(state: dict, rank: int = 0) -> None:
    """Set this process's generators from a loaded checkpoint (:func:`load_checkpoint`'s dict):
    process ``rank`` takes the states that process ``rank`` saved. A process the checkpoint has
    no states for (it was written by fewer processes) keeps its own, with a warning."""
    ranks = state.get("rng_ranks") or ([state["rng"]] if state.get("rng") else [])
    if not ranks:
        return
    if rank >= len(ranks):
        warnings.warn(f"the checkpoint holds the RNG states of {len(ranks)} process(es), none for rank {rank}: "
                      "its random numbers (e.g. dropout) differ from an uninterrupted run")
        return
    set_rng_state(ranks[rank])


# --------------------------------------------------------------------------------------------
# save / load
def _unique_tensors(state_dict: dict) -> dict:
    """The state dict on the CPU with tied weights (the same tensor under two names) stored once."""
    out, seen = {}, set()
    for k, v in state_dict.items():
        key = (v.device, v.data_ptr(), tuple(v.shape), v.stride(), v.dtype)
        if key in seen:
            continue
        seen.add(key)
        out[k] = v.detach().to("cpu", copy=True).contiguous()
    return out


def save_checkpoint(directory: str | os.PathLike, model: nn.Module, optimizer=None, *, step: int = 0,
                    scaler=None, history=None, extra: dict | None = None, keep: int = 1,
                    rng_states: list[dict] | None = None) -> Path:
    """Write a checkpoint of ``model`` (and optionally ``optimizer``, gradient ``scaler``,
    ``history``, JSON-able ``extra``) after optimizer step ``step`` into ``directory``.

    ``rng_states``: every process's :func:`rng_state`, rank by rank (default: this process's).
    Keeps the newest ``keep`` checkpoints. Returns the path of the weights file.
    """
    from safetensors.torch import save as save_bytes

    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = _unwrap(model)
    weights = directory / f"model-{step:07d}.safetensors"
    state_file = directory / f"state-{step:07d}.pt"

    tensors = _unique_tensors(model.state_dict())
    _atomic_write(weights, lambda f: f.write(save_bytes(tensors, metadata={"step": str(step)})))
    state = {
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": rng_states[0] if rng_states else rng_state(),
        "rng_ranks": list(rng_states) if rng_states else None,
        "history": history.to_dict() if history is not None else None,
        "extra": json.loads(json.dumps(extra or {}, default=str)),
    }
    _atomic_write(state_file, lambda f: torch.save(state, f))
    config = {"model_class": f"{type(model).__module__}.{type(model).__qualname__}",
              "model_config": model_config(model),
              "shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
              "extra": state["extra"]}
    _atomic_write_text(directory / CONFIG, json.dumps(config, indent=1))
    _atomic_write_text(directory / LATEST, json.dumps(
        {"step": int(step), "model": weights.name, "state": state_file.name}))
    # prune older checkpoints (only after latest.json points at the new pair)
    steps = sorted({int(p.stem.split("-")[1]) for p in directory.glob("model-*.safetensors")})
    for old in steps[:-keep]:
        for p in (directory / f"model-{old:07d}.safetensors", directory / f"state-{old:07d}.pt"):
            if p.exists():
                p.unlink()
    return weights


def latest_checkpoint(directory: str | os.PathLike) -> dict | None:
    """``{"step", "model", "state"}`` (paths) of the newest complete checkpoint, or None."""
    directory = Path(directory)
    try:
        info = json.loads((directory / LATEST).read_text())
    except FileNotFoundError:
        return None
    info["model"] = directory / info["model"]
    info["state"] = directory / info["state"]
    return info


def check_compatible(model: nn.Module, weights: str | os.PathLike, stored_config: dict | None = None) -> None:
    """Raise a ValueError naming every difference when ``weights`` do not fit ``model``."""
    from safetensors import safe_open

    model = _unwrap(model)
    sd = model.state_dict()
    with safe_open(str(weights), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    problems = []
    for k, shape in shapes.items():
        if k not in sd:
            problems.append(f"{k}: in the checkpoint, not in the model")
        elif tuple(sd[k].shape) != shape:
            problems.append(f"{k}: checkpoint {shape}, model {tuple(sd[k].shape)}")
    # keys the file lacks are fine only if they share storage with a stored key (tied weights)
    by_ptr: dict = {}
    for k, v in sd.items():
        by_ptr.setdefault((v.device, v.untyped_storage().data_ptr()), []).append(k)
    for names in by_ptr.values():
        if not any(n in shapes for n in names):
            problems.extend(f"{n}: in the model, not in the checkpoint" for n in names)
    if not problems:
        return
    msg = [f"checkpoint {weights} does not fit this model ({type(model).__name__})."]
    current = model_config(model)
    if stored_config and current:
        diffs = [f"{k}: checkpoint {stored_config.get(k)!r}, model {current.get(k)!r}"
                 for k in sorted(set(stored_config) | set(current))
                 if not k.startswith("_") and k != "transformers_version"
                 and stored_config.get(k) != current.get(k)]
        if diffs:
            msg.append("Configuration differences: " + "; ".join(diffs[:12]) + ".")
    msg.append("Parameter differences: " + "; ".join(problems[:12])
               + (f" (and {len(problems) - 12} more)" if len(problems) > 12 else "") + ".")
    msg.append("Build the model with the checkpoint's configuration (its config.json), "
               "or use another checkpoint folder.")
    raise ValueError(" ".join(msg))


_KERNEL_CHOICES = ("fused", "foreach", "capturable")


def _with_own_kernels(saved: dict, optimizer) -> dict:
    """The saved optimizer state with ``optimizer``'s own kernel choices (fused / foreach /
    capturable). Those belong to the device the run is on, not to the one that wrote the
    checkpoint: ``load_state_dict`` would otherwise bring them along, e.g. a CPU checkpoint
    resumed on a GPU would drop the fused AdamW kernel that fp16's GradScaler relies on
    (``step`` then fails with "Expected grad_scale and found_inf to be None")."""
    groups = [dict(g) for g in saved["param_groups"]]
    for group, own in zip(groups, optimizer.param_groups):
        for key in _KERNEL_CHOICES:
            if key in own:
                group[key] = own[key]
    return {**saved, "param_groups": groups}


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer=None, *, scaler=None,
                    map_location="cpu") -> dict:
    """Load weights (and, if given, ``optimizer``/``scaler`` state) from a checkpoint folder
    (its newest checkpoint) or from a ``.safetensors`` file.

    Returns a dict with "step", "history" (a dict or None), "rng" (rank 0's RNG states),
    "rng_ranks" (every process's, or None; see :func:`restore_rng_state`) and "extra". A checkpoint of a
    model with another configuration raises a ValueError that names the differences. The
    optimizer keeps its own kernel choice (fused or not), so a run may resume on another device.
    """
    from safetensors.torch import load_model

    path = Path(path)
    stored_config = None
    if path.is_dir():
        info = latest_checkpoint(path)
        if info is None:
            raise FileNotFoundError(f"no checkpoint in {path} (it has no {LATEST})")
        weights, state_file = info["model"], info["state"]
        if (path / CONFIG).exists():
            stored_config = json.loads((path / CONFIG).read_text()).get("model_config")
    elif path.suffix == ".safetensors" and path.exists():
        weights = path
        state_file = path.with_name(path.name.replace("model-", "state-")).with_suffix(".pt")
        state_file = state_file if state_file.exists() and state_file != path else None
        if (path.parent / CONFIG).exists():
            stored_config = json.loads((path.parent / CONFIG).read_text()).get("model_config")
    else:
        raise FileNotFoundError(f"no checkpoint at {path}: it is neither a checkpoint folder nor a .safetensors file")
    model = _unwrap(model)
    check_compatible(model, weights, stored_config)
    device = next(model.parameters()).device
    load_model(model, str(weights), strict=False, device=str(device))
    state = torch.load(state_file, map_location=map_location, weights_only=True) if state_file else {}
    if optimizer is not None:
        if not state.get("optimizer"):
            raise ValueError(f"{weights}: the checkpoint holds no optimizer state")
        optimizer.load_state_dict(_with_own_kernels(state["optimizer"], optimizer))
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return {"step": state.get("step", 0), "history": state.get("history"), "rng": state.get("rng"),
            "rng_ranks": state.get("rng_ranks"), "extra": state.get("extra", {})}
