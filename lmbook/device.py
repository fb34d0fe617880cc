"""Which device to compute on: CUDA, then Apple's MPS, then the CPU; ``$LMBOOK_DEVICE`` overrides."""
from __future__ import annotations

import os

import torch

__all__ = ["pick_device"]

KNOWN = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str | None = None) -> torch.device:
    """Return the device named by ``name`` or ``$LMBOOK_DEVICE``, or the best one present.

    ``name`` may be "auto", "cpu", "cuda", "cuda:N" or "mps". Asking for a device that this
    machine does not have raises a ValueError that says what is there instead.
    """
    name = (name or os.environ.get("LMBOOK_DEVICE") or "auto").strip().lower()
    if name.split(":")[0] not in KNOWN:
        raise ValueError(f"unknown device {name!r}: use one of {', '.join(KNOWN)} (or cuda:N)")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} was asked for, but this torch ({torch.__version__}) sees no CUDA GPU; "
            "use device='cpu' (or 'auto'), or install a CUDA build of torch on a machine with a GPU"
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for, but no Apple GPU is available; use 'cpu' or 'auto'")
    return torch.device(name)
