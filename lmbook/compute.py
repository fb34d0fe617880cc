"""Training-compute arithmetic: how many FLOPs, tokens, seconds and bytes a training run needs.

    training_flops(params, tokens)                  C ~ 6 N D            (Kaplan et al. 2020)
    tokens_per_parameter(params, tokens)            D / N
    chinchilla_tokens(params, tokens_per_param=20)  D = 20 N             (Hoffmann et al. 2022)
    chinchilla_optimal(flops, tokens_per_param=20)  (N, D) with 6 N D = C and D = 20 N
    transformer_params(n_layer, d_model)            N ~ 12 n_layer d_model^2 (Kaplan et al. 2020)
    training_seconds(flops, peak_flops, utilization)  C / (peak x utilisation)
    bytes_per_parameter(precision, optimizer)       weights, gradients, master copy, optimizer states
    training_memory(params, precision, optimizer)   bytes of those model states (no activations)
    max_parameters(memory_bytes, precision, optimizer)  the most parameters whose states fit
    weight_memory(params, dtype)                    bytes of the weights alone (inference)
    model_state_bytes(model, optimizer=None)        the same states measured in a real torch model
    model_flops_utilization(params, tokens_per_s, peak_flops)  6 N x tokens/s / peak (MFU)
    ACCELERATORS                                    published memory and peak FLOP/s of three GPUs
    isoflop_runs()                                  chapter 9's measured sweep (benchmarks/isoflop.py)
    isoflop_optimum(params, loss)                   the vertex of a parabola in log N (one budget)
    fit_isoflop(budget, params, loss)               that vertex for every budget of a sweep
    power_law(x, y)                                 y = a x^b by least squares in log-log
    format_duration(seconds)                        "3.2 hours", "25 years"

Every function takes plain numbers; the first four also take NumPy arrays and pandas Series.
Bad input (negative, zero, NaN, a percentage where a fraction is expected) is a ValueError that
says what to pass instead.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["training_flops", "tokens_per_parameter", "chinchilla_tokens", "chinchilla_optimal",
           "transformer_params", "training_seconds", "BytesPerParameter", "bytes_per_parameter",
           "training_memory", "max_parameters", "weight_memory", "model_state_bytes",
           "model_flops_utilization", "Accelerator", "ACCELERATORS", "DTYPE_BYTES",
           "CHINCHILLA_TOKENS_PER_PARAM", "format_duration", "isoflop_runs", "isoflop_optimum", "fit_isoflop",
           "power_law"]

CHINCHILLA_TOKENS_PER_PARAM = 20.0  # Chinchilla: 70B parameters, 1.4T tokens (Hoffmann et al. 2022)
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int4": 0.5}


def _positive(name: str, value, *, hint: str = ""):
    """Check that ``value`` (a number or an array of numbers) is finite and > 0; return it."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, str):
        raise TypeError(f"{name} must be a number (or an array of numbers), got {value!r}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number (or an array of numbers), got {type(value).__name__}") from None
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN (a missing value): drop those rows first, "
                         f"e.g. df.dropna(subset=[...])")
    if not np.isfinite(arr).all() or (arr <= 0).any():
        bad = arr[~np.isfinite(arr) | (arr <= 0)].flat[0]
        raise ValueError(f"{name} must be positive and finite, got {bad!r}{hint}")
    return value


# --------------------------------------------------------------------------- compute and data
def training_flops(params, tokens):
    """Training compute of a dense Transformer, C ~ 6 N D floating-point operations for N
    parameters and D training tokens (Kaplan et al. 2020, section 2.1): each parameter does one
    multiply and one add per token in the forward pass (2 N D) and twice that in the backward
    pass (4 N D). Attention over the context is left out: small next to 6 N when the model width
    is much larger than the context length / 12."""
    return 6.0 * _positive("params", params) * _positive("tokens", tokens)


def tokens_per_parameter(params, tokens):
    """D / N: how many training tokens each parameter saw."""
    return _positive("tokens", tokens) / _positive("params", params)


