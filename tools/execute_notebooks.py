#!/usr/bin/env python3
"""Execute chapter notebooks top to bottom in a fresh kernel on this machine's CPU and store their
outputs (and widget state), under the same settings as the test suite (see conftest.py).

    python tools/execute_notebooks.py                       # every notebook under chapters/
    python tools/execute_notebooks.py chapters/03_attention.ipynb
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # the same as conftest.py: CPU, one thread, CPU preset, offline
    "LMBOOK_DEVICE": "cpu", "LMBOOK_THREADS": "1", "LMBOOK_PRESET": "cpu", "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
}


def execute(path: Path, timeout: int = 1800) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def main(argv):
    os.environ.update(SETTINGS)
    paths = [Path(a) for a in argv] or sorted((ROOT / "chapters").glob("*.ipynb"))
    for p in paths:
        print(f"executing {p} ...", flush=True)
        print(f"  done in {execute(p.resolve()):.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
