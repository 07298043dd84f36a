"""A job that starts helpers and hangs past its 2 s limit: what is left, and when the slot
serves again. jobcord vs dramatiq, each at its CLI defaults, on the same Redis and cores.

    .venv/bin/python bench/bench_containment.py [--rounds 3]

Per round, one consumer of each engine runs a job that starts four helpers (Popen, a
fork-context multiprocessing child, one ignoring SIGTERM, a double-forked daemon), then
hangs; right after it, a marker job is queued. Measured from the limit's deadline: helpers
still alive 5 s later, seconds until the last helper is gone, seconds until the marker job
starts. Medians over the rounds. Leftovers are killed after each round.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_lifecycle import _clean, _redis_url  # noqa: E402

LIMIT_S = 2.0
WATCH_S = 5.0
KINDS = 4


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _consumer(cmd: list[str], env: dict[str, str], marker: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if marker in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc
    raise RuntimeError(f"{cmd} did not start")


def one_round(engine: str, url: str, r: redis.Redis, tag: str) -> tuple[int, float | None, float]:
    env = {**os.environ, "JOBCORD_REDIS_URL": url, "JOBCORD_LOG_FORMAT": "json",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    if engine == "jobcord":
        cmd = [sys.executable, "-m", "jobcord.cli", "worker", "bench.containment_apps:app",
               "--concurrency", "1"]  # fmt: skip
        proc = _consumer(cmd, env, "consumer ready")
    else:
        cmd = [sys.executable, "-m", "dramatiq", "bench.containment_apps"]
        proc = _consumer(cmd, env, "Worker process is ready")
    pids: list[int] = []
    try:
        import bench.containment_apps as apps
        from jobcord.producers import RedisClient, set_default_client
        from jobcord.storage.settings import load_settings

        if engine == "jobcord":
            set_default_client(RedisClient(load_settings(redis_url=url)))
            apps.helpers_then_hang.async_run_remote(tag)
        else:
            apps.dq_helpers_then_hang.send(tag)
        key = f"jobcord:test:helpers:{tag}"
        deadline = time.monotonic() + 30
        while r.llen(key) < KINDS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{engine}: helpers did not start")
            time.sleep(0.01)
        started = time.monotonic()  # the helpers run: the job's limit is ~2 s from its start
        started_wall = time.time()
        pids = [int(p) for p in r.lrange(key, 0, -1)]
        if engine == "jobcord":
            apps.stamp.async_run_remote(tag)
        else:
            apps.dq_stamp.send(tag)
        limit_at = started + LIMIT_S
        gone_at = None
        while time.monotonic() < limit_at + WATCH_S:
            if gone_at is None and not any(_alive(p) for p in pids):
                gone_at = time.monotonic()
            time.sleep(0.01)
        left = sum(_alive(p) for p in pids)
        stamped = r.get(f"bench:next:{tag}")
        next_after = float(stamped) - (started_wall + LIMIT_S) if stamped else float("nan")
        return left, (gone_at - limit_at) if gone_at else None, next_after
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for p in pids:  # what the engine left: not ours to keep
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = _redis_url()
    os.environ["JOBCORD_REDIS_URL"] = url  # the apps module reads it (dramatiq's broker)
    r = redis.Redis.from_url(url)
    table = Table(title=f"helpers of a job past its {LIMIT_S:.0f} s limit (medians of "
                  f"{args.rounds})")  # fmt: skip
    for col in ("engine", f"helpers alive {WATCH_S:.0f} s after the limit",
                "last helper gone after", "next job starts after"):  # fmt: skip
        table.add_column(col, justify="right")
    settings = {
        "jobcord": "jobcord worker --concurrency 1, timeout=2, kill grace 3 s (default)",
        "dramatiq": "python -m dramatiq (CLI defaults: a process per core, 8 threads), "
        "time_limit=2000",
    }
    for engine in ("jobcord", "dramatiq"):
        rows = []
        for i in range(args.rounds):
            _clean(r)
            rows.append(one_round(engine, url, r, f"{engine}-{i}"))
        _clean(r)
        left = statistics.median(x[0] for x in rows)
        gone = [x[1] for x in rows if x[1] is not None]
        gone_s = f"{statistics.median(gone):.2f} s" if len(gone) == len(rows) else "never"
        nxt = statistics.median(x[2] for x in rows)
        table.add_row(engine, f"{left:.0f} of {KINDS}", gone_s, f"{nxt:+.2f} s")
    console = Console()
    console.print(table)
    for engine, how in settings.items():
        console.print(f"{engine}: {how}")
    console.print("next job: queued right after the hanging one; negative = it started before "
                  "the limit, on another free thread")  # fmt: skip


if __name__ == "__main__":
    main()
