"""Containment with real processes: a timeout, a cancel or a killed worker ends the whole
tree of a job (helpers started with Popen, a fork-context multiprocessing child, one that
ignores SIGTERM, a double-forked daemon in a session of its own); the slot serves on; a job
past its memory limit ends out of memory and the worker lives.

Each runs twice: with the host's cgroups (here: a writable cgroup v2 tree and a v1 memory
controller, whatever ``detect`` finds) and with ``JOBCORD_CGROUP_ROOT=off`` (session,
subreaper and marker only; RLIMIT_DATA for memory).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from jobcord.consumers.cgroups import detect
from jobcord.storage.statuses import Status
from tests.apps import containment as jobs
from tests.conftest import descendants, wait_for

APP = "tests.apps.containment:app"
ALL_KINDS = ["popen", "fork", "stubborn", "daemon"]
MODES = {"cgroups": {}, "no-cgroups": {"JOBCORD_CGROUP_ROOT": "off"}}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _helpers(rds, tag: str, n: int) -> list[int]:
    wait_for(lambda: rds.get(f"jobcord:test:running:{tag}"), 30, f"{tag}'s helpers to start")
    pids = [int(p) for p in rds.lrange(f"jobcord:test:helpers:{tag}", 0, -1)]
    assert len(pids) == n, pids
    assert all(_alive(p) for p in pids)
    return pids


def _all_gone(pids: list[int], within_s: float, what: str) -> None:
    wait_for(lambda: not any(_alive(p) for p in pids), within_s, what)


@pytest.fixture(params=list(MODES))
def mode(request) -> dict[str, str]:
    return MODES[request.param]


def test_timeout_ends_every_helper_and_the_slot_serves_on(client, rds, start_worker, mode):
    worker = start_worker(APP, env=mode)
    handle = jobs.helpers_then_hang.async_run_remote("t", ALL_KINDS)
    pids = _helpers(rds, "t", len(ALL_KINDS))
    rec = handle.wait(20)
    assert rec.status is Status.TIMED_OUT, worker.log
    # The grace is 0.5 s in tests (JOBCORD_KILL_GRACE_S); the stubborn one needs the SIGKILL.
    _all_gone(pids, 3, "every helper to be killed after the timeout")
    assert jobs.echo.async_run_remote(7).result(timeout=10) == 7
    assert not any(_alive(p) for p in pids)
    assert "job processes contained" in "".join(worker.lines)


def test_cancel_ends_every_helper(client, rds, start_worker, mode):
    start_worker(APP, env=mode)
    handle = jobs.helpers_then_wait.async_run_remote("c", ALL_KINDS, 120)
    pids = _helpers(rds, "c", len(ALL_KINDS))
    assert handle.cancel() is Status.CANCELED  # the cancel waits for the tree to end
    assert handle.wait(10).status is Status.CANCELED
    _all_gone(pids, 3, "every helper to be killed after the cancel")
    assert jobs.echo.async_run_remote(8).result(timeout=10) == 8


def test_worker_shutdown_ends_every_helper(client, rds, start_worker, mode):
    worker = start_worker(APP, env=mode)
    jobs.helpers_then_wait.async_run_remote("s", ALL_KINDS, 120)
    pids = _helpers(rds, "s", len(ALL_KINDS))
    worker.stop()  # SIGTERM: drains for --drain (2 s), then hands the request back
    assert worker.proc.returncode is not None
    assert not any(_alive(p) for p in pids), "helpers outlived their worker's shutdown"


def _watchdog_of(worker) -> int:
    for pid in descendants(worker.proc.pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"watchdog.py" in cmd:
            return pid
    raise AssertionError("the worker has no watchdog")


def test_sigkilled_worker_leaves_no_helper(client, rds, start_worker, mode):
    worker = start_worker(APP, env=mode)
    watchdog = _watchdog_of(worker)
    jobs.helpers_then_wait.async_run_remote("k", ALL_KINDS, 120)
    pids = _helpers(rds, "k", len(ALL_KINDS))
    worker.kill()  # SIGKILL: nothing of the worker runs its own cleanup
    _all_gone(pids, 3, "the watchdog to end every helper of the dead worker")
    wait_for(lambda: not _alive(watchdog), 5, "the watchdog to exit")


def _leave_helpers_behind(rds, start_worker, tag: str) -> list[int]:
    """A worker and its watchdog SIGKILLed together (an OOM kill, say) mid-job: the helpers
    that outlived them. Empty when they died too early to sweep (see below)."""
    worker = start_worker(APP)
    watchdog = _watchdog_of(worker)
    jobs.helpers_then_wait.async_run_remote(tag, ["popen", "daemon"], 120)
    pids = _helpers(rds, tag, 2)
    os.kill(watchdog, signal.SIGKILL)
    worker.kill()
    time.sleep(0.5)  # the job process dies of PR_SET_PDEATHSIG; its helpers must not
    return [p for p in pids if _alive(p)]


def test_next_worker_start_ends_what_a_dead_worker_left(client, rds, start_worker):
    # The sweep is host-wide by design (a dead worker's helpers hold a GPU whoever runs
    # next), so a worker another test starts at the same moment may do it first: then the
    # leftovers are gone already and this worker has nothing to end. Try again a few times
    # rather than pass without seeing our own worker sweep.
    alive: list[int] = []
    for attempt in range(4):
        alive = _leave_helpers_behind(rds, start_worker, f"n{attempt}")
        if alive:
            break
    assert alive, "no helper outlived its job process: nothing was left to sweep"
    try:
        second = start_worker(APP)
        _all_gone(alive, 5, "the next worker on this host to end the leftovers")
        wait_for(
            lambda: "ended what a dead worker left on this host" in "".join(second.lines),
            5,
            "the next worker to say it ended a dead worker's leftovers",
        )
    finally:
        for p in alive:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_job_past_its_memory_limit_ends_out_of_memory(client, rds, start_worker, mode):
    worker = start_worker(APP, env=mode)
    handle = jobs.grow.async_run_remote("m", 1024)  # 1 GiB against a 256 MiB limit
    rec = handle.wait(60)
    assert rec.status is Status.FAILED, worker.log
    assert rec.error.type == "OutOfMemory", rec.error
    assert rec.error.message == "out of memory: limit 256 MiB"
    assert rec.worker_losses == 0
    assert rds.get("jobcord:test:grow:m") == "2"  # retries=1: the job's own policy
    assert jobs.grow.async_run_remote("small", 16).result(timeout=20) == 16  # the worker serves on
    assert worker.proc.poll() is None


def test_helper_past_the_limit_ends_the_attempt_out_of_memory(client, rds, start_worker):
    if detect().memory_mode == "rlimit":
        pytest.skip("no writable memory cgroup on this host: an rlimit does not reach helpers")
    start_worker(APP)
    rec = jobs.grow_in_helper.async_run_remote("h", 1024).wait(60)
    assert rec.status is Status.FAILED
    assert rec.error.type == "OutOfMemory", rec.error
    assert "limit 256 MiB" in rec.error.message


def test_escaped_helper_holding_gpu_memory_is_killed_before_the_next_job(
    client, rds, start_worker, tmp_path
):
    held = tmp_path / "gpu-processes"
    held.write_text("")
    fake = [{"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80, "uuid": "GPU-h100-c",
             "processes_file": str(held)}]  # fmt: skip
    env = {"JOBCORD_FAKE_GPUS": json.dumps(fake), "JOBCORD_CGROUP_ROOT": "off"}
    worker = start_worker(APP, "--gpus", "all", env=env)
    handle = jobs.escape_then_hang.async_run_remote("g", str(held))
    (escapee,) = _helpers(rds, "g", 1)
    assert handle.wait(20).status is Status.TIMED_OUT
    _all_gone([escapee], 10, "the escaped helper NVML shows on the GPU to be killed")
    assert jobs.gpu_echo.async_run_remote(5).result(timeout=20) == 5
    log = "".join(worker.lines)
    assert "gpu memory still held by a process of an ended job; killed" in log