def chinchilla_tokens(params, tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM):
    """Training tokens of a compute-optimal run for ``params`` parameters, by the rule of thumb
    that Chinchilla made famous: about 20 tokens per parameter (Hoffmann et al. 2022)."""
    return _positive("params", params) * _positive("tokens_per_param", tokens_per_param)


def chinchilla_optimal(flops, tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM):
    """``(N, D)``: the parameters and tokens that spend ``flops`` with ``D = tokens_per_param * N``
    and ``6 N D = flops``, i.e. ``N = sqrt(flops / (6 * tokens_per_param))``."""
    _positive("flops", flops)
    _positive("tokens_per_param", tokens_per_param)
    n = np.sqrt(flops / (6.0 * tokens_per_param))
    if isinstance(n, np.floating):
        n = float(n)
    return n, n * tokens_per_param


def transformer_params(n_layer: int, d_model: int) -> int:
    """Non-embedding parameters of a GPT-style Transformer with a 4x MLP, ``12 n_layer d_model^2``
    (Kaplan et al. 2020, eq. 2.1: 4 d^2 in attention, 8 d^2 in the MLP; biases and layer norms,
    about 13 d per layer, are left out)."""
    for name, v in (("n_layer", n_layer), ("d_model", d_model)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return 12 * int(n_layer) * int(d_model) ** 2


def training_seconds(flops, peak_flops, utilization):
    """Wall-clock seconds to do ``flops`` on hardware with ``peak_flops`` floating-point operations
    per second (the datasheet figure), of which a fraction ``utilization`` (0 < u <= 1; large
    training runs report 0.3-0.6 of peak as "model FLOPs utilisation") does useful work."""
    _positive("flops", flops)
    _positive("peak_flops", peak_flops, hint=" (FLOP/s, e.g. 989e12 for an H100's dense bf16 peak)")
    u = np.asarray(_positive("utilization", utilization), dtype=float)
    if (u > 1).any():
        raise ValueError(f"utilization is a fraction of the peak between 0 and 1, got {utilization!r}"
                         + (f"; for {float(u.max()):g}% pass {float(u.max()) / 100:g}" if (u <= 100).all() else ""))
    return flops / (peak_flops * utilization)


def model_flops_utilization(params, tokens_per_second, peak_flops):
    """Model FLOPs utilisation (Chowdhery et al. 2022): the fraction of the hardware's peak that
    the model's own ``6 N`` FLOPs per token fill at the measured ``tokens_per_second`` (per
    device, with ``peak_flops`` per device). Recomputed activations do not count as useful."""
    useful = training_flops(params, tokens_per_second)
    return useful / _positive("peak_flops", peak_flops, hint=" (FLOP/s of one device)")


# --------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class BytesPerParameter:
    """Bytes that training keeps per parameter, by role (activations not included)."""
    weights: float
    gradients: float
    master_weights: float
    optimizer_states: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.master_weights + self.optimizer_states


# bytes of optimizer state per parameter: AdamW's two fp32 moments; 8-bit AdamW's two 1-byte
# moments (Dettmers et al. 2022; their block-wise scales add a fraction of a byte, left out)
_OPTIMIZER_STATES = {"adamw": 8, "adam": 8, "adamw-8bit": 2, "sgd-momentum": 4, "sgd": 0}
_PRECISIONS = ("fp32", "mixed")


def bytes_per_parameter(precision: str = "mixed", optimizer: str = "adamw") -> BytesPerParameter:
    """Bytes per parameter of the model states that training keeps in memory.

    ``precision``:
      "fp32"   weights and gradients in fp32 (4 + 4 bytes);
      "mixed"  mixed-precision training as ZeRO accounts it (Rajbhandari et al. 2020): fp16/bf16
               weights and gradients (2 + 2) plus an fp32 master copy of the weights (4).
    ``optimizer``: "adamw"/"adam" keep two fp32 moments (8 bytes), "adamw-8bit" two 8-bit ones
    (2 bytes; bitsandbytes, Dettmers et al. 2022), "sgd-momentum" one fp32 (4), "sgd" none. AdamW needs 16 bytes per parameter either way; mixed precision saves activation
    memory and time, not model-state memory."""
    p = str(precision).lower()
    if p not in _PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use 'fp32' or 'mixed' "
                         "(fp16/bf16 weights and gradients with an fp32 master copy)")
    o = str(optimizer).lower()
    if o not in _OPTIMIZER_STATES:
        raise ValueError(f"unknown optimizer {optimizer!r}: use one of {', '.join(_OPTIMIZER_STATES)}")
    states = float(_OPTIMIZER_STATES[o])
    if p == "fp32":
        return BytesPerParameter(weights=4.0, gradients=4.0, master_weights=0.0, optimizer_states=states)
    return BytesPerParameter(weights=2.0, gradients=2.0, master_weights=4.0, optimizer_states=states)


