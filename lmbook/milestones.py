"""Dated, cited facts about AI and large language models, kept in one place: two CSV files in
``lmbook/resources/`` that Chapter 1 loads and ``tests/test_milestones.py`` checks.

- ``ai_milestones.csv``: one row per milestone (``date`` is when it happened, ``YYYY-MM``), with
  ``event``, ``field`` and ``cite`` (bibliography keys in ``chapters/references.bib``, ``;``-separated).
- ``llm_models.csv``: one row per model, the largest size its paper or report describes
  (``role`` "largest in its paper"), plus the models this book runs (``role`` "run in this book":
  SmolLM2-135M, whose instruction-tuned version Chapter 1 asks questions). ``date`` is the month the cited paper/report first appeared. ``params`` and ``tokens`` (tokens
  the model was trained on) are the numbers that paper states, ``flops`` the training compute
  where the paper reports it; an empty field means the source
  does not state it (or we could not confirm it) and ``data_note`` says what the source gives
  instead. ``weights`` is ``open`` (weights released, perhaps on request or under a licence),
  ``closed`` (API or nothing) or ``code`` (code only).

``load_models()`` returns the milestone table (the largest model of each paper);
``load_models(book_models=True)`` adds the rows of the models this book runs.
"""
from __future__ import annotations

from importlib.resources import files

import pandas as pd

from lmbook.compute import training_flops  # C ~ 6 N D, re-exported for chapter 1  # noqa: E402

__all__ = ["load_models", "load_milestones", "citation_keys", "training_flops", "open_closed_by_year",
           "fmt_count", "WEIGHTS", "ROLES"]

MODELS_CSV = "llm_models.csv"
MILESTONES_CSV = "ai_milestones.csv"
WEIGHTS = ("open", "closed", "code")
ROLES = ("largest in its paper", "run in this book")


def _read(name: str) -> pd.DataFrame:
    with files("lmbook").joinpath("resources", name).open("r", encoding="utf-8") as f:
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
    df["date"] = pd.to_datetime(df["date"], format="%Y-%m")
    df["cite"] = df["cite"].str.split(";")
    return df


def load_models(book_models: bool = False) -> pd.DataFrame:
    """The model table: ``params``, ``tokens`` and ``flops`` as floats (NaN where the source gives none),
    ``year`` as int, ``cite`` as a list of bibliography keys.

    By default only the milestone rows (the largest model of each paper); ``book_models=True`` also
    returns the models this book runs (``role == "run in this book"``), which are no milestones and
    would distort counts by year or country."""
    df = _read(MODELS_CSV)
    unknown = set(df["role"]) - set(ROLES)
    if unknown:
        raise ValueError(f"{MODELS_CSV}: unknown role(s) {sorted(unknown)}; use one of {ROLES}")
    if not book_models:
        df = df[df["role"] == ROLES[0]].reset_index(drop=True)
    for col in ("params", "tokens", "flops"):
        df[col] = pd.to_numeric(df[col].replace("", None), errors="raise").astype(float)
    df["year"] = df["date"].dt.year
    return df


def load_milestones() -> pd.DataFrame:
    """The milestone timeline, oldest first, ``cite`` as a list of bibliography keys."""
    return _read(MILESTONES_CSV)


def citation_keys(*frames: pd.DataFrame) -> set[str]:
    """Every bibliography key cited by the given tables."""
    return {key for df in frames for keys in df["cite"] for key in keys}


def open_closed_by_year(models: pd.DataFrame) -> pd.DataFrame:
    """Count models per release year by ``weights`` (rows: years, columns: open/closed/code)."""
    table = pd.crosstab(models["year"], models["weights"])
    return table.reindex(columns=[w for w in WEIGHTS if w in table.columns], fill_value=0)


def fmt_count(x: float) -> str:
    """Write a parameter or token count the way papers do: 117M, 1.5B, 1.4T; "-" for none."""
    if pd.isna(x):
        return "-"
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if x >= div:
            v = x / div
            return f"{v:.0f}{unit}" if v >= 100 or v == round(v) else f"{v:.3g}{unit}"
    return f"{x:.0f}"
