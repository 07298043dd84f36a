#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs jobcord with the given extras. Sourced by the others.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-embedded}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# The dashboard's browser test drives Debian's chromium: from the system's packages, never a
# browser download (Playwright only drives it, through executable_path).
if [ "$extras" = test ] && ! command -v chromium >/dev/null; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get install -y -q chromium >/dev/null || {
    $sudo_ apt-get update -q >/dev/null && $sudo_ apt-get install -y -q chromium >/dev/null
  }
fi
stamp=".venv/.jobcord-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi
