"""The consumer's parent process: it supervises its children and never runs or relays a job.

Children fetch, run and end their attempts themselves (``jobcord.consumers.attempts``); the parent
watches the board and the children's exits, in one supervised loop:

- a timeout passes: the attempt ends TIMED_OUT at once (fenced by its lease token), then
  its process is killed (SIGTERM, SIGKILL after the grace period) and replaced;
- a cancel arrives (pub/sub, or the lease renewal's reply): the same, CANCELED;
- a lease is reported lost: the attempt belongs to someone else now; its process is killed
  if it still runs it a second later (its own finish may have taken the lease just then);
- a child dies: each attempt it held ends as a lost worker (requeued, or FAILED after
  ``JOBCORD_MAX_WORKER_LOSSES``), or out of memory when its cgroup counted an OOM kill
  (retried by the job's own policy); attempts that only shared a process with one the parent
  stopped go back to the front of their queue uncounted; what is left of its tree is killed,
  and a new child takes the place once none of it is left (and, on a GPU, once NVML shows
  no process of it holding device memory: ``jobcord.consumers.gpu_leftovers``);
- a lease cannot be renewed for a whole TTL (Redis unreachable: a partition): the attempt
  is ended here (self-fencing), about when recovery hands the request to another worker;
- a job waits on its own children's requests: its slot is lent (one more child like it);
- a child fails its start-up: on the consumer's first start that ends the consumer with the
  error; later (a crash loop) the place is tried again after a back-off, counts no slot
  meanwhile, and health says why (``jobcord.consumers.startups``).

The parent's writes go through a small thread pool, so a slow Redis never delays a kill.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from multiprocessing.connection import wait
from typing import Any

import redis
import structlog

from jobcord.scheduler.jobspec import AppRegistry
from jobcord.scheduler.supervision import LOOPS, LoopState, run_supervised
from jobcord.storage.errors import JobcordError
from jobcord.storage.keys import child_wake_key
from jobcord.storage.requests import RequestStore

from .board import Board, Phase, Running
from .child import EXIT_POISONED, EXIT_RECYCLE, ChildConfig
from .children import ChildProcess, Life, StopReason
from .containment import Keeper
from .endings import AttemptRef, Endings
from .gpu_leftovers import LeftoverCheck
from .limits import memory_limit_for, out_of_memory_message
from .metrics import CHILD_RESTARTS, SELF_FENCED, JobCounts
from .protocol import Fence, LoopFailed, Ready, StartupFailed, Stats, Waiting
from .startups import children_problem, exit_reason, startup_failed_reason

__all__ = ["Supervisor", "StartupError", "Place"]

log = structlog.get_logger("jobcord.supervisor")

#: How often the loop looks at deadlines when nothing else wakes it (a child's exit or
#: message wakes it at once).
_TICK_S = 0.05
#: After a lease is reported lost, how long the child may still be ending the attempt itself.
_LOST_GRACE_S = 1.0
#: A stopped attempt's process is signalled once its outcome is written, or after this long.
_SIGNAL_AFTER_S = 1.0
#: A borrowed child no waiting job needs is kept this long, for the next wait.
_LEND_LINGER_S = 5.0


class StartupError(JobcordError):
    pass


class Place:
    """What a place needs to start a child: its config, and the name it goes by."""

    def __init__(self, config: ChildConfig, name: str) -> None:
        self.config = config
        self.name = name


class Supervisor:
    def __init__(
        self,
        app: AppRegistry,
        store: RequestStore,
        endings: Endings,
        counts: JobCounts,
        board: Board,
        places: list[Place],
        settings: Any,
        *,
        max_lent: int,
        make_borrowed: Callable[[int, ChildProcess], Place],
        on_gone: Callable[[ChildProcess], None] | None = None,
        memory_default: int | None = None,
    ) -> None:
        self.app = app
        self.store = store
        self.endings = endings
        self.counts = counts
        self.board = board
        self.settings = settings
        self.max_lent = max_lent
        self._make_borrowed = make_borrowed
        self._on_gone = on_gone  # an elastic child exited for good (its devices are free)
        self.memory_default = memory_default
        self.keeper = Keeper.get(settings)
        self._leftovers = LeftoverCheck(self.keeper)
        #: (request id, token) -> monotonic time of the last renewal Redis answered (set by
        #: the lease keeper); an attempt past a whole TTL without one is ended here.
        self.renewed_at: Callable[[str, str], float | None] = lambda _rid, _token: None
        self.children = [
            ChildProcess(
                p.config,
                board.child(p.config.place),
                board.handle(),
                settings,
                name=p.name,
                kill_grace_s=settings.kill_grace_s,
                startup_timeout_s=settings.child_startup_timeout_s,
                keeper=self.keeper,
                memory_default=memory_default,
            )
            for p in places
        ]
        self._job_names = list(app.jobs)
        self._lock = threading.RLock()
        self._writes = ThreadPoolExecutor(4, thread_name_prefix="jobcord-outcomes")
        self._lent: dict[Fence, ChildProcess] = {}  # waiting jobs whose slot is lent
        self._spare_since: float | None = None  # since when more are borrowed than needed
        self._lost: dict[tuple[int, int], float] = {}  # (place, entry seq) -> kill after
        self._pending: dict[str, str] = {}  # stopped attempts whose outcome is being written
        #: place -> when its next try is due, after a failed start-up (``startups.BACKOFF_S``)
        self._restart_at: dict[int, float] = {}
        self._gone = Stats()  # totals of children that exited
        self._gone_counts = JobCounts()
        self._shutting_down = False
        self._stopped = threading.Event()
        self.state = LoopState("supervisor", 1.0, backoff_max_s=1.0)
        self.fetch_state = LoopState("fetch", 1.0, backoff_max_s=10.0)
        self._fetch_seen: dict[int, float] = {}
        self._thread = threading.Thread(target=self._loop, name="jobcord-supervisor", daemon=True)
        self._startup_failure: str | None = None
        #: Until :meth:`start` returns: a start-up that fails now ends the consumer.
        self._warming = True

    # -- start and stop ----------------------------------------------------------------------
    def start(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Start every child and wait until all are warm (startup hooks done): True then;
        False as soon as ``stopping()`` says so (SIGTERM while a start-up hangs: the caller's
        :meth:`close` kills what started). A start-up that fails raises StartupError."""
        LOOPS.add(self.state)
        LOOPS.add(self.fetch_state)
        try:
            with self._lock:
                for child in self.children:
                    child.start()
            self._thread.start()
            deadline = time.monotonic() + self.settings.child_startup_timeout_s + 5
            while time.monotonic() < deadline:
                with self._lock:
                    if self._startup_failure is not None:
                        raise StartupError(self._startup_failure)
                    if all(c.life is Life.READY for c in self.children):
                        return True
                if stopping():
                    return False
                time.sleep(0.02)
            raise StartupError("children did not become ready in time")
        finally:
            with self._lock:
                self._warming = False

    def drain(self, drain_s: float) -> None:
        """Take no more work; running attempts get ``drain_s`` to end, then are handed back
        (uncounted) and their processes killed; idle children run their shutdown hooks."""
        with self._lock:
            self._shutting_down = True
            self._restart_at.clear()
            for child in self.children:
                child.retiring = True
                child.board.ask_stop()
                if child.life is Life.STARTING:
                    child.signal_stop()  # a start-up (it may hang) is not waited for
                self._wake(child)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self._busy():
            time.sleep(0.05)
        with self._lock:
            for child in self.children:
                for entry in child.board.running():
                    self._stop(child, entry, StopReason.SHUTDOWN)
        deadline = time.monotonic() + self.settings.kill_grace_s + 5
        while time.monotonic() < deadline and any(c.alive for c in self.children):
            time.sleep(0.05)
        with self._lock:
            for child in self.children:
                child.kill_now()

    def close(self) -> None:
        self._stopped.set()
        if self._thread.ident is not None:  # started (a failed start may not have got there)
            self._thread.join(5)
        with self._lock:
            for child in self.children:
                if child.alive:
                    child.kill_now()
                    child.reap()
                deadline = time.monotonic() + 5
                while not child.tree_gone() and time.monotonic() < deadline:
                    child.end_tree()
                    time.sleep(0.02)
        self._writes.shutdown(wait=True)
        self._leftovers.close()
        self.keeper.release()
        LOOPS.unregister(self.state)
        LOOPS.unregister(self.fetch_state)

    def _busy(self) -> bool:
        with self._lock:
            return any(c.alive and c.board.running() for c in self.children)

    # -- elastic places: the autoscaler adds and retires children ----------------------------
    def add_child(self, make: Callable[[int], Place]) -> ChildProcess | None:
        """Start a child in a free place (``make``: place number -> its Place); it serves
        once warm. None when the board has no free place."""
        with self._lock:
            if self._shutting_down:
                return None
            index = self._free_place()
            if index is None:
                return None
            place = make(index)
            child = ChildProcess(
                place.config,
                self.board.child(index),
                self.board.handle(),
                self.settings,
                name=place.name,
                kill_grace_s=self.settings.kill_grace_s,
                startup_timeout_s=self.settings.child_startup_timeout_s,
                keeper=self.keeper,
                memory_default=self.memory_default,
            )
            child.elastic = True
            self.children.append(child)
            try:
                child.start()
            except Exception as exc:  # noqa: BLE001 - the scaler tries again next tick
                log.error("child did not start", child=child.name, error=str(exc))
                self.children.remove(child)
                return None
            return child

    def retire(self, child: ChildProcess) -> None:
        """Let ``child`` go once idle (a running attempt ends first); it is not replaced."""
        with self._lock:
            if child.retiring or not child.alive:
                return
            child.retiring = True
            child.board.ask_stop()
            if child.life is Life.STARTING:
                child.signal_stop()  # nothing to finish: a cold start that is not needed
        self._wake(child)  # a Redis call: never under the lock (it looks each second anyway)

    # -- what others ask ----------------------------------------------------------------------
    def held(self) -> dict[str, str]:
        """Leases to renew: every attempt a live child shows on the board, and those whose
        outcome is being written. Read without the supervisor's lock (the board is read
        lock-free), so a slow spawn never delays a renewal."""
        out = dict(self._pending)
        for child in list(self.children):
            if child.alive:
                for entry in child.board.running():
                    out[entry.request_id] = entry.token
        return out

    def stop_request(self, request_id: str, token: str | None, reason: str) -> None:
        """From the lease keeper: ``cancel`` (asked by a caller) or ``lost`` (the lease is
        another attempt's now) for the attempt of ``request_id`` (holding ``token``, if
        known). An attempt that is ending already keeps its outcome."""
        with self._lock:
            for child in self.children:
                for entry in child.board.running():
                    if entry.request_id != request_id or (token and entry.token != token):
                        continue
                    if entry.phase is Phase.ENDING:
                        return
                    if reason == "lost":
                        self._lost.setdefault(
                            (child.config.place, entry.seq), time.monotonic() + _LOST_GRACE_S
                        )
                    else:
                        self._stop(child, entry, StopReason.CANCEL)
                    return

    def running_by_job(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        with self._lock:
            for child in self.children:
                for entry in child.board.running():
                    job = self._job_name(entry.job)
                    key = (self.app.name, job)
                    out[key] = out.get(key, 0) + 1
        return out

    def processes(self) -> list[dict[str, Any]]:
        """Each child as the dashboard and metrics show it: name, pid, state, what it runs."""
        out = []
        for child in list(self.children):
            entries = child.board.running() if child.alive else []
            out.append(
                {
                    "name": child.name,
                    "pid": child.pid,
                    "state": child.life.value,
                    "running": [e.request_id for e in entries],
                    "running_jobs": [self._job_name(e.job) for e in entries],
                    "jobs_done": child.board.jobs_done if child.alive else 0,
                    "restarts": child.restarts,
                    "failed_starts": child.start_failures.count,
                    "retiring": child.retiring,
                }
            )
        return out

    def ready_slots(self) -> int:
        """Serving capacity: this consumer's own places whose process is ready (a place
        starting, restarting or failing its start-up serves nothing)."""
        return sum(1 for c in list(self.children) if c.ready and not c.borrowed)

    def problems(self) -> dict[str, str]:
        """What the consumer's health report says is wrong, by name: ``children`` while
        places of its own fail their start-up (a crash loop). Read without the lock, as
        :meth:`held` is: the heartbeat that asks must never wait on a spawn."""
        own = [c for c in list(self.children) if not (c.borrowed or c.elastic or c.retiring)]
        failing = [c.start_failures for c in own if c.start_failures.count and not c.ready]
        why = children_problem(failing, len(own), time.monotonic())
        return {"children": why} if why else {}

    def child_stats(self) -> list[Stats]:
        with self._lock:
            return [self._gone_counts.snapshot(), *(c.stats for c in self.children if c.alive)]

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        run_supervised(self.state, self._pass, self._stopped, pause_s=0.0, first_pause=False)

    def _pass(self) -> None:
        with self._lock:
            waits: dict[Any, ChildProcess] = {}
            for child in self.children:
                if child.conn is not None:
                    waits[child.conn] = child
                if child.process is not None:
                    waits[child.exit_handle] = child
        if not waits:
            time.sleep(_TICK_S)
        ready = wait(list(waits), _TICK_S) if waits else []
        with self._lock:
            for handle in ready:
                child = waits[handle]
                if handle is child.conn:
                    self._read(child)
            for handle in ready:
                child = waits[handle]
                if child.process is not None and handle == child.exit_handle:
                    self._exited(child)
            now = time.monotonic()
            for child in list(self.children):
                child.board.beat()
                self._watch(child, now)
            self.keeper.reap_adopted()
            self._retire_spares(now)
            self._mirror_fetch_health()

    def _read(self, child: ChildProcess) -> None:
        try:
            while child.conn is not None and child.conn.poll():
                self._message(child, child.conn.recv())
        except (EOFError, OSError):
            pass  # it exited: its sentinel says so

    def _message(self, child: ChildProcess, msg: object) -> None:
        if isinstance(msg, Stats):
            child.stats = msg
        elif isinstance(msg, Ready):
            child.life = Life.READY
            child.was_ready = True
            self._restart_at.pop(child.config.place, None)
            failed = child.start_failures.count
            child.start_failures.cleared()
            log.info(
                "child ready",
                child=child.name,
                pid=msg.pid,
                devices=child.devices or None,
                **({"after_failed_starts": failed} if failed else {}),
            )
        elif isinstance(msg, StartupFailed):
            log.error("child startup failed", child=child.name, traceback=msg.traceback)
            child.start_error = startup_failed_reason(msg.traceback)
            if self._startup_failure is None and self._ends_consumer(child):
                self._startup_failure = f"{child.name}: on_startup failed:\n{msg.traceback}"
            child.signal_stop()
        elif isinstance(msg, Waiting):
            self._waiting(child, msg.fence, msg.on)
        elif isinstance(msg, LoopFailed):
            self.fetch_state.failed_elsewhere(f"{child.name}: {msg.error}")
        else:  # nothing else is ever sent: a confused child is replaced
            log.error("child message refused", child=child.name, got=repr(msg)[:200])
            child.replace_reason = "protocol violation"
            child.signal_stop()

    def _watch(self, child: ChildProcess, now: float) -> None:
        place = child.config.place
        if child.life is Life.GONE:
            if child.pending_start is not None:
                self._start_when_clear(child, now)
                return
            when = self._restart_at.get(place)
            if when is not None and now >= when and not self._shutting_down:
                del self._restart_at[place]
                child.pending_start, child.clearing_since = "startup failed", now
                self._start_when_clear(child, now)
            return
        if child.life is Life.STARTING and now > child.startup_deadline:
            log.error("child startup timed out", child=child.name)
            child.start_error = f"start-up took longer than {child.startup_timeout_s:g} s"
            if self._startup_failure is None and self._ends_consumer(child):
                self._startup_failure = f"{child.name}: {child.start_error}"
            child.signal_stop()
        if child.signal_at is not None and now >= child.signal_at:
            child.signal_at = None
            child.signal_stop()  # its outcome is not written yet: the process goes anyway
        if child.life is Life.STOPPING:
            if child.kill_at is not None and now >= child.kill_at:
                child.kill_now()
            return
        if child.life is not Life.READY:
            return
        stopping = False
        for entry in child.board.running():
            if Fence(entry.request_id, entry.attempt) in child.stopped:
                continue  # being stopped: its outcome is on its way
            running = entry.phase in (Phase.RUNNING, Phase.BATCH)
            if running and entry.deadline is not None and now > entry.deadline:
                self._stop(child, entry, StopReason.TIMEOUT)  # a batch's members, each
                stopping = True
                continue
            lost_after = self._lost.get((place, entry.seq))
            if lost_after is not None and now >= lost_after:
                self._stop(child, entry, StopReason.LOST)
                stopping = True
            elif running and self._unrenewed_for(entry, now) > self.settings.lease_ttl_s:
                self._stop(child, entry, StopReason.FENCED)
                stopping = True
        if stopping:
            return

    # -- stopping attempts ----------------------------------------------------------------------
    def _stop(self, child: ChildProcess, entry: Running, reason: StopReason) -> None:
        """Record the attempt's outcome (fenced by its token), then kill its process: in
        that order, so that a job the signal wakes early (a C sleep returns on SIGTERM)
        cannot record a success over its timeout or cancel. A write that Redis delays past
        _SIGNAL_AFTER_S does not delay the kill: the GPU is freed, and the lease is renewed
        from here until the outcome is written."""
        fence = Fence(entry.request_id, entry.attempt)
        if fence in child.stopped:
            return
        child.stopped[fence] = reason
        self._lost.pop((child.config.place, entry.seq), None)
        ref = AttemptRef(entry.request_id, self.app.name, self._job_name(entry.job), entry.attempt)
        if reason is StopReason.CANCEL and entry.phase is Phase.BATCH:
            # One request of a batch: the call goes on for the others; this one's outcome
            # is written now, and what the call returns for it is refused.
            log.info("request canceled while running", request_id=entry.request_id)
            self._write(self.endings.canceled, ref, entry.token)
            return
        child.replace_reason = child.replace_reason or reason.value
        if reason is StopReason.LOST:
            log.warning("lease lost; attempt abandoned", request_id=entry.request_id)
            child.signal_stop()
            return
        if reason is StopReason.FENCED:
            # Redis has not answered a renewal for a whole lease: recovery is handing the
            # request to another worker now. Nothing can be written; free the device.
            log.error(
                "lease not renewed for a whole TTL (Redis unreachable?); attempt ended here",
                request_id=entry.request_id,
                lease_ttl_s=self.settings.lease_ttl_s,
            )
            SELF_FENCED.inc()
            child.signal_stop()
            return
        if reason is StopReason.TIMEOUT:
            timeout_s = round(entry.deadline - entry.started, 3) if entry.deadline else 0.0
            log.warning("request timed out", request_id=entry.request_id, timeout_s=timeout_s)
            write: tuple[Callable[..., Any], tuple[Any, ...]] = (
                self.endings.timed_out,
                (ref, entry.token, timeout_s),
            )
        elif reason is StopReason.CANCEL:
            log.info("request canceled while running", request_id=entry.request_id)
            write = (self.endings.canceled, (ref, entry.token))
        else:
            write = (self.endings.preempted, (entry.request_id, entry.token, "consumer shut down"))
        self._pending[entry.request_id] = entry.token
        due = time.monotonic() + _SIGNAL_AFTER_S
        child.signal_at = due if child.signal_at is None else min(child.signal_at, due)
        self._writes.submit(self._record_then_signal, child, entry.request_id, *write)

    def _record_then_signal(
        self, child: ChildProcess, request_id: str, fn: Callable[..., Any], args: tuple
    ) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - its lease runs out and recovery takes over
            log.exception("outcome not recorded", request_id=request_id)
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
                child.signal_at = None
                child.signal_stop()

    def _write(self, fn: Callable[..., Any], *args: Any) -> None:
        def write() -> None:
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - its lease runs out and recovery takes over
                log.exception("outcome not recorded", request_id=str(args[0]))

        self._writes.submit(write)

    def _exited(self, child: ChildProcess) -> None:
        """The child's process ended: end what it held, fold its totals, replace it."""
        entries = child.board.running()
        killed = child.life is Life.STOPPING
        never_ready = not child.was_ready
        stopped = child.stopped
        out_of_memory = child.oom_kills() > child.oom_kills_at_start
        code = child.reap()
        self._gone_counts.add(child.stats)
        for entry in entries:
            fence = Fence(entry.request_id, entry.attempt)
            if fence in stopped:
                continue
            ref = AttemptRef(
                entry.request_id, self.app.name, self._job_name(entry.job), entry.attempt
            )
            if out_of_memory:  # the kernel ended it for its limit: the job's own failure
                message = out_of_memory_message(self._memory_limit(ref.job))
                log.warning("job process out of memory", request_id=ref.request_id, error=message)
                self._write(self.endings.out_of_memory, ref, entry.token, message)
            elif killed:  # a sibling's stop (or a shutdown) took its process down
                self._write(self.endings.preempted, entry.request_id, entry.token, "preempted")
            else:
                log.warning("job process died", request_id=entry.request_id, exit_code=code)
                self._write(
                    self.endings.worker_lost, ref, entry.token, f"job process died (exit {code})"
                )
        for fence, holder in list(self._lent.items()):
            if holder is child:  # its waiting job is gone: the lent slot is not needed
                self._waiting(child, fence, False)
        # An autoscaled or borrowed child that failed its startup is not restarted in place:
        # it is gone; the autoscaler decides (with a backoff) where and whether to try again,
        # and a waiting job's next wait borrows anew.
        failed_start = (child.elastic or child.borrowed) and never_ready
        failed_start = failed_start and child.replace_reason is None
        if child.retiring or self._shutting_down or failed_start:
            log.info("child exited", child=child.name, exit_code=code, failed_start=failed_start)
            child.settle_tree()  # its devices go back only once nothing of it is left
            if (child.borrowed or child.elastic) and not self._shutting_down:
                self.children.remove(child)  # its place is free for the next one
            if child.elastic and self._on_gone is not None:
                self._on_gone(child)
            return
        if never_ready and child.replace_reason is None:
            # Its startup failed: on the consumer's first start that ends the consumer with
            # the error; later (a crash loop), try again after a pause that doubles, not in
            # a tight loop, and say so in health (``problems``).
            why = child.start_error or exit_reason(code)
            if self._startup_failure is None and self._ends_consumer(child):
                self._startup_failure = f"{child.name}: {why}"
            self._failed_start(child, why)
            return
        if code == EXIT_POISONED:
            why = "cuda context poisoned"
        elif code == EXIT_RECYCLE:
            why = "recycled (max jobs or GPU memory held)"
        elif out_of_memory:
            why = "out of memory"
        else:
            why = child.replace_reason or f"died (exit {code})"
        child.pending_start = why
        child.clearing_since = time.monotonic()
        self._start_when_clear(child, child.clearing_since)

    def _start_when_clear(self, child: ChildProcess, now: float) -> None:
        """Start the place's next process once nothing of the last one's tree is left and
        its GPUs hold no memory of it; until then, kill again what is left."""
        if self._shutting_down:
            child.pending_start = None
            return
        if now < child.clear_next_at:
            return
        if not child.tree_gone():
            child.end_tree()
            # Look again in a moment: a process in D state (stuck in a driver) may take
            # long, and each look reads /proc; said once in a while, never given up on
            # silently.
            child.clear_next_at = now + 0.2
            since = child.clearing_since or now
            if now - since > 10 and now - getattr(child, "_clear_said", 0.0) > 10:
                child._clear_said = now  # type: ignore[attr-defined]
                log.error("a process of the last job tree will not die (D state?)",
                          child=child.name, waiting_s=round(now - since))  # fmt: skip
            return
        if not self._leftovers.clear(child, now):
            return
        why, child.pending_start = child.pending_start, None
        self._start(child, why or "replaced")

    def _start(self, child: ChildProcess, why: str) -> None:
        child.restarts += 1
        CHILD_RESTARTS.labels(child.name, why.split(" ")[0]).inc()
        log.info("child replaced", child=child.name, reason=why)
        child.replace_reason = None
        try:
            child.start()
        except Exception as exc:  # noqa: BLE001 - try again later, never take the loop down
            self._failed_start(child, f"could not spawn the job process: {exc}")

    def _failed_start(self, child: ChildProcess, why: str) -> None:
        """Count a failed start-up of ``child``'s place, and try again after the back-off."""
        now = time.monotonic()
        backoff = child.start_failures.failed(why, now)
        self._restart_at[child.config.place] = now + backoff
        log.error(
            "child failed to start",
            child=child.name,
            reason=why,
            failures_in_a_row=child.start_failures.count,
            retry_in_s=backoff,
        )

    def _ends_consumer(self, child: ChildProcess) -> bool:
        """Whether ``child``'s failed start-up ends the consumer: one of its own places,
        on its first start (later, a place that fails is retried: a crash loop)."""
        return self._warming and not (child.borrowed or child.elastic)

    # -- lending: a job waiting on its children does not hold the slot they need -------------
    def _waiting(self, child: ChildProcess, fence: Fence, on: bool) -> None:
        """A job started or stopped waiting on requests it made. Borrowed children are
        started as needed and retired only after _LEND_LINGER_S spare, so that a job waiting
        on its children one after another (fan-out, then each result) reuses one warm child
        rather than starting a process per wait."""
        if not on:
            self._lent.pop(fence, None)
            return
        if fence in self._lent or self._shutting_down:
            return
        if len(self._lent) >= self.max_lent:
            log.warning("no slot lent: JOBCORD_MAX_LENT_SLOTS reached", lent=len(self._lent))
            return
        self._lent[fence] = child
        if len(self._borrowed()) >= len(self._lent):
            return  # a spare borrowed child takes the work
        place = self._free_place()
        if place is None:
            return
        borrowed = self._make_borrowed(place, child)
        sibling = child.sibling(
            replace(borrowed.config, place=place), self.board.child(place), borrowed.name
        )
        self.children.append(sibling)
        try:
            sibling.start()
        except Exception as exc:  # noqa: BLE001 - a failed start must not take the consumer down
            log.error("borrowed child did not start", error=str(exc))
            self.children.remove(sibling)

    def _borrowed(self) -> list[ChildProcess]:
        return [c for c in self.children if c.borrowed and c.alive and not c.retiring]

    def _free_place(self) -> int | None:
        used = {c.config.place for c in self.children}
        for place in range(self.board.places):
            if place not in used:
                return place
        return None

    def _retire_spares(self, now: float) -> None:
        """Retire one borrowed child once more of them than waiting jobs stayed so a while."""
        borrowed = self._borrowed()
        if len(borrowed) <= len(self._lent):
            self._spare_since = None
            return
        if self._spare_since is None:
            self._spare_since = now
            return
        if now - self._spare_since < _LEND_LINGER_S:
            return
        idle = [c for c in borrowed if not c.board.running()]
        child = (idle or borrowed)[0]
        child.retiring = True
        child.board.ask_stop()
        self._wake(child)
        self._spare_since = now

    # -- small things ------------------------------------------------------------------------
    def _wake(self, child: ChildProcess) -> None:
        """Make an idle child look at the board now (best effort: it looks every second)."""
        key = child_wake_key(child.config.wake_name)
        try:
            pipe = self.store.client.pipeline(transaction=False)
            pipe.lpush(key, "1")
            pipe.expire(key, 60)
            pipe.execute()
        except redis.RedisError:
            pass

    def _mirror_fetch_health(self) -> None:
        """The fetch loops run in the children: healthy while any passes or works (or is
        still starting: a model that loads for minutes is no failed loop)."""
        for child in self.children:
            # Still starting (a model that loads for minutes), or failing its start-up
            # (health says so as the consumer's ``children`` problem, not as a stale loop).
            if child.life is Life.STARTING or child.start_failures.count:
                self.fetch_state.passed()
                return
            if child.life is not Life.READY:
                continue
            fetched = child.board.fetched_at
            if fetched != self._fetch_seen.get(child.config.place) or child.board.running():
                self._fetch_seen[child.config.place] = fetched
                self.fetch_state.passed()
                return

    def _unrenewed_for(self, entry: Running, now: float) -> float:
        """Seconds since Redis last answered a renewal of this attempt's lease (since it
        was claimed, for one not renewed yet)."""
        renewed = self.renewed_at(entry.request_id, entry.token)
        return now - max(entry.started, renewed or 0.0)

    def _memory_limit(self, job: str) -> int | None:
        return memory_limit_for(self.app.jobs.get(job), self.memory_default)

    def _job_name(self, index: int) -> str:
        return self._job_names[index] if 0 <= index < len(self._job_names) else "?"
