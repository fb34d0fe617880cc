#!/usr/bin/env python3
"""Measure what each chapter notebook costs on this machine: wall time to run it top to bottom in a
fresh kernel (test settings: CPU, one thread) and the kernel's peak resident memory. Nothing is
written back to the notebooks.

    python tools/measure_chapters.py [chapters/NN_name.ipynb ...]

Prints a Markdown table for the front page (chapters/index.md). Run it on an otherwise idle machine.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute_notebooks import ROOT, SETTINGS  # noqa: E402


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(path: Path) -> tuple[float, float]:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        start = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - start
        peak = peak_rss_mib(pid)
    return seconds, peak


def main(argv):
    os.environ.update(SETTINGS)
    paths = [Path(a).resolve() for a in argv] or sorted((ROOT / "chapters").glob("*.ipynb"))
    print(f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.2f}")
    print("| notebook | wall time (1 thread) | peak memory |")
    print("|---|---|---|")
    for p in paths:
        seconds, peak = measure(p)
        print(f"| {p.name} | {seconds:.0f} s | {peak:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
