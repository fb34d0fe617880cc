"""What every checker shares: running named cases, calling the reader's code, and saying in plain
words how a result differs from the reference (shape, dtype, the largest difference and where,
and which known mistake the result matches)."""
from __future__ import annotations

import functools

import torch

__all__ = ["checker", "run_cases", "call", "expect_tensor", "expect_close", "diagnose"]


def checker(check):
    """Decorator: the checker draws its inputs from torch's RNG seeded with 0, and leaves the
    global RNG as it was, so a checker never changes what a notebook samples afterwards."""
    @functools.wraps(check)
    def wrapped(fn) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return check(fn)
    return wrapped


def run_cases(name: str, cases) -> None:
    """Run ``cases`` (a list of ``(label, function)``), each after seeding torch with 0; the first
    failure raises AssertionError naming the checker and the case; if all pass, print one line."""
    for label, case in cases:
        torch.manual_seed(0)
        try:
            case()
        except AssertionError as e:
            raise AssertionError(f"{name}, case '{label}': {e}") from None
    print(f"\u2713 {name}: {len(cases)} cases passed")


def call(fn, *args, **kwargs):
    """The reader's ``fn(*args, **kwargs)``; an exception it raises becomes an AssertionError that
    says which inputs it was called with."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any error of the reader's code is a failed case
        shapes = ", ".join(_describe(a) for a in (*args, *kwargs.values()))
        raise AssertionError(f"your function raised {type(e).__name__}: {e}  (called with {shapes})") from e


def _describe(a) -> str:
    if isinstance(a, torch.Tensor):
        return f"tensor {tuple(a.shape)} {str(a.dtype).replace('torch.', '')}"
    return repr(a) if len(repr(a)) < 40 else type(a).__name__


def expect_tensor(got, shape, dtype=None, what: str = "the result") -> torch.Tensor:
    """``got`` must be a tensor of ``shape`` (and ``dtype`` when given)."""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what} should be a torch.Tensor, got {type(got).__name__}")
    if tuple(got.shape) != tuple(shape):
        raise AssertionError(f"wrong shape: expected {tuple(shape)}, got {tuple(got.shape)}")
    if dtype is not None and got.dtype != dtype:
        raise AssertionError(f"wrong dtype: expected {dtype}, got {got.dtype} (keep the input's dtype)")
    return got


def diagnose(got: torch.Tensor, mistakes: dict, atol: float = 1e-5) -> str:
    """' It matches <explanation>.' for the first known mistake whose result equals ``got``."""
    for explanation, wrong in mistakes.items():
        wrong = wrong() if callable(wrong) else wrong
        if wrong.shape == got.shape and torch.allclose(got.double(), wrong.double(), atol=atol, equal_nan=True):
            return f" It matches {explanation}."
    return ""


def _where(flat_index, shape) -> tuple:
    return tuple(int(i) for i in torch.unravel_index(flat_index, shape))


def expect_close(got: torch.Tensor, ref: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-4,
                 mistakes: dict | None = None, what: str = "values") -> None:
    """``got`` must equal ``ref`` within tolerance (NaN or inf where the reference is finite is
    reported as such); on failure name the largest difference, where it is, and a matching mistake."""
    g, r = got.detach().double(), ref.detach().double()
    bad_nan = ~torch.isfinite(g) & torch.isfinite(r)
    if bad_nan.any():
        idx = _where(bad_nan.flatten().nonzero()[0, 0], g.shape)
        raise AssertionError(f"wrong {what}: {g[idx].item()} at index {idx} where {r[idx].item():.4g} is "
                             "expected (overflow? exp of a large number, or log of 0)."
                             + diagnose(got, mistakes or {}))
    diff = (g - r).abs().nan_to_num(0.0)
    ok = diff <= atol + rtol * r.abs().nan_to_num(0.0)
    if not ok.all():
        idx = _where((diff * ~ok).flatten().argmax(), diff.shape)
        raise AssertionError(f"wrong {what}: max abs difference {diff[idx].item():.3g} at "
                             f"index {idx} (got {g[idx].item():.6g}, expected {r[idx].item():.6g})."
                             + diagnose(got, mistakes or {}))
