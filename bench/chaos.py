"""Fault suite: requests with idempotency keys while children, workers, Redis and S3 fail.

    .venv/bin/python bench/chaos.py --requests 400 --duration 60     # the full profile
    .venv/bin/python bench/chaos.py --requests 60 --duration 16 --fault-gap 3   # CI's

Starts its own redis-server (AOF everysec, a free port), moto S3 server, two consumers
(``--gpus none --concurrency 2``) and a scheduler; submits the requests through the Python
SDK, paced over ``--duration``, while a schedule of faults runs: SIGKILL a busy job process,
SIGKILL a whole consumer (and start a replacement), kill -9 Redis and restart it on the same
port and AOF (then resubmit every key), SIGSTOP the S3 server for a while, SIGSTOP a consumer
past its lease and SIGCONT it. Then it waits for every request to end and accounts (see
``bench/chaos_audit.py``); it exits 1 when a target is missed. The processes are in
``bench/chaos_cluster.py``, the faults in ``bench/chaos_faults.py``, the job in
``bench/chaos_app.py``.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.chaos_audit import audit  # noqa: E402
from bench.chaos_cluster import Cluster  # noqa: E402
from bench.chaos_faults import FAULTS, Faults  # noqa: E402
from bench.chaos_model import Audit, Fault, Submission  # noqa: E402
from jobcord.storage.keys import record_key  # noqa: E402
from jobcord.storage.statuses import TERMINAL_STATUSES  # noqa: E402

__all__ = ["Profile", "run", "main"]


@dataclass
class Profile:
    requests: int = 400
    duration_s: float = 60.0
    lease_ttl_s: float = 2.0
    maintenance_interval_s: float = 0.5
    fault_gap_s: float = 4.0  # between the starts of two faults
    first_fault_s: float = 1.5
    s3_freeze_s: float = 3.0
    redis_down_s: float = 0.5
    pause_s: float = 4.0  # past the lease
    settle_timeout_s: float = 60.0  # for every request to end after the run
    seed: int | None = None
    keep_dir: bool = False  # keep the temp dir (logs, ledger, AOF) after the run

    @property
    def redelivery_bound_s(self) -> float:
        return self.lease_ttl_s + self.maintenance_interval_s


class Submitter:
    """Submits the profile's requests through the SDK, paced, each with its own key."""

    def __init__(self, profile: Profile, cluster: Cluster) -> None:
        self.p = profile
        self.rng = random.Random(profile.seed)
        self.run_id = secrets.token_hex(3)
        self.subs: list[Submission] = []
        self.r = redis.Redis(port=cluster.redis_port, decode_responses=True, socket_timeout=5)
        self._lock = threading.Lock()

    # -- submissions ------------------------------------------------------------------------
    def submit(self, sub: Submission, patience_s: float = 30.0) -> str | None:
        """Submit with the same key until accepted: a Redis restart must never make a
        duplicate nor lose the request. Returns the request id (None if never accepted)."""
        from bench.chaos_app import chaos

        deadline = time.monotonic() + patience_s
        while True:
            try:
                handle = chaos.async_run_remote(**sub.input, idempotency_key=sub.key)
                with self._lock:
                    sub.rids.append(handle.request_id)
                    sub.created.append(handle.created)
                return handle.request_id
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                sub.retries += 1
                if time.monotonic() > deadline:
                    sub.error = f"{type(exc).__name__}: {exc}"
                    return None
                time.sleep(0.1)
            except Exception as exc:  # noqa: BLE001 - recorded: the audit reports it
                sub.error = f"{type(exc).__name__}: {exc}"
                return None

    def resubmit(self) -> Counter[str]:
        """Every key accepted so far again, same input: each must answer its first id."""
        with self._lock:
            done = [s for s in self.subs if s.rids]
        out: Counter[str] = Counter()
        for sub in done:
            rid = self.submit(sub, patience_s=10)
            out["same" if rid == sub.rids[0] else "new" if rid else "error"] += 1
        return out

    def submit_all(self, t0: float) -> None:
        every = self.p.duration_s / max(1, self.p.requests)
        for i in range(self.p.requests):
            delay = t0 + i * every - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sub = Submission(
                key=f"chaos-{self.run_id}-{i}",
                token=secrets.token_hex(8),
                sleep_s=round(self.rng.uniform(0.05, 0.5), 3),
                pad=self.rng.randrange(0, 400),  # about half above the 256-byte inline limit
            )
            with self._lock:
                self.subs.append(sub)
            self.submit(sub)

    # -- the run ----------------------------------------------------------------------------
    def settle(self) -> int:
        """Wait (bounded) until every accepted request is terminal; returns how many are not
        (-1: Redis did not answer)."""
        deadline = time.monotonic() + self.p.settle_timeout_s
        terminal = {s.value for s in TERMINAL_STATUSES}
        while time.monotonic() < deadline:
            rids = {rid for s in self.subs for rid in s.rids}
            pipe = self.r.pipeline(transaction=False)
            for rid in rids:
                pipe.hget(record_key(rid), "status")
            try:
                left = sum(1 for st in pipe.execute() if st not in terminal)
            except redis.ConnectionError:
                left = -1
            if left == 0:
                return 0
            time.sleep(0.25)
        return left


