#!/usr/bin/env bash
# Set up qhil on a fresh machine: a virtualenv in .venv with qhil and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# dev: pytest, ruff, mypy; fidelity: the open-source drivers for the real instruments,
# run unmodified against our emulators.
.venv/bin/python -m pip install --quiet -e '.[dev,fidelity]'
