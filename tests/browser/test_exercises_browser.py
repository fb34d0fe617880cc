"""Exercises on the website (sphinx-exercise): on a chapter page that has exercises, the first
exercise shows its number, its solution is collapsed until the reader opens it, and opening it
shows the solution's code. Skips, saying why, while no built chapter page has an exercise yet."""
from __future__ import annotations

import re

import pytest

from sitepaths import SITE

pytestmark = pytest.mark.browser


def pages_with_exercises() -> list[str]:
    return sorted(p.relative_to(SITE).as_posix() for p in (SITE / "chapters").glob("*.html")
                  if 'class="exercise admonition"' in p.read_text(encoding="utf-8"))


def test_exercise_renders_with_hidden_solution_that_opens(site, load):
    pages = pages_with_exercises()
    if not pages:
        pytest.skip(f"no chapter page under {SITE / 'chapters'} has an exercise yet "
                    "(sphinx-exercise's `exercise` directive)")
    page = load(pages[0], wait_for_widgets=False).page
    exercise = page.locator("div.exercise.admonition").first
    assert exercise.is_visible()
    number = exercise.locator(".caption-number").inner_text().strip()
    assert re.fullmatch(r"Exercise \d+(\.\d+)*", number), f"{pages[0]}: exercise title reads {number!r}"

    label = exercise.get_attribute("id")
    solution = page.locator(f'div.solution.admonition:has(p.admonition-title a[href="#{label}"])').first
    assert solution.count() == 1, f"{pages[0]}: no solution links to exercise #{label}"
    assert number in solution.locator("p.admonition-title").inner_text()
    code = solution.locator("div.cell_input pre").first
    assert code.count() == 1, f"{pages[0]}: the solution to #{label} has no code cell"
    assert not code.is_visible(), f"{pages[0]}: the solution to #{label} is shown before it is opened"

    solution.locator("p.admonition-title").click()
    code.wait_for(state="visible", timeout=5_000)
    assert "def " in code.inner_text() or "print(" in code.inner_text()
