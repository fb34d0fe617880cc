#!/usr/bin/env python3
"""Run chapters' training cells on the machine at hand, each training run cut to a few steps:
part of benchmarks/gpu_check.sh (the GPU paths under the t4/large presets).

    python tools/gpu_check_notebooks.py --max-steps 20 --out OUT chapters/04_pretraining.ipynb ...

Each notebook is executed top to bottom in a fresh kernel (the environment decides the preset and
the device: LMBOOK_PRESET, LMBOOK_DEVICE, LMBOOK_PACKAGED). A first cell is added that wraps
``lmbook.train.fit`` so that every run takes at most ``--max-steps`` optimizer steps (``epochs``
become that many steps too). Execution continues past a failing cell, and each failure is
recorded: an ``AssertionError`` is expected now and then (asserts about a full-length run's
results), any other error is a bug on that path. Writes OUT/notebooks.json and prints one line
per notebook. Nothing is written back into the notebooks.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

CAP_CELL = '''# gpu_check: every training run cut to at most {n} optimizer steps (not part of the chapter)
import functools as _ft, sys as _sys
import lmbook.train as _lt, lmbook.train.loop as _ll
_fit = _ll.fit
@_ft.wraps(_fit)
def _capped_fit(*args, steps=None, epochs=None, **kwargs):
    return _fit(*args, steps={n} if steps is None else min(steps, {n}), epochs=None, **kwargs)
for _m in [m for name, m in list(_sys.modules.items()) if name.startswith("lmbook") and m is not None]:
    if getattr(_m, "fit", None) is _fit:
        _m.fit = _capped_fit
'''


def run(path: Path, max_steps: int, cell_timeout: int) -> dict:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(CAP_CELL.format(n=max_steps)))
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    status = "ran"
    try:
        client.execute()
    except Exception as err:  # a timeout or a dead kernel stops the notebook
        status = f"stopped: {type(err).__name__}: {str(err)[:300]}"
    errors = []
    for i, cell in enumerate(nb.cells[1:], 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append({"cell": i, "ename": out["ename"], "evalue": out["evalue"][:300],
                               "source": "".join(cell["source"])[:160]})
    device_lines = [o.get("text", "") for c in nb.cells[1:4] for o in c.get("outputs", [])
                    if o.get("output_type") == "stream"]
    return {"notebook": path.name, "status": status, "seconds": round(time.perf_counter() - t0, 1),
            "errors": errors, "bugs": [e for e in errors if e["ename"] != "AssertionError"],
            "setup_output": "".join(device_lines)[:400]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--max-steps", type=int, default=20)
    ap.add_argument("--cell-timeout", type=int, default=300, help="seconds per cell")
    ap.add_argument("--out", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    results = []
    for path in args.notebooks:
        r = run(path, args.max_steps, args.cell_timeout)
        results.append(r)
        asserts = len(r["errors"]) - len(r["bugs"])
        print(f"{r['notebook']}: {r['status']} in {r['seconds']} s; {len(r['bugs'])} errors other than "
              f"AssertionError, {asserts} AssertionError", flush=True)
        for e in r["errors"]:
            print(f"    cell {e['cell']}: {e['ename']}: {e['evalue'][:160]}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "notebooks.json").write_text(json.dumps(results, indent=1))
    return 1 if any(r["bugs"] or r["status"] != "ran" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
