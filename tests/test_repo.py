"""The repository agrees with itself: config, table of contents, notebooks, dependencies, citations."""
from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab_cell  # noqa: E402

NOTEBOOKS = sorted((ROOT / "chapters").glob("*.ipynb"))
CHAPTER_ORDER = ["01_background", "02_core_concepts", "03_attention", "04_pretraining",
                 "05_bert_practice", "06_applications", "07_tools", "08_outlook", "09_faq"]


def load_nb(path):
    return json.loads(path.read_text())


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_config_executes_nothing_and_builds_toc_only():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["only_build_toc_files"] is True
    assert cfg["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert cfg["bibtex_bibfiles"] == ["chapters/references.bib"]


def test_toc_lists_front_page_and_nine_chapters_in_order():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["root"] == "chapters/index"
    files = [Path(c["file"]).name for c in toc["chapters"]]
    assert files[:9] == CHAPTER_ORDER
    for name in files:
        found = list((ROOT / "chapters").glob(name + ".*"))
        found = [p for p in found if p.suffix in (".md", ".ipynb")]
        assert len(found) == 1, f"chapters/{name}: expected one .md or .ipynb, found {found}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_colab_cell_then_setup(path):
    cells = code_cells(load_nb(path))
    first = cells[0]
    assert "".join(first["source"]) == colab_cell.cell_source(), (
        f"{path.name}: the first cell differs from tools/colab_cell.py; run `python tools/colab_cell.py --fix`")
    assert "remove-cell" in first["metadata"].get("tags", [])
    assert "lmbook.setup(" in "".join(cells[1]["source"]), f"{path.name}: second code cell must call lmbook.setup()"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_nbval_policy(path):
    """No nbval-skip; an ignored output is followed (within two code cells) by a cell that asserts
    what the page claims."""
    cells = code_cells(load_nb(path))
    for i, cell in enumerate(cells):
        tags = cell["metadata"].get("tags", [])
        src = "".join(cell["source"])
        assert "nbval-skip" not in tags, f"{path.name}: nbval-skip is not allowed (cell {i})"
        assert "NBVAL_" not in src, f"{path.name}: use cell tags, not NBVAL_ comments (cell {i})"
        if "nbval-ignore-output" in tags:
            # the check may come right after, or after one figure that shows the same result
            following = ["".join(c["source"]) for c in cells[i + 1:i + 3]]
            assert any(re.search(r"^\s*assert\b", s, re.M) for s in following), (
                f"{path.name}: cell {i} ignores its output but no assert follows it")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_widget_view_has_its_stored_state(path):
    """The site renders a progress bar from the notebook's stored widget state; a view whose model
    is not in that state shows nothing (the state is stale, from an earlier run)."""
    nb = load_nb(path)
    state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    models = set(state.get("state", {}))
    views = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
             for c in nb["cells"] for o in c.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    missing = [v for v in views if v not in models]
    assert not missing, (f"{path.name}: {len(missing)} of {len(views)} widget views have no stored state: "
                         f"re-execute it with `make execute NB=chapters/{path.name}` (tools/execute_notebooks.py "
                         "stores the state)")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    expected = set(project["project"]["dependencies"])
    for extra in ("book", "test", "lab"):
        expected |= set(project["project"]["optional-dependencies"][extra])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {p for p in pip if not p.startswith("-e")}
    assert listed == expected, f"only in environment.yml: {listed - expected}; only in pyproject: {expected - listed}"
    text = (ROOT / "environment.yml").read_text()
    for pkg in project["tool"]["lmbook"]["data-packages"]:
        assert pkg in text, f"environment.yml does not mention data package {pkg}"


def test_lock_pins_every_direct_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = {re.split(r"==", line)[0].lower().replace("_", "-")
            for line in (ROOT / "requirements-lock.txt").read_text().splitlines()
            if line and not line.startswith("#")}
    reqs = list(project["project"]["dependencies"])
    for extra in ("book", "test", "lab"):
        reqs += project["project"]["optional-dependencies"][extra]
    for req in reqs:
        name = re.split(r"[<>=!~ \[]", req)[0].lower().replace("_", "-")
        if name == "torch":
            continue  # installed by tools/setup_env.sh: the CPU wheel, or the CUDA torch already there
        assert name in lock, f"{name} is not pinned in requirements-lock.txt (run tools/lock.sh)"


def test_every_citation_is_in_the_bibliography():
    bib = (ROOT / "chapters" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,\s]+),", bib))
    dupes = {k for k in keys if len(re.findall(r"@\w+\{" + re.escape(k) + ",", bib)) > 1}
    assert not dupes, f"duplicate bibliography keys: {dupes}"
    cited = set()
    for page in list((ROOT / "chapters").glob("*.md")) + NOTEBOOKS:
        text = page.read_text()
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text):
            cited |= {k.strip() for k in group.split(",")}
    missing = cited - keys
    assert not missing, f"cited but not in chapters/references.bib: {sorted(missing)}"


def test_gpu_check_script_parses_and_names_every_phase():
    import subprocess

    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    for phase in ("phase unit", "phase baby_gpt", "phase torchrun", "phase chapters", "--dry-run", "--prepare"):
        assert phase in text


def test_gpu_check_caps_every_training_run(monkeypatch):
    """The cell tools/gpu_check_notebooks.py puts first in a chapter cuts fit() to N steps."""
    import sys

    import torch

    import lmbook.train as lt
    import lmbook.train.loop as ll

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from gpu_check_notebooks import CAP_CELL
    finally:
        sys.path.remove(str(ROOT / "tools"))
    monkeypatch.setattr(lt, "fit", ll.fit)  # restored afterwards, with the module's own fit
    monkeypatch.setattr(ll, "fit", ll.fit)
    exec(CAP_CELL.format(n=3), {})
    assert lt.fit is ll.fit and lt.fit.__wrapped__ is not None  # both names now give the capped fit

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 1)

        def forward(self, x, y):
            return torch.nn.functional.mse_loss(self.w(x).squeeze(-1), y)

    data = [{"x": torch.randn(2), "y": torch.randn(())} for _ in range(64)]
    h = lt.fit(Tiny(), data, steps=100, batch_size=4, lr=1e-2, device="cpu", progress=False)
    assert h.steps == [1, 2, 3]
    h = lt.fit(Tiny(), data, epochs=5, batch_size=4, lr=1e-2, device="cpu", progress=False)
    assert h.steps == [1, 2, 3]
