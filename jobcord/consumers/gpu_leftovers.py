"""Before a GPU takes its next job process: no process of the last one holds memory on it.

A job tree is killed and reaped before its place is reused, but a helper that escaped it
(``setsid``, a cleared environment, a process the job handed to someone else) may still hold
device memory; the next job would then start on a GPU that is partly taken. NVML lists the
processes holding memory on each device: each is ours to kill if it descends from this
consumer (the subreaper adopted it), carries one of this consumer's tree markers, or was
once seen in the ended tree; a process of a live sibling (a shared GPU) is left alone, and
so is a stranger's, which is logged and counted, never killed. NVML is read on a thread of
its own: a hung driver call never holds up the supervisor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import structlog

from .devices import gpu_processes
from .metrics import GPU_LEFTOVERS
from .trees import marker_of, proc_table

if TYPE_CHECKING:
    from .children import ChildProcess
    from .containment import Keeper

__all__ = ["LeftoverCheck"]

log = structlog.get_logger("jobcord.gpu_leftovers")

#: Past this, the place is used anyway (a process NVML still lists, killed, will not go).
_GIVE_UP_S = 15.0


class LeftoverCheck:
    def __init__(self, keeper: Keeper) -> None:
        self.keeper = keeper
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="jobcord-gpu-leftovers")
        self._checks: dict[int, Future[bool]] = {}  # id(child) -> a check under way
        self._since: dict[int, float] = {}  # id(child) -> when its checks began

    def clear(self, child: ChildProcess, now: float) -> bool:
        """Whether the child's GPUs hold nothing of its last tree (asks NVML on the side;
        False while it answers, or while a leftover it found is being killed)."""
        devices = list(child.config.devices)
        if not devices:
            return True
        key = id(child)
        since = self._since.setdefault(key, now)
        if now - since > _GIVE_UP_S:
            log.error("gpu memory of an ended job still held; starting anyway", child=child.name)
            self._checks.pop(key, None)
            self._since.pop(key, None)
            return True
        check = self._checks.get(key)
        if check is None:
            self._checks[key] = self._pool.submit(self._check, child)
            return False
        if not check.done():
            return False
        del self._checks[key]
        try:
            clear = check.result()
        except Exception:  # noqa: BLE001 - a failed look is no reason to hold the GPU
            log.exception("gpu leftover check failed")
            clear = True
        if clear:
            self._since.pop(key, None)
        return clear

    def _check(self, child: ChildProcess) -> bool:
        holders = gpu_processes(list(child.config.devices))
        if not holders:
            return True
        siblings = self.keeper.live_pids()
        known = child.last_known  # every pid seen in the ended tree (itself forgotten)
        clear = True
        for pid, used, uuid in holders:
            if pid in siblings:
                continue
            if pid in known or self._ours(pid):
                log.warning(
                    "gpu memory still held by a process of an ended job; killed",
                    child=child.name, pid=pid, device=uuid, used_bytes=used,
                )  # fmt: skip
                GPU_LEFTOVERS.labels(uuid, "killed").inc()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                clear = False
            else:
                log.warning(
                    "gpu memory held by a process outside this consumer",
                    child=child.name, pid=pid, device=uuid, used_bytes=used,
                )  # fmt: skip
                GPU_LEFTOVERS.labels(uuid, "foreign").inc()
        if not clear:
            time.sleep(0.05)  # the kill lands; the next look confirms
        return clear

    def _ours(self, pid: int) -> bool:
        """A descendant of this process, or carrying one of its markers."""
        marker = marker_of(pid)
        if marker is not None and marker.startswith(f"{self.keeper.owner}/"):
            return True
        table = proc_table()
        me, seen = os.getpid(), set()
        while pid in table and pid not in seen and pid > 1:
            seen.add(pid)
            pid = table[pid].ppid
            if pid == me:
                return True
        return False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
