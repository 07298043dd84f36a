"""A worker whose job processes cannot start (issue 25.4), with real processes: health says
degraded with the reason, its slots are not counted, it recovers when start-up works again,
and SIGTERM ends it within its grace period while a start-up fails or hangs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from jobcord.storage.apikeys import ApiKeyStore
from jobcord.storage.registry import ConsumerRegistry
from tests.apps import crashloop
from tests.conftest import ApiServer, WorkerProcess, health_cli, wait_for

APP = "tests.apps.crashloop:app"
QUEUE = "jobcord.crashloop.cpu"
FAST_HEALTH = {"JOBCORD_HEALTH_INTERVAL_S": "0.2", "JOBCORD_LOOP_STALE_AFTER_S": "1.5"}
#: The default start-up timeout: nothing here may wait for it.
SLOW_STARTUP = {"JOBCORD_CHILD_STARTUP_TIMEOUT_S": "600"}
#: The worker's --drain (the start_worker fixture's) and kill grace, plus a margin that is
#: generous for a loaded 2-core machine; far below the 600 s start-up timeout either way.
STOP_WITHIN_S = 15.0


def _registration(rds, worker: WorkerProcess) -> dict | None:
    return next((c for c in ConsumerRegistry(rds).live() if c["worker"] == worker.worker_id), None)


def _children(rds, worker: WorkerProcess) -> list[dict]:
    reg = _registration(rds, worker)
    return reg["children"] if reg else []


def _crash_loop(rds, worker: WorkerProcess, mode: str) -> None:
    """From now on every start-up fails (``mode``); the running children are killed, so
    each place starts again: children that started once and now die on every restart."""
    rds.set(crashloop.MODE, mode)
    ready = wait_for(
        lambda: [c for c in _children(rds, worker) if c["state"] == "ready"], 20, "ready children"
    )
    for child in ready:
        os.kill(child["pid"], signal.SIGKILL)


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (not reaped yet by whoever adopted it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def _sigterm_and_time(worker: WorkerProcess) -> float:
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):  # the fixture kills it
        worker.proc.wait(60)
    return time.monotonic() - started


def _assert_no_job_process_left(rds) -> None:
    pids = [int(p) for p in rds.lrange(crashloop.PIDS, 0, -1)]
    assert pids, "no start-up was recorded"
    wait_for(lambda: all(_gone(p) for p in pids), 5, f"the job processes {pids} to be gone")


@pytest.fixture
def api(jobcord_env, rds):
    server = ApiServer({**jobcord_env, **FAST_HEALTH}, [], app_ref=APP)
    key, _ = ApiKeyStore(rds).create(["crashloop"])
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as http:
        yield http
    server.stop()


def test_a_crash_looping_worker_is_degraded_counts_no_slots_and_recovers(
    api, client, rds, start_worker, jobcord_env
):
    env = {**jobcord_env, **FAST_HEALTH}
    worker = start_worker(APP, "--concurrency", "2", env={**FAST_HEALTH, **SLOW_STARTUP})

    def slots() -> int:
        [queue] = [q for q in api.get("/v1/queues").json()["queues"] if q["queue"] == QUEUE]
        return queue["slots"]

    def healthz() -> dict:
        return api.get("/healthz").json()

    wait_for(lambda: slots() == 2, 20, "both slots counted")
    wait_for(lambda: healthz()["status"] == "ok", 20, "a healthy worker")

    _crash_loop(rds, worker, "exit")
    reason = "2 of 2 job processes cannot start: child exited with code 3 during start-up"
    body = wait_for(
        lambda: (h := healthz())["status"] == "degraded" and h, 20, "health to say degraded"
    )
    wait_for(lambda: any(reason in p["reason"] for p in healthz()["stale_loops"]), 20, "all places")
    problems = healthz()["stale_loops"]
    [problem] = [p for p in problems if p["loop"] == "children"]
    assert problem["role"] == "consumer" and problem["process"] == worker.worker_id
    assert reason in problem["reason"], body
    # Its loops are fine: the reason is the children's, not a stale fetch loop.
    assert [p["loop"] for p in problems] == ["children"], problems
    cli = wait_for(lambda: (c := health_cli(env)).returncode == 1 and c, 20, "the CLI degraded")
    assert "DEGRADED" in cli.stdout and reason in " ".join(cli.stdout.split()), cli.stdout
    # No slot is serving capacity; the registration says why, and so does a waiting request.
    assert slots() == 0
    reg = _registration(rds, worker)
    assert reg is not None and reg["slots"] == 0 and reg["slots_configured"] == 2
    assert reason in reg["degraded"]
    waiting = crashloop.whoami.async_run_remote()
    why = waiting.status().waiting_reason
    assert why is not None and "can start" in why and "exited with code 3" in why, why
    # Restarts back off (1 s, 2 s, 4 s, ...): never a tight loop.
    retries = wait_for(
        lambda: (r := _retries(worker, "cpu-0")) and len(r) >= 3 and r, 30, "three failed starts"
    )
    assert retries[:3] == [1.0, 2.0, 4.0], retries

    rds.delete(crashloop.MODE)  # start-up works again: the next try starts
    wait_for(lambda: healthz()["status"] == "ok", 45, "health to recover")
    wait_for(lambda: slots() == 2, 20, "both slots counted again")
    assert _registration(rds, worker)["degraded"] is None
    assert isinstance(waiting.result(timeout=30), int)  # the request that waited is served
    assert crashloop.whoami.run_remote() in {c["pid"] for c in _children(rds, worker)}
    assert health_cli(env).returncode == 0


def _retries(worker: WorkerProcess, child: str) -> list[float]:
    """The back-offs the worker logged for ``child``'s failed start-ups, in order."""
    out = []
    for line in list(worker.lines):
        if '"child failed to start"' in line and f'"child": "{child}"' in line:
            out.append(float(json.loads(line)["retry_in_s"]))
    return out


