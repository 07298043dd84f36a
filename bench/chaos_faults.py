"""The suite's faults, injected on a schedule into a running :class:`Cluster`.

SIGKILL a job process that is running a job; SIGKILL a whole consumer that is running
requests (job processes must die with it; a replacement is started); kill -9 Redis and
restart it on the same port and AOF, then resubmit every key; SIGSTOP the S3 server, then
SIGCONT; SIGSTOP a consumer past its lease (alternately the consumer alone and its whole
process group), then SIGCONT: the zombie-attempt case. Each fault is a :class:`Fault` record
of when and whom it hit, for the audit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import psutil
import redis

from jobcord.storage.keys import record_key, running_key

from .chaos_cluster import Cluster, Proc
from .chaos_model import Fault

__all__ = ["FAULTS", "Faults"]

FAULTS = ("kill-child", "kill-worker", "kill9-redis", "freeze-s3", "pause-worker")


class Faults:
    def __init__(
        self,
        cluster: Cluster,
        say: Callable[[str], None],
        resubmit: Callable[[], Counter[str]],
        *,
        first_s: float,
        gap_s: float,
        duration_s: float,
        s3_freeze_s: float,
        redis_down_s: float,
        pause_s: float,
    ) -> None:
        self.c = cluster
        self.say = say
        self.resubmit = resubmit  # every accepted key again: Counter of same / new / error
        self.first_s = first_s
        self.gap_s = gap_s
        self.duration_s = duration_s
        self.s3_freeze_s = s3_freeze_s
        self.redis_down_s = redis_down_s
        self.pause_s = pause_s
        self.r = redis.Redis(port=cluster.redis_port, decode_responses=True, socket_timeout=5)
        self.faults: list[Fault] = []
        self.orphans: list[int] = []  # job processes that outlived their SIGKILLed consumer
        self.killed: set[int] = set()  # consumers we SIGKILLed on purpose
        self.exits: list[str] = []  # processes that exited on their own (and were replaced)
        self._pauses = 0

    # -- who runs what ----------------------------------------------------------------------
    def running(self) -> dict[str, list[str]]:
        """Worker id -> its running request ids, from the records."""
        out: dict[str, list[str]] = {}
        running: list[str] = self.r.zrange(running_key(), 0, -1)  # type: ignore[assignment]
        for rid in running:
            worker = self.r.hget(record_key(rid), "worker")
            if worker:
                out.setdefault(str(worker), []).append(rid)
        return out

    def busy_worker(self, wait_s: float = 6.0) -> tuple[Proc, str, list[str]] | None:
        """A live, ready consumer that is running something now (the busiest), while another
        ready one is there to take its work over."""
        deadline = time.monotonic() + wait_s
        while True:
            by_pid = {int(w.split(":")[1]): (w, rids) for w, rids in self.running().items()}
            ready = [p for p in self.c.live_workers() if "consumer ready" in p.text()]
            busy = [(p, *by_pid[p.pid]) for p in ready if p.pid in by_pid]
            if busy and len(ready) >= 2:
                return max(busy, key=lambda b: len(b[2]))
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def busy_child(self, wait_s: float = 3.0) -> psutil.Process | None:
        """A consumer's job process that is running a job now."""
        deadline = time.monotonic() + wait_s
        while True:
            for w in self.c.live_workers():
                try:
                    kids = psutil.Process(w.pid).children()
                except psutil.NoSuchProcess:
                    continue
                for kid in kids:
                    try:
                        job_process = "spawn_main" in " ".join(kid.cmdline())
                    except psutil.Error:
                        continue
                    if job_process and self._in_job(kid.pid):
                        return kid
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def _in_job(self, pid: int) -> bool:
        """Has this process started a job it has not finished (the ledger's last word)?"""
        try:
            lines = self.c.ledger.read_text().splitlines()[-200:]
        except FileNotFoundError:
            return False
        last = [ln for ln in lines if f'"pid": {pid},' in ln]
        return bool(last) and '"ev": "start"' in last[-1]

    # -- faults -----------------------------------------------------------------------------
    def kill_child(self) -> Fault:
        kid = self.busy_child()
        if kid is None:
            return Fault("kill-child", time.time(), "not injected: no busy job process found")
        at = time.time()
        kid.send_signal(signal.SIGKILL)
        return Fault("kill-child", at, f"pid {kid.pid}")

    def kill_worker(self) -> Fault:
        busy = self.busy_worker()
        if busy is None:
            return Fault("kill-worker", time.time(), "not injected: no busy consumer found")
        proc, worker, _ = busy
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        at = time.time()
        self.killed.add(proc.pid)
        proc.popen.kill()  # SIGKILL the consumer only: its job processes must die with it
        proc.popen.wait(10)
        rids = self.running().get(worker, [])  # what it held when it died: to be recovered
        self.c.start_worker()  # a replacement; the survivor takes the requeued work first
        _gone, alive = psutil.wait_procs(kids, timeout=5)
        for kid in alive:  # an orphan: reported, and not left running
            self.orphans.append(kid.pid)
            with contextlib.suppress(psutil.Error):
                kid.kill()
        detail = (
            f"{proc.name} pid {proc.pid} running {len(rids)} requests; {len(kids)} job "
            f"processes, {len(alive)} outlived it"
        )
        return Fault("kill-worker", at, detail, worker, rids)

    def kill9_redis(self) -> Fault:
        at = time.time()
        self.c.kill9_redis()
        time.sleep(self.redis_down_s)
        self.c.start_redis()
        fault = Fault("kill9-redis", at, took_s=time.time() - at)
        # Every key submitted so far again, same input: each must answer its first id.
        fault.resubmitted = self.resubmit()
        n = sum(fault.resubmitted.values())
        fault.detail = f"down {fault.took_s:.1f} s; {n} keys resubmitted"
        return fault

    def freeze_s3(self) -> Fault:
        assert self.c.moto is not None
        at = time.time()
        self.c.moto.signal_group(signal.SIGSTOP)
        try:
            time.sleep(self.s3_freeze_s)
        finally:
            self.c.moto.signal_group(signal.SIGCONT)
        return Fault("freeze-s3", at, f"{self.s3_freeze_s:.1f} s", took_s=self.s3_freeze_s)

    def pause_worker(self) -> Fault:
        busy = self.busy_worker()
        if busy is None:
            return Fault("pause-worker", time.time(), "not injected: no busy consumer found")
        proc, worker, _ = busy
        whole = self._pauses % 2 == 1  # alternately the consumer alone, and its whole group
        self._pauses += 1
        at = time.time()
        if whole:
            proc.signal_group(signal.SIGSTOP)
        else:
            proc.signal(signal.SIGSTOP)
        try:
            rids = self.running().get(worker, [])  # what it holds, frozen
            time.sleep(self.pause_s)
        finally:
            proc.signal_group(signal.SIGCONT)
        what = "consumer and its job processes" if whole else "consumer process only"
        detail = f"{proc.name} pid {proc.pid} ({what}) {self.pause_s:.1f} s, {len(rids)} running"
        return Fault("pause-worker", at, detail, worker, rids, took_s=self.pause_s)

    def loop(self, t0: float, stop: threading.Event) -> None:
        """Every ``gap_s`` from ``first_s`` on, the next fault of :data:`FAULTS` (each at
        least once, more while ``duration_s`` lasts); checks on the processes in between."""
        actions = {
            "kill-child": self.kill_child,
            "kill-worker": self.kill_worker,
            "kill9-redis": self.kill9_redis,
            "freeze-s3": self.freeze_s3,
            "pause-worker": self.pause_worker,
        }
        for i in range(1000):
            at = t0 + self.first_s + i * self.gap_s
            if at + 2.0 > t0 + self.duration_s and i >= len(FAULTS):
                return
            while time.monotonic() < at:
                if stop.wait(min(0.5, max(0.0, at - time.monotonic()))):
                    return
                self.supervise(t0)
            kind = FAULTS[i % len(FAULTS)]
            for _try in range(3):  # a consumer hit while it ran nothing measures nothing
                try:
                    fault = actions[kind]()
                except Exception as exc:  # noqa: BLE001 - a fault that could not be injected
                    # is reported as such (the audit's "faults injected" rows), not a dead thread.
                    fault = Fault(kind, time.time(), f"not injected: {type(exc).__name__}: {exc}")
                self.faults.append(fault)
                self.say(f"[{time.monotonic() - t0:5.1f} s] {kind}: {fault.detail}")
                self.supervise(t0)
                if fault.running or kind not in ("kill-worker", "pause-worker"):
                    break
                time.sleep(0.5)

    def supervise(self, t0: float) -> None:
        """Like systemd or compose would: a consumer or scheduler that exited on its own is
        noted (its last log lines are evidence) and started again."""
        for proc in list(self.c.procs):
            if proc.name in ("redis", "moto") or proc.alive() or proc.pid in self.killed:
                continue
            if any(f"pid {proc.pid}:" in e for e in self.exits):
                continue
            tail = " | ".join(proc.text().strip().splitlines()[-3:])[-600:]
            note = f"{proc.name} pid {proc.pid}: exited {proc.popen.returncode} on its own: {tail}"
            self.exits.append(note)
            self.say(f"[{time.monotonic() - t0:5.1f} s] {note}")
            if proc.name == "scheduler":
                self.c.start_scheduler()
            else:
                self.c.start_worker()