@dataclass
class Outcome:
    audit: Audit
    faults: list[Fault]
    workdir: Path  # removed by the end of the run
    #: (pid, create time) of every process the run started, job processes included
    pids: list[tuple[int, float]]


def run(profile: Profile, say: Callable[[str], None] = print) -> Outcome:
    """Start everything, run the profile, account, stop everything. Never leaves a process."""
    from bench import chaos_app
    from jobcord.producers import RedisClient
    from jobcord.storage.settings import load_settings

    cluster = Cluster(profile.lease_ttl_s, profile.maintenance_interval_s)
    began = time.monotonic()
    try:
        cluster.start_redis()
        cluster.start_s3()
        first = [cluster.start_worker(), cluster.start_worker()]
        cluster.start_scheduler()
        for w in first:
            cluster.wait_ready(w)
        say(f"redis, moto, 2 consumers and a scheduler ready in {time.monotonic() - began:.1f} s")
        settings = load_settings(
            redis_url=cluster.redis_url,
            data_dir=cluster.workdir / "client",
            s3_endpoint_url=cluster.s3_url,
            s3_bucket=cluster.bucket,
            s3_prefix=cluster.s3_prefix,
        )
        for k, v in cluster.env().items():
            if k.startswith("AWS_"):  # boto3 reads them (moto takes any)
                os.environ.setdefault(k, v)
        client = RedisClient(settings)
        chaos_app.app.client = client
        submitter = Submitter(profile, cluster)
        faults = Faults(
            cluster,
            say,
            submitter.resubmit,
            first_s=profile.first_fault_s,
            gap_s=profile.fault_gap_s,
            duration_s=profile.duration_s,
            s3_freeze_s=profile.s3_freeze_s,
            redis_down_s=profile.redis_down_s,
            pause_s=profile.pause_s,
        )
        stop = threading.Event()
        t0 = time.monotonic()
        threads = [
            threading.Thread(target=submitter.submit_all, args=(t0,), daemon=True),
            threading.Thread(target=faults.loop, args=(t0, stop), daemon=True),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        say(f"[{time.monotonic() - t0:5.1f} s] submitted; waiting for every request to end")
        left = submitter.settle()
        faults.supervise(t0)
        ended = "every request ended" if left == 0 else f"{left} requests not ended in time"
        say(f"[{time.monotonic() - t0:5.1f} s] {ended}; accounting")
        result = audit(
            submitter.subs,
            faults.faults,
            r=submitter.r,
            client=client,
            handle=chaos_app.chaos.handle,
            s3=cluster.s3(),
            bucket=cluster.bucket,
            s3_prefix=cluster.s3_prefix,
            ledger=cluster.ledger,
            worker_logs="".join(w.text() for w in cluster.workers),
            bound_s=profile.redelivery_bound_s,
        )
        n = len(faults.exits)
        result.add("consumers or scheduler that exited on their own (restarted)", n)
        result.problems += faults.exits
        n = len(faults.orphans)
        result.add("job processes outliving their SIGKILLed consumer by 5 s", n, "0", n == 0)
        for kind in FAULTS:
            n = sum(f.kind == kind and f.injected for f in faults.faults)
            result.add(f"faults injected: {kind}", n, ">= 1", n >= 1)
        say(f"[{time.monotonic() - t0:5.1f} s] accounted; stopping every process")
        return Outcome(result, faults.faults, cluster.workdir, cluster.pids())
    finally:
        chaos_app.app.client = None
        closing = time.monotonic()
        cluster.close(keep_dir=profile.keep_dir)
        say(f"stopped in {time.monotonic() - closing:.1f} s")
        if profile.keep_dir:
            say(f"kept {cluster.workdir}")


def table(result: Audit, title: str) -> Table:
    t = Table(title=title)
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("target", justify="right")
    t.add_column("", justify="center")
    for row in result.rows:
        mark = "" if row.ok is None else ("[green]ok[/]" if row.ok else "[red]MISSED[/]")
        t.add_row(row.metric, row.value, row.target, mark)
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of submissions")
    parser.add_argument("--lease-ttl", type=float, default=2.0)
    parser.add_argument("--maintenance-interval", type=float, default=0.5)
    parser.add_argument("--fault-gap", type=float, default=4.0, help="seconds between faults")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, ledger)")
    args = parser.parse_args()
    profile = Profile(
        requests=args.requests,
        duration_s=args.duration,
        lease_ttl_s=args.lease_ttl,
        maintenance_interval_s=args.maintenance_interval,
        pause_s=2 * args.lease_ttl,
        fault_gap_s=args.fault_gap,
        seed=args.seed,
        keep_dir=args.keep,
    )
    console = Console(width=120)
    started = time.monotonic()
    outcome = run(profile, console.print)
    result, faults = outcome.audit, outcome.faults
    title = (
        f"Fault suite: {profile.requests} requests over {profile.duration_s:.0f} s, lease "
        f"{profile.lease_ttl_s} s, maintenance {profile.maintenance_interval_s} s "
        f"({time.monotonic() - started:.0f} s in all)"
    )
    console.print(table(result, title))
    for f in faults:
        console.print(f"  fault {f.kind} at {f.at:.3f}: {f.detail} {f.worker or ''}", markup=False)
    for line in result.notes + result.problems[:50]:
        console.print(f"  {line}", markup=False, highlight=False)
    if result.missed:
        console.print(f"[red]targets missed:[/] {', '.join(result.missed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
