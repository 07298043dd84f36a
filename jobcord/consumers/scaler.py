"""The host's autoscaler: warm replicas (job processes) per app, by demand, on devices it
hands out, never past an app's ``max_replicas`` on all hosts together.

One supervised loop per worker process. Each tick (``_TICK_S``) it reads every served app's
demand from Redis (requests waiting or running on its queues, on every host), asks the app's
:class:`~scheduler.autoscaling.ScaleDecider` how many replicas the app wants in all, takes
away those other hosts run (the shared count, ``jobcord.storage.replicas``), and shares this host's
devices among the apps (:func:`~scheduler.autoscaling.share_devices`). An app under its
share gets a child on free devices (claimed in Redis first, so no two hosts start the
replica past the limit); an app over it retires children, idle ones first (a running
request always finishes: a retired child takes no new work and exits when idle). Devices
come back to the pool when the child has exited, so an app never gets a GPU whose memory
another app's process still holds. Two apps never share a device.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import structlog

from jobcord.scheduler.autoscaling import Autoscaling, Decision, ScaleDecider, share_devices
from jobcord.scheduler.capacity import PRIORITIES
from jobcord.scheduler.supervision import LOOPS, LoopState, run_supervised
from jobcord.storage.keys import queue_key
from jobcord.storage.registry import ConsumerRegistry
from jobcord.storage.replicas import ReplicaLeases
from jobcord.storage.requests import RequestStore

from .children import ChildProcess, Life
from .devices import Device
from .worker import Consumer

__all__ = ["HostScaler", "ServedApp", "DevicePool"]

log = structlog.get_logger("jobcord.scaler")

#: How often demand is read and replicas adjusted.
_TICK_S = 0.5
#: A replica that failed its startup: the first pause before another try, and the longest.
_START_BACKOFF_S = (1.0, 60.0)


class DevicePool:
    """This host's devices (or CPU slots) not held by any app's child. ``per_device``: how
    many replicas may sit on one GPU at once (1, the default: a GPU is one replica's alone;
    more only when the operator allows it with ``--share-gpus``, for small models)."""

    def __init__(self, devices: list[Device], cpu_slots: int, per_device: int = 1) -> None:
        self._lock = threading.Lock()
        self._devices = {d.index: d for d in devices}
        self._free = {d.index: per_device for d in devices}  # free seats per GPU
        self._cpu_free = 0 if devices else cpu_slots
        self.units = len(devices) * per_device if devices else cpu_slots

    def take(self, n: int) -> list[Device] | None:
        """``n`` distinct devices with a free seat, the emptiest first (CPU: ``n`` slots, as
        an empty list); None if there are not that many."""
        with self._lock:
            if not self._devices:
                if self._cpu_free < n:
                    return None
                self._cpu_free -= n
                return []
            open_ = sorted((i for i, f in self._free.items() if f > 0), key=self._emptiest)
            if len(open_) < n:
                return None
            chosen = sorted(open_[:n])
            for i in chosen:
                self._free[i] -= 1
            return [self._devices[i] for i in chosen]

    def _emptiest(self, index: int) -> tuple[int, int]:
        return (-self._free[index], index)

    def give(self, devices: list[Device], n: int) -> None:
        with self._lock:
            if not self._devices:
                self._cpu_free += n
            for d in devices:
                self._free[d.index] += 1

    @property
    def free_units(self) -> int:
        with self._lock:
            return sum(self._free.values()) + self._cpu_free


@dataclass
class ServedApp:
    """What scales as one on this host: an app's jobs without a policy of their own (named
    by the app), or one job with its own (``app/job``), and the replicas it holds here."""

    consumer: Consumer
    policy: Autoscaling
    units: int  # devices (or CPU slots) one replica takes
    queues: list[str]  # what its replicas take requests from
    job: str | None = None  # the job that scales on its own; None: the app's group
    decider: ScaleDecider = field(init=False)
    #: child -> (its devices, its member in the shared count)
    held: dict[int, tuple[ChildProcess, list[Device], str]] = field(default_factory=dict)
    decision: Decision | None = None
    started: int = 0  # replicas started here, in all (numbers their children's names)
    #: After a replica failed its startup: no new one before then (monotonic), and the
    #: pause after the next failure (doubling to _START_BACKOFF_S[1]; reset once one is warm).
    not_before: float = 0.0
    backoff_s: float = 0.0

    def __post_init__(self) -> None:
        self.decider = ScaleDecider(self.policy)

    @property
    def app(self) -> str:
        return self.consumer.app.name

    @property
    def name(self) -> str:
        return f"{self.app}/{self.job}" if self.job else self.app

    @property
    def jobs(self) -> set[str]:
        """The jobs whose requests its replicas run."""
        return {n for n, spec in self.consumer.app.jobs.items() if spec.queue in self.queues}

    def active(self) -> list[ChildProcess]:
        return [c for c, _, _ in self.held.values() if c.alive and not c.retiring]


class HostScaler:
    def __init__(
        self,
        served: list[ServedApp],
        pool: DevicePool,
        store: RequestStore,
        *,
        lease_ttl_s: float,
    ) -> None:
        self.served = served
        self.pool = pool
        self.store = store
        self.leases = ReplicaLeases(store.scripts, ttl_s=3 * lease_ttl_s)
        self.registry = ConsumerRegistry(store.client)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._exits: deque[tuple[Consumer, ChildProcess]] = deque()  # from supervisors
        self._unclaimed: deque[tuple[str, str]] = deque()  # claims still to drop
        self.state = LoopState("autoscaler", _TICK_S, backoff_max_s=2.0)
        self._thread = threading.Thread(target=self._loop, name="jobcord-scaler", daemon=True)
        for s in served:
            s.consumer.child_gone = self._gone

    def start(self) -> None:
        LOOPS.add(self.state)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.ident is not None:
            self._thread.join(5)
        LOOPS.unregister(self.state)

    def release_all(self) -> None:
        """At shutdown: this host's claims go at once (not after their TTL)."""
        with self._lock:
            for s in self.served:
                for _, _, member in list(s.held.values()):
                    try:
                        self.leases.release(s.name, member)
                    except Exception as exc:  # noqa: BLE001 - they expire anyway
                        log.warning("replica claim not released", app=s.name, error=str(exc))

    def _loop(self) -> None:
        run_supervised(self.state, self.tick, self._stopped, pause_s=_TICK_S)

    # -- one tick --------------------------------------------------------------------------
    def tick(self) -> None:
        with self._lock:
            self._reap_exits()
        now = time.monotonic()
        demand = self._demand()
        needs: dict[str, tuple[int, int, int]] = {}
        views: dict[str, dict[str, object]] = {}
        with self._lock:
            for s in self.served:
                if any(c.was_ready for c in s.active()):
                    s.backoff_s = 0.0  # one started: the next failure pauses 1 s again
                # A retired child's claim was given up when it was retired: not renewed.
                members = [m for c, _, m in s.held.values() if not c.retiring]
                live = self.leases.renew(s.name, members)
                others = max(0, live - len(members))
                s.decision = s.decider.decide(now, demand.get(s.name, 0))
                need = max(0, s.decision.desired - others)
                floor = max(0, s.policy.min_replicas - others)
                needs[s.name] = (need, floor, s.units)
                views[s.name] = self._view(s, live)
            self._publish(views)
            targets = share_devices(self.pool.units, needs)
            starved = any(
                len(s.active()) < targets[s.name] and self.pool.free_units < s.units
                for s in self.served
            )
            for s in self.served:
                self._adjust(s, targets[s.name], starved)

    def _demand(self) -> dict[str, int]:
        """Requests waiting on the queues each app's replicas here serve (its class's own,
        and those of cheaper classes it falls back to) plus those its replicas run, on every
        host: a few list lengths and the consumers' registrations, whatever the load."""
        pipe = self.store.client.pipeline(transaction=False)
        asked: list[str] = []
        for s in self.served:
            for queue in s.queues:
                for priority in PRIORITIES:
                    pipe.llen(queue_key(queue, priority))
                    asked.append(s.name)
        out: dict[str, int] = {s.name: 0 for s in self.served}
        for group, n in zip(asked, pipe.execute(), strict=True):
            out[group] += int(n)
        running: dict[tuple[str, str], int] = {}  # (app, job) -> running on every host
        for c in self.registry.live():
            for ch in c.get("children", []):
                for job in ch.get("running_jobs", []):
                    key = (c.get("app", ""), job)
                    running[key] = running.get(key, 0) + 1
        for s in self.served:
            out[s.name] += sum(running.get((s.app, job), 0) for job in s.jobs)
        return out

    def _adjust(self, s: ServedApp, target: int, starved: bool) -> None:
        active = s.active()
        sup = s.consumer.supervisor
        if sup is None:
            return
        for _ in range(target - len(active)):
            if not self._grow(s):
                break
        excess = len(active) - target
        if excess <= 0:
            return
        # Idle first: a cold start nobody needs, then a warm idle child, then a busy one
        # (it finishes its request first). Busy ones only when another app waits for the
        # device: a scale-down by demand alone waits for them to idle.
        order = sorted(
            active,
            key=lambda c: (c.life is not Life.STARTING, bool(c.board.running())),
        )
        for child in order[:excess]:
            if child.board.running() and not starved:
                continue
            entry = next((v for v in s.held.values() if v[0] is child), None)
            if entry is not None:
                self.leases.release(s.name, entry[2])
            reason = s.decision.reason if s.decision else "scale down"
            log.info("replica retired", app=s.name, child=child.name, reason=reason)
            sup.retire(child)

    def _grow(self, s: ServedApp) -> bool:
        """Start one replica of ``s`` on free devices; False if none or the count is full."""
        if time.monotonic() < s.not_before:
            return False  # its last replica failed to start: not in a tight loop
        devices = self.pool.take(s.units)
        if devices is None:
            return False
        limit = min(s.policy.max_replicas, s.decision.desired if s.decision else 0)
        member = f"{s.consumer.worker_id}:{time.time_ns()}"
        claimed = False
        try:
            claimed = self.leases.acquire(s.name, member, limit)
        finally:
            if not claimed:  # refused, or Redis did not answer: the devices go back
                self.pool.give(devices, s.units)
        if not claimed:
            return False
        sup, outputs = s.consumer.supervisor, s.consumer.outputs
        assert sup is not None and outputs is not None
        suffix = f"{s.job}-r{s.started}" if s.job else f"r{s.started}"
        child = sup.add_child(
            lambda i: s.consumer.place(i, devices, outputs, suffix=suffix, queues=s.queues)
        )
        if child is None:
            self.pool.give(devices, s.units)
            self._unclaimed.append((s.name, member))
            return False
        s.held[id(child)] = (child, devices, member)
        s.started += 1
        reason = s.decision.reason if s.decision else ""
        log.info("replica started", app=s.name, child=child.name, reason=reason)
        return True

    def _gone(self, consumer: Consumer, child: ChildProcess) -> None:
        """An elastic child exited for good (called on its supervisor's thread, under the
        supervisor's lock): noted only. Taking this scaler's lock here would invert the
        order the tick takes them in (scaler, then supervisor), and a Redis call would hold
        up the supervisor; the next tick gives the devices back and drops the claim."""
        self._exits.append((consumer, child))

    def _reap_exits(self) -> None:
        """Devices of exited children back to the pool; their claims dropped (kept for the
        next tick if Redis does not answer: they also expire by themselves)."""
        while self._exits:
            consumer, child = self._exits.popleft()
            for s in self.served:
                held = s.held.pop(id(child), None) if s.consumer is consumer else None
                if held is not None:
                    self.pool.give(held[1], s.units)
                    self._unclaimed.append((s.name, held[2]))
                    if not child.was_ready and not child.retiring:  # its startup failed
                        s.backoff_s = min(
                            _START_BACKOFF_S[1], max(_START_BACKOFF_S[0], 2 * s.backoff_s)
                        )
                        s.not_before = time.monotonic() + s.backoff_s
                        log.error("replica failed to start", app=s.name, retry_in_s=s.backoff_s)
        while self._unclaimed:
            group, member = self._unclaimed[0]
            try:
                self.leases.release(group, member)
            except Exception as exc:  # noqa: BLE001 - next tick, or its TTL
                log.warning("replica claim not released", app=group, error=str(exc))
                return
            self._unclaimed.popleft()

    def _view(self, s: ServedApp, live: int) -> dict[str, object]:
        children = [c for c, _, _ in s.held.values()]
        d = s.decision
        return {
            "desired": d.desired if d else 0,
            "live_all_hosts": live,
            "running_here": sum(1 for c in children if c.life is Life.READY and not c.retiring),
            "starting_here": sum(1 for c in children if c.life is Life.STARTING),
            "retiring_here": sum(1 for c in children if c.retiring and c.alive),
            "min": s.policy.min_replicas,
            "max": s.policy.max_replicas,
            "decision": d.reason if d else "",
            "at": time.time(),
        }

    def _publish(self, views: dict[str, dict[str, object]]) -> None:
        """What the dashboard and GET /v1/queues show: each app's group, and under ``jobs``
        the jobs that scale on their own (in the consumer's registration)."""
        for consumer in {id(s.consumer): s.consumer for s in self.served}.values():
            groups = [s for s in self.served if s.consumer is consumer]
            own = next((views[s.name] for s in groups if s.job is None), None)
            jobs = {s.job: views[s.name] for s in groups if s.job is not None}
            consumer.scaling = {**(own or {}), "jobs": jobs}