def training_memory(params, precision: str = "mixed", optimizer: str = "adamw"):
    """Bytes of weights, gradients, master weights and optimizer states for ``params`` parameters.
    Activations, temporary buffers and fragmentation come on top (they grow with batch size and
    context length)."""
    return _positive("params", params) * bytes_per_parameter(precision, optimizer).total


def max_parameters(memory_bytes, precision: str = "mixed", optimizer: str = "adamw"):
    """The most parameters whose training states fit in ``memory_bytes`` (an upper bound: no room
    is left for activations)."""
    return _positive("memory_bytes", memory_bytes) / bytes_per_parameter(precision, optimizer).total


def weight_memory(params, dtype: str = "bf16"):
    """Bytes of the weights alone, stored as ``dtype`` ("fp32", "fp16", "bf16", "int8", "int4"):
    the floor for running a model (inference), before activations and the attention KV cache."""
    key = str(dtype).lower()
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPE_BYTES)}")
    return _positive("params", params) * DTYPE_BYTES[key]


def model_state_bytes(model, optimizer=None) -> dict[str, int]:
    """Bytes a torch model and its optimizer actually hold: ``{"weights", "gradients",
    "optimizer_states", "parameters"}``. Tied parameters count once; gradients only where
    ``.grad`` exists (after a backward pass); optimizer states are every tensor in
    ``optimizer.state`` (they exist after the first ``step()``)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())  # unique: a tied matrix appears once
    out = {"parameters": sum(p.numel() for p in params),
           "weights": sum(p.numel() * p.element_size() for p in params),
           "gradients": sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None),
           "optimizer_states": 0}
    if optimizer is not None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        out["optimizer_states"] = sum(t.numel() * t.element_size() for state in optimizer.state.values()
                                      for t in state.values() if isinstance(t, torch.Tensor))
    return out


# --------------------------------------------------------------------------- hardware
@dataclass(frozen=True)
class Accelerator:
    """A GPU as its datasheet describes it: memory in bytes, dense 16-bit tensor-core peak in
    FLOP/s (without the 2:4 sparsity that datasheets also quote), and the bibliography key."""
    name: str
    memory_bytes: float
    peak_flops: float
    cite: str


ACCELERATORS = {
    # A100 datasheet: 80 GB HBM2e (SXM); BF16 tensor core 312 TFLOPS dense (624 with sparsity)
    "A100": Accelerator("NVIDIA A100 80GB SXM", 80e9, 312e12, "nvidia2020a100"),
    # T4 datasheet: 16 GB GDDR6; "mixed precision (FP16/FP32)" 65 TFLOPS
    "T4": Accelerator("NVIDIA T4", 16e9, 65e12, "nvidia2018t4"),
    # H100 SXM datasheet: 80 GB HBM3; BF16 tensor core 1,979 TFLOPS with sparsity, half without
    "H100": Accelerator("NVIDIA H100 SXM", 80e9, 989e12, "nvidia2022h100"),
}


def format_duration(seconds) -> str:
    """A duration in the largest unit that keeps it at least 1: seconds, minutes, hours, days,
    years (365.25 days), with three significant digits."""
    s = float(_positive("seconds", seconds))
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60),
                       ("seconds", 1)):
        if s >= size or unit == "seconds":
            v = s / size
            text = f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
            return f"{text} {unit[:-1] if text == '1' else unit}"


# --------------------------------------------------------------------------- scaling laws
def isoflop_runs():
    """The IsoFLOP sweep that chapter 9 fits, one row per run (budget, width, parameters N in
    weight products, steps, batch size, tokens, FLOPs, held-out loss, settings, CPU seconds), as
    ``benchmarks/isoflop.py`` wrote it to ``lmbook/resources/isoflop_runs.csv``."""
    from importlib.resources import files

    import pandas as pd

    with files("lmbook").joinpath("resources", "isoflop_runs.csv").open("r", encoding="utf-8") as f:
        return pd.read_csv(f)


def isoflop_optimum(params, loss) -> tuple[float, float]:
    """``(N_opt, loss_opt)``: the vertex of the parabola ``loss = a (log10 N)^2 + b log10 N + c``
    fitted by least squares to runs of one compute budget (Hoffmann et al. 2022, approach 2).
    Needs at least three sizes; a parabola that opens downwards (no minimum) is a ValueError."""
    n = np.asarray(_positive("params", params), dtype=float).ravel()
    y = np.asarray(loss, dtype=float).ravel()
    if n.size != y.size:
        raise ValueError(f"params and loss differ in length ({n.size} vs {y.size})")
    if np.unique(n).size < 3:
        raise ValueError("a parabola needs runs of at least three different sizes per budget")
    if not np.isfinite(y).all():
        raise ValueError("loss contains NaN or infinite values: drop the failed runs first")
    a, b, c = np.polyfit(np.log10(n), y, 2)
    if a <= 0:
        raise ValueError("the fitted parabola has no minimum (it opens downwards): the sizes do "
                         "not bracket the optimum; add smaller and larger models")
    x = -b / (2 * a)
    return float(10 ** x), float(c - b * b / (4 * a))


def fit_isoflop(budget, params, loss):
    """One row per compute budget: ``budget``, ``runs``, ``N_opt`` and ``loss_opt`` from
    :func:`isoflop_optimum`, and ``inside``: whether ``N_opt`` lies within the sizes trained
    (outside, it is an extrapolation). Returns a pandas DataFrame sorted by budget."""
    import pandas as pd

    df = pd.DataFrame({"budget": np.asarray(budget, dtype=float).ravel(),
                       "params": np.asarray(params, dtype=float).ravel(),
                       "loss": np.asarray(loss, dtype=float).ravel()})
    rows = []
    for c, g in df.groupby("budget", sort=True):
        n_opt, l_opt = isoflop_optimum(g.params, g.loss)
        rows.append({"budget": c, "runs": len(g), "N_opt": n_opt, "loss_opt": l_opt,
                     "inside": bool(g.params.min() <= n_opt <= g.params.max())})
    return pd.DataFrame(rows)


def power_law(x, y) -> tuple[float, float]:
    """``(a, b)`` with ``y ~ a x^b``: a straight line through ``(log x, log y)`` by least squares.
    The exponent of ``N_opt`` against compute is Chinchilla's a: 0.50, 0.49 and 0.46 by their
    three approaches (the IsoFLOP one: 0.49; Hoffmann et al. 2022, Table 2)."""
    lx = np.log(np.asarray(_positive("x", x), dtype=float).ravel())
    ly = np.log(np.asarray(_positive("y", y), dtype=float).ravel())
    if lx.size != ly.size:
        raise ValueError(f"x and y differ in length ({lx.size} vs {ly.size})")
    if np.unique(lx).size < 2:
        raise ValueError("a power law needs at least two different x values")
    b, log_a = np.polyfit(lx, ly, 1)
    return float(np.exp(log_a)), float(b)
