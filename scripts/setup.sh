#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs jobcord with the given extras. Sourced by the others.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-embedded}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.jobcord-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi
