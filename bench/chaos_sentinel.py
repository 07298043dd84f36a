"""Sentinel failover under load: what acknowledged submits survive, and what runs twice.

A primary, two replicas and three Sentinels (real redis-servers, ``tests.topology``); one
consumer (``jobcord worker``, 2 job processes); a client submitting N requests, each with an
idempotency key, retrying the same key on any error (what a careful caller does). Once a
third of them are acknowledged the primary is SIGKILLed and the Sentinels promote the replica:

- ``in sync``: the replica is up to date (async replication lags by well under a ms);
- ``lagging``: the replicas' host (a network namespace) is cut off for 1.5 s first, so the
  primary takes writes no replica sees; the link heals just after the kill, so the Sentinels
  can promote one.

Each runs with acknowledgement off (``JOBCORD_REDIS_MIN_REPLICAS_ACK=0``, the default) and
on (``=1``, for the client and the worker: two replicas, so one is left to confirm submits
and fetches once the other is promoted).
After the failover every acknowledged key is replayed (submitted again):

- ``ack lost``: acknowledged request ids the new primary does not know;
- ``dup (replay)``: keys that ran twice because the replay made a new request;
- ``dup (rerun)``: a request run again by lease recovery (its finish was lost with the old
  primary; at-least-once, by design);
- ``recover``: seconds from the kill to the first acknowledged submit, and to the first
  request finished after it;
- ``unfinished``: acknowledged requests with no terminal status 60 s later (must be 0).

A second table: submit latency on a healthy pair, ack off vs on (sequential submits).

    .venv/bin/python bench/chaos_sentinel.py [--requests 150] [--rate 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobcord.producers import RedisClient, set_default_client  # noqa: E402
from jobcord.storage.errors import NotAcknowledged, RequestNotFound  # noqa: E402
from jobcord.storage.records import RequestRecord  # noqa: E402
from jobcord.storage.settings import load_settings  # noqa: E402
from jobcord.storage.statuses import Status  # noqa: E402
from tests.apps import topology as jobs  # noqa: E402
from tests.topology import NetHost, SentinelSetup  # noqa: E402

TERMINAL = {Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.TIMED_OUT, Status.EXPIRED}
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, NotAcknowledged)


@dataclass
class Run:
    scenario: str
    ack: int
    acked: dict[str, str] = field(default_factory=dict)  # key -> the id first returned
    acked_at: dict[str, float] = field(default_factory=dict)
    killed_at: float = 0.0
    lost: int = 0
    dup_replay: int = 0
    dup_rerun: int = 0
    first_ack_after_s: float | None = None
    first_done_after_s: float | None = None
    unfinished: int = 0
    not_acked: int = 0  # submit errors the client retried through


def _worker(url: str, marks: Path, log: Path, ack: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "JOBCORD_REDIS_URL": url,
        "JOBCORD_REDIS_MIN_REPLICAS_ACK": str(ack),
        "JOBCORD_REDIS_ACK_TIMEOUT_MS": "500",
        "JOBCORD_TEST_MARKS": str(marks),
        "JOBCORD_LEASE_TTL_S": "3",
        "JOBCORD_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, "-m", "jobcord.cli", "worker", "tests.apps.topology:app"]
    return subprocess.Popen(
        [*cmd, "--concurrency", "2", "--drain", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )


def _submit(key: str, run: Run, deadline: float) -> str | None:
    while time.monotonic() < deadline:
        try:
            return jobs.mark.async_run_remote(key, sleep_s=0.02, idempotency_key=key).request_id
        except RETRYABLE:
            run.not_acked += 1
            time.sleep(0.1)
    return None


def one_run(scenario: str, ack: int, n: int, rate: float, work: Path) -> Run:
    run = Run(scenario, ack)
    net = NetHost() if scenario == "lagging" else None
    setup = SentinelSetup(work / "redis", replicas=2, replica_host=net)
    marks = work / "marks"
    marks.mkdir()
    worker = _worker(setup.url, marks, work / "worker.log", ack)
    client = RedisClient(
        load_settings(redis_url=setup.url, redis_min_replicas_ack=ack, redis_ack_timeout_ms=500)
    )
    set_default_client(client)
    try:
        jobs.mark.run_remote("warmup")  # the worker is up

        def fault() -> None:
            while len(run.acked) < n // 3:
                time.sleep(0.01)
            if net is not None:
                net.cut()
                time.sleep(1.5)  # the primary takes writes the replica never sees
            run.killed_at = time.monotonic()
            setup.primary.kill()
            if net is not None:
                time.sleep(0.3)
                net.heal()
            setup.wait_failover(60)

        faulter = threading.Thread(target=fault)
        faulter.start()
        deadline = time.monotonic() + 120
        for i in range(n):
            key = f"{scenario}-{ack}-{i}"
            rid = _submit(key, run, deadline)
            if rid is not None:
                run.acked[key], run.acked_at[key] = rid, time.monotonic()
            time.sleep(1 / rate)
        faulter.join()
        after = [t for t in run.acked_at.values() if t > run.killed_at]
        if after:
            run.first_ack_after_s = min(after) - run.killed_at
        # Which acknowledged ids the new primary lacks, then the replay of every key.
        for rid in run.acked.values():
            if _lookup(client, rid) is None:
                run.lost += 1
        replayed: dict[str, str] = {}
        replay_by = time.monotonic() + 60
        for key in run.acked:
            rid = _submit(key, run, replay_by)
            if rid is not None:
                replayed[key] = rid
        # Every request the keys now name reaches a terminal status.
        done_by = time.monotonic() + 60
        pending = set(replayed.values())
        while pending and time.monotonic() < done_by:
            for rid in list(pending):
                record = _lookup(client, rid)
                if record is not None and record.status in TERMINAL:
                    pending.discard(rid)
            time.sleep(0.1)
        run.unfinished = len(pending)
        done_after = [
            t - run.killed_at for t in _finish_times(work / "worker.log") if t > run.killed_at
        ]
        run.first_done_after_s = min(done_after) if done_after else None
        by_key: dict[str, set[str]] = {}
        by_request: dict[str, int] = {}
        for key, rid, _attempt in jobs.executions(marks):
            if key.startswith(f"{scenario}-{ack}-"):
                by_key.setdefault(key, set()).add(rid)
                by_request[rid] = by_request.get(rid, 0) + 1
        run.dup_replay = sum(1 for ids in by_key.values() if len(ids) > 1)
        run.dup_rerun = sum(1 for count in by_request.values() if count > 1)
    finally:
        set_default_client(None)
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        setup.close()
        if net is not None:
            net.close()
    return run


def _lookup(client: RedisClient, rid: str, timeout: float = 30.0) -> RequestRecord | None:
    """The request (None: Redis does not know it), riding out a failover in progress."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.get(rid)
        except RequestNotFound:
            return None
        except RETRYABLE:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _finish_times(log: Path) -> list[float]:
    """Monotonic-comparable times of the worker's "request finished" lines (by wall clock)."""
    import json
    from datetime import datetime

    offset = time.monotonic() - time.time()
    out: list[float] = []
    for line in log.read_text(errors="replace").splitlines():
        if '"request finished"' not in line:
            continue
        try:
            at = datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00"))
        except (ValueError, KeyError):
            continue
        out.append(at.timestamp() + offset)
    return out


def latency(work: Path, n: int) -> dict[int, list[float]]:
    """Submit latency (ms) on a healthy primary + replica, ack off and on."""
    setup = SentinelSetup(work / "latency", replicas=2)
    out: dict[int, list[float]] = {}
    try:
        for ack in (0, 1):
            client = RedisClient(load_settings(redis_url=setup.url, redis_min_replicas_ack=ack))
            set_default_client(client)
            times: list[float] = []
            for i in range(n):
                t = time.perf_counter()
                jobs.mark.async_run_remote(f"lat-{ack}-{i}", idempotency_key=f"lat-{ack}-{i}")
                times.append((time.perf_counter() - t) * 1000)
            out[ack] = times
            set_default_client(None)
    finally:
        setup.close()
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--rate", type=float, default=60.0, help="submits per second")
    parser.add_argument("--latency-submits", type=int, default=500)
    args = parser.parse_args()
    scenarios = ["in sync"]
    why = NetHost.available()
    if why is None:
        scenarios.append("lagging")
    runs: list[Run] = []
    for scenario in scenarios:
        for ack in (0, 1):
            with tempfile.TemporaryDirectory(prefix="jobcord-sentinel-") as d:
                runs.append(
                    one_run(scenario.replace(" ", "-"), ack, args.requests, args.rate, Path(d))
                )
                runs[-1].scenario = scenario
    print(f"\nSentinel failover, {args.requests} submits at {args.rate:.0f}/s, primary SIGKILLed")
    print("(2 replicas, 3 sentinels, down-after 1000 ms; jobcord worker --concurrency 2)\n")
    head = ("scenario", "ack", "acked", "ack lost", "dup (replay)", "dup (rerun)",
            "retried", "recover ack s", "recover run s", "unfinished")  # fmt: skip
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in runs:
        row = (
            r.scenario, str(r.ack), str(len(r.acked)), str(r.lost), str(r.dup_replay),
            str(r.dup_rerun), str(r.not_acked), _fmt(r.first_ack_after_s),
            _fmt(r.first_done_after_s), str(r.unfinished),
        )  # fmt: skip
        print(" | ".join(row))
    if why is not None:
        print(f"\n(lagging replica not run: {why})")
    with tempfile.TemporaryDirectory(prefix="jobcord-sentinel-") as d:
        lat = latency(Path(d), args.latency_submits)
    print(f"\nSubmit latency, {args.latency_submits} sequential submits, healthy pair (ms)\n")
    print("JOBCORD_REDIS_MIN_REPLICAS_ACK | p50 | p99 | max")
    print("--- | --- | --- | ---")
    for ack, times in lat.items():
        q = statistics.quantiles(times, n=100)
        print(f"{ack} | {statistics.median(times):.2f} | {q[98]:.2f} | {max(times):.2f}")
    ratio = statistics.median(lat[1]) / statistics.median(lat[0])
    print(f"\nack 1 / ack 0 median: {ratio:.2f}x")


if __name__ == "__main__":
    main()
