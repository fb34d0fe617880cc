"""The dated, cited tables of Chapter 1: every row cites a real bibliography entry, numbers are
positive, dates are ordered, and the helpers compute what they say."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from lmbook import milestones

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bib_keys():
    bib = (ROOT / "chapters" / "references.bib").read_text(encoding="utf-8")
    return set(re.findall(r"@\w+\{([^,\s]+),", bib))


@pytest.fixture(scope="module")
def models():
    return milestones.load_models()


@pytest.fixture(scope="module")
def all_models():
    return milestones.load_models(book_models=True)


@pytest.fixture(scope="module")
def events():
    return milestones.load_milestones()


def test_every_row_cites_an_entry_of_references_bib(all_models, events, bib_keys):
    models = all_models
    for df in (models, events):
        assert all(len(keys) >= 1 and all(keys) for keys in df["cite"]), "a row without a citation"
    missing = milestones.citation_keys(models, events) - bib_keys
    assert not missing, f"cited in lmbook/resources but not in chapters/references.bib: {sorted(missing)}"


def test_dates_are_ordered_and_plausible(all_models, events):
    for df in (all_models, events):
        assert df["date"].is_monotonic_increasing, "rows must be sorted by date"
        assert df["date"].min() >= pd.Timestamp("1990-01-01")
        assert df["date"].max() <= pd.Timestamp.now()


def test_numbers_are_positive_or_missing(all_models):
    models = all_models
    for col in ("params", "tokens", "flops"):
        values = models[col].dropna()
        assert (values > 0).all(), f"{col} must be positive"
    assert models["params"].notna().sum() >= 10
    assert models["tokens"].notna().sum() >= 8
    # a model that trained on more tokens than the 1e16 we could never have is a typo
    assert models["tokens"].dropna().max() < 1e14 and models["params"].dropna().max() < 1e13


def test_missing_numbers_are_explained(all_models):
    for _, row in all_models.iterrows():
        if math.isnan(row["tokens"]) or math.isnan(row["params"]):
            assert row["data_note"].strip(), f"{row['model']}: a missing number needs a data_note"


def test_weights_column_uses_known_values(all_models):
    assert set(all_models["weights"]) <= set(milestones.WEIGHTS)
    assert all_models["model"].is_unique


def test_book_models_only_on_request(models, all_models):
    """The milestone table holds the largest model of each paper; the models the book runs are
    extra rows that load_models adds only when asked (they are no milestones)."""
    assert set(models["role"]) == {"largest in its paper"}
    extra = all_models[~all_models["model"].isin(models["model"])]
    assert set(extra["role"]) == {"run in this book"} and len(all_models) == len(models) + len(extra)
    smol = all_models.set_index("model").loc["SmolLM2-135M"]
    assert smol["params"] == 134_515_008 and smol["tokens"] == 2e12 and smol["weights"] == "open"
    assert smol["cite"] == ["allal2025smollm2"]
    assert milestones.fmt_count(smol["params"]) == "135M"


def test_unknown_role_is_a_clear_error(monkeypatch):
    real = milestones._read

    def with_bad_role(name):
        df = real(name)
        df.loc[0, "role"] = "favourite"
        return df

    monkeypatch.setattr(milestones, "_read", with_bad_role)
    with pytest.raises(ValueError, match="unknown role.*favourite"):
        milestones.load_models()


def test_known_rows_match_their_papers(models):
    row = models.set_index("model")
    assert row.loc["GPT-3", "params"] == 175e9 and row.loc["GPT-3", "tokens"] == 300e9
    assert row.loc["Chinchilla", "params"] == 70e9 and row.loc["Chinchilla", "tokens"] == 1.4e12
    assert math.isnan(row.loc["GPT-4", "params"]) and row.loc["GPT-4", "weights"] == "closed"


def test_reported_compute_is_close_to_six_n_d(models):
    """Where a paper reports its training FLOPs, C ~ 6 N D must agree within 5%."""
    rows = models.dropna(subset=["flops"])
    assert len(rows) >= 2
    est = milestones.training_flops(rows["params"], rows["tokens"])
    assert ((est / rows["flops"] - 1).abs() < 0.05).all()


def test_training_flops_is_six_n_d():
    assert milestones.training_flops(175e9, 300e9) == pytest.approx(3.15e23)
    s = milestones.training_flops(pd.Series([1.0, 2.0]), pd.Series([3.0, 4.0]))
    assert list(s) == [18.0, 48.0]
    with pytest.raises(ValueError, match="tokens"):  # a missing count is an error, not a NaN result
        milestones.training_flops(pd.Series([1.0, 2.0]), pd.Series([3.0, float("nan")]))


def test_open_closed_by_year_counts_every_model(models):
    table = milestones.open_closed_by_year(models)
    assert table.to_numpy().sum() == len(models)
    assert list(table.index) == sorted(table.index)
    assert set(table.columns) <= set(milestones.WEIGHTS)


@pytest.mark.parametrize("x, text", [(117e6, "117M"), (1542e6, "1.54B"), (1.4e12, "1.4T"),
                                     (175e9, "175B"), (7e9, "7B"), (float("nan"), "-")])
def test_fmt_count(x, text):
    assert milestones.fmt_count(x) == text
