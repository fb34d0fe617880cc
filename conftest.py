"""Settings shared by every test run, unit tests and notebooks alike.

Notebook kernels started by nbval inherit this environment, so a notebook run under test is
reproducible anywhere, a GPU box included: CPU only, one thread per kernel (torch's CPU results
change with the thread count), the CPU preset, and no hub look-ups.
"""
import os

os.environ.setdefault("LMBOOK_DEVICE", "cpu")
os.environ.setdefault("LMBOOK_THREADS", "1")
os.environ.setdefault("LMBOOK_PRESET", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
collect_ignore_glob = ["_build/*", ".venv/*", "benchmarks/*"]


def pytest_configure(config):
    """Unit tests run in this process: give torch the same fixed thread count as the kernels
    (with several pytest-xdist workers on a 2-core machine, more threads only oversubscribe)."""
    try:
        import torch
    except ImportError:  # the repository checks need no torch
        return
    torch.set_num_threads(int(os.environ["LMBOOK_THREADS"]))