@pytest.mark.parametrize("mode", ["exit", "hang"])
def test_sigterm_during_a_crash_loop_ends_the_worker_within_its_grace(rds, start_worker, mode):
    worker = start_worker(APP, "--concurrency", "2", env=SLOW_STARTUP)
    before = int(rds.get(crashloop.STARTUPS) or 0)
    _crash_loop(rds, worker, mode)
    if mode == "exit":  # both places failed at least once: one in back-off, or restarting
        wait_for(
            lambda: all(c["failed_starts"] for c in _children(rds, worker)), 20, "failed starts"
        )
    else:  # both places' new processes hang in on_startup
        wait_for(lambda: int(rds.get(crashloop.STARTUPS)) >= before + 2, 20, "hung start-ups")
    took = _sigterm_and_time(worker)
    assert worker.proc.returncode == 0, worker.log
    assert took < STOP_WITHIN_S, f"SIGTERM took {took:.1f} s:\n{worker.log}"
    _assert_no_job_process_left(rds)
    assert _registration(rds, worker) is None


def test_sigterm_while_the_first_start_up_hangs_ends_the_worker_at_once(rds, start_worker):
    rds.set(crashloop.MODE, "hang")
    worker = start_worker(APP, "--concurrency", "2", env=SLOW_STARTUP, wait=False)
    wait_for(lambda: int(rds.get(crashloop.STARTUPS) or 0) >= 2, 30, "both start-ups to hang")
    reg = wait_for(lambda: ConsumerRegistry(rds).live(), 10, "the registration")
    assert [c["slots"] for c in reg] == [0]  # starting children are no capacity
    took = _sigterm_and_time(worker)
    assert worker.proc.returncode == 0, worker.log
    assert took < STOP_WITHIN_S, f"SIGTERM took {took:.1f} s:\n{worker.log}"
    said = "consumer stopped while its job processes started"
    wait_for(lambda: said in worker.log, 5, f"its log to say so:\n{worker.log}")
    _assert_no_job_process_left(rds)
    assert not ConsumerRegistry(rds).live()


def test_a_child_exiting_on_the_first_start_up_ends_the_worker_with_the_error(rds, start_worker):
    rds.set(crashloop.MODE, "exit")
    worker = start_worker(APP, env=SLOW_STARTUP, wait=False)
    started = time.monotonic()
    worker.proc.wait(60)  # before: it restarted the child for child_startup_timeout_s
    assert time.monotonic() - started < STOP_WITHIN_S
    assert worker.proc.returncode not in (0, None)
    error = "child exited with code 3 during start-up"
    wait_for(lambda: error in worker.log, 5, f"the error in its log:\n{worker.log}")
    _assert_no_job_process_left(rds)
