"""A consumer process: warm child slots, a dramatiq Worker feeding them, leases, maintenance.

``jobcord worker MODULE:APP --gpus none --concurrency N`` runs :func:`run_consumer`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import REGISTRY

from jobcord.scheduler.bounds import memory_size
from jobcord.scheduler.gpu_classes import CPU_CLASS
from jobcord.scheduler.health import HealthPublisher
from jobcord.scheduler.jobspec import AppRegistry
from jobcord.scheduler.loader import load_app
from jobcord.scheduler.maintenance import MaintenanceLoop
from jobcord.scheduler.placement import plan_placement
from jobcord.storage.connection import connect, redis_url
from jobcord.storage.errors import ConfigurationError, JobcordError
from jobcord.storage.redis_config import read_redis_config, redis_config_problems
from jobcord.storage.registry import ConsumerRegistry
from jobcord.storage.requests import RequestStore
from jobcord.storage.results import ResultStore, open_result_store
from jobcord.storage.settings import Settings

from .board import Board
from .child import ChildConfig
from .children import ChildProcess
from .devices import Device, pinning_env
from .endings import Endings
from .fetcher import QueuePlan
from .gpu_readings import GpuReader
from .leases import LeaseKeeper
from .metrics import ConsumerCollector, JobCounts
from .supervisor import Place, StartupError, Supervisor

__all__ = [
    "ConsumerConfig",
    "Consumer",
    "run_consumer",
    "served_queues",
    "consumer_class",
    "device_groups",
    "default_concurrency",
    "StartupFailed",
    "stop_on_signals",
]

log = structlog.get_logger("jobcord.worker")


class StartupFailed(JobcordError):
    """A child could not start on the consumer's first start (its on_startup raised, it
    exited before it was ready, or it took too long)."""


@dataclass
class ConsumerConfig:
    app_ref: str
    concurrency: int = 1  # children per device group
    devices: list[Device] = field(default_factory=list)
    drain_s: float = 30.0  # on SIGTERM, running requests get this long before being handed back
    gpus_per_child: int | None = None  # None: as many as the app's largest job of this class
    max_jobs_per_child: int = 0  # recycle a child after this many jobs (0: never)
    recycle_memory_fraction: float = 0.0  # recycle when a child keeps this much of a GPU
    #: No children up front: an autoscaler (``jobcord.consumers.scaler``) adds and retires them, on
    #: devices it hands out; ``capacity``: children this consumer may ever hold at once.
    elastic: bool = False
    capacity: int = 0
    register_metrics: bool = True  # a host of several consumers registers one for all
    #: Bytes a job process may use while it runs a job that sets no limit (None: the
    #: settings' JOBCORD_JOB_MEMORY_LIMIT, unset: none).
    memory_limit: int | None = None


def consumer_class(devices: list[Device]) -> str:
    """The one GPU class a consumer's devices belong to (``cpu`` without devices)."""
    classes = {d.gpu_class for d in devices}
    if not devices:
        return CPU_CLASS
    if len(classes) == 1 and None not in classes:
        return classes.pop()  # type: ignore[return-value]
    names = ", ".join(f"{d.index}:{d.name}" for d in devices)
    raise ConfigurationError(
        f"run one worker per GPU class (--gpus with matching indexes); got {names}"
    )


def default_concurrency(devices: list[Device]) -> int:
    """Children per device group when ``--concurrency`` is not given: one per group of GPUs;
    for CPU work one per core this process may use, as dramatiq's CLI runs processes."""
    if devices:
        return 1
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def served_queues(app: AppRegistry, devices: list[Device]) -> tuple[str, list[str]]:
    """The class this consumer serves and the app's queues it takes from (own and fallback)."""
    plan = plan_placement(app, consumer_class(devices), len(devices))
    return plan.gpu_class, plan.own + plan.fallback


def device_groups(devices: list[Device], per_child: int) -> list[list[Device]]:
    """Consecutive groups of ``per_child`` devices (one child each); ``[[]]`` for CPU."""
    if per_child <= 0 or not devices:
        return [[]]
    usable = len(devices) - len(devices) % per_child
    return [devices[i : i + per_child] for i in range(0, usable, per_child)]


class Consumer:
    def __init__(self, config: ConsumerConfig, settings: Settings) -> None:
        if config.concurrency < 1:
            raise ConfigurationError("--concurrency must be at least 1")
        self.config = config
        self.settings = settings
        self.app = load_app(config.app_ref)
        try:
            self.plan = plan_placement(
                self.app,
                consumer_class(config.devices),
                len(config.devices),
                config.gpus_per_child,
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self.gpu_class = self.plan.gpu_class
        self.queues = self.plan.own + self.plan.fallback
        self.groups = device_groups(config.devices, self.plan.gpus_per_child)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self.signalled = False  # SIGTERM or SIGINT (stop_on_signals)
        #: Set once serving (its supervisor exists and its first children are warm).
        self.ready = threading.Event()
        self.supervisor: Supervisor | None = None
        self.collector: ConsumerCollector | None = None
        self.outputs: Path | None = None
        #: What the autoscaler last decided for this app (shown in the registration).
        self.scaling: dict[str, object] | None = None
        self.failed: BaseException | None = None  # why run() ended early (a host reads it)

    def _places(self, outputs: Path) -> list[Place]:
        """One place per child: ``concurrency`` per device group."""
        places: list[Place] = []
        for group in self.groups:
            for i in range(self.config.concurrency):
                places.append(self.place(len(places), group, outputs, suffix=str(i)))
        return places

    def place(
        self,
        index: int,
        group: list[Device],
        outputs: Path,
        *,
        suffix: str,
        queues: list[str] | None = None,
    ) -> Place:
        """Place ``index`` on the board: a child pinned to ``group`` (none: CPU), taking
        from ``queues`` only if given (a job that scales on its own)."""
        own, fallback = self.plan.own, self.plan.fallback
        if queues is not None:
            own = [q for q in own if q in queues]
            fallback = [q for q in fallback if q in queues]
        plan = QueuePlan(own, fallback, self.settings.fallback_after_s)
        config = ChildConfig(
            app_ref=self.config.app_ref,
            env=pinning_env(group),
            log_format=self.settings.log_format,
            worker=self.worker_id,
            place=index,
            wake_name=f"{self.worker_id}:{index}",
            plan=plan,
            outputs=str(outputs / str(index)),
            max_jobs=self.config.max_jobs_per_child,
            recycle_memory_fraction=self.config.recycle_memory_fraction,
            devices=tuple(group),
        )
        name = f"{self.gpu_class}{''.join(f'-{d.index}' for d in group)}-{suffix}"
        return Place(config, name)

    def _width(self) -> int:
        """Attempts one child may hold at once: the largest concurrency or batch served."""
        served = [s for s in self.app.jobs.values() if s.queue in self.queues]
        return max((max(s.concurrency, s.max_batch_size) for s in served), default=1)

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`stop`), then drain and hand back work."""
        if not self.queues:
            raise ConfigurationError(
                f"app {self.app.name!r} has no job for GPU class {self.gpu_class!r}"
                + (f" that fits {self.plan.gpus_per_child} GPU(s)" if self.plan.too_big else "")
            )
        if self.plan.too_big:
            log.warning(
                "jobs need more GPUs than a child has; not served here",
                jobs=self.plan.too_big,
                gpus_per_child=self.plan.gpus_per_child,
            )
        unused = len(self.config.devices) - sum(len(g) for g in self.groups)
        if unused:
            log.warning("devices left over after grouping; unused", count=unused)
        url = redis_url(self.settings)
        # Children reach the same Redis without looking for (or starting) an embedded one.
        settings = self.settings.model_copy(update={"redis_url": url})
        store = RequestStore(connect(settings), settings)
        store.client.ping()  # an unreachable Redis is one clear error, before any child starts
        for problem in redis_config_problems(read_redis_config(store.client)):
            log.warning("redis is not set up for jobs", problem=problem)
        outputs = Path(tempfile.mkdtemp(prefix="jobcord-outputs-"))
        self.outputs = outputs
        places = [] if self.config.elastic else self._places(outputs)
        board_places = self.config.capacity if self.config.elastic else len(places)
        max_lent = self.settings.max_lent_slots
        counts = JobCounts()
        results: list[ResultStore] = []

        def result_store() -> ResultStore:
            if not results:
                results.append(open_result_store(settings))
            return results[0]

        def borrowed(place: int, like: ChildProcess) -> Place:
            config = replace(
                like.config,
                place=place,
                wake_name=f"{self.worker_id}:{place}",
                outputs=str(outputs / str(place)),
            )
            return Place(config, f"{like.name}-lent{place}")

        supervisor = Supervisor(
            self.app,
            store,
            Endings(self.app, store, result_store, settings, counts),
            counts,
            Board(board_places + max_lent, self._width()),
            places,
            settings,
            max_lent=max_lent,
            make_borrowed=borrowed,
            on_gone=self.on_child_gone,
            memory_default=self.memory_default(),
        )
        self.supervisor = supervisor
        registry = ConsumerRegistry(store.client, scripts=store.scripts)
        info = {
            "worker": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "app": self.app.name,
            "versions": self.app.versions,  # the job versions it runs (rolling deploys)
            "gpu_class": self.gpu_class,
            "queues": self.plan.own,
            "fallback_queues": self.plan.fallback,
            "slots_configured": len(places),
            "elastic": self.config.elastic,
            "gpus_per_child": self.plan.gpus_per_child,
            "devices": [d.uuid for d in self.config.devices],
            "containment": supervisor.keeper.containment.describe(),
        }
        ttl = 3 * self.settings.lease_ttl_s
        gpus = GpuReader(self.config.devices)
        gpus.start()

        def heartbeat() -> None:
            # What the dashboard shows of this consumer: refreshed every lease_ttl/3.
            children = supervisor.processes()
            live = {
                "heartbeat_at": time.time(),  # this host's clock; ages use Redis's seen_at
                "heartbeat_every_s": self.settings.lease_ttl_s / 3,
                "children": children,
                "gpus": [r.as_dict() for r in gpus.latest()],
                # Serving capacity is the children ready now: none while they start, restart
                # or fail their start-up (a crash loop, whose reason is told here too).
                "slots": supervisor.ready_slots(),
                "degraded": supervisor.problems().get("children"),
            }
            if self.config.elastic:  # its slots are the warm children it has now
                live["slots"] = sum(1 for c in children if c["state"] == "ready")
                live["starting"] = sum(1 for c in children if c["state"] == "starting")
                live["replicas"] = self.scaling
            registry.heartbeat(self.worker_id, {**info, **live}, ttl)

        leases = LeaseKeeper(
            store,
            self.settings.lease_ttl_s,
            supervisor.held,
            supervisor.stop_request,
            heartbeat,
        )
        supervisor.renewed_at = leases.renewed_at
        collector = ConsumerCollector(
            counts,
            supervisor.child_stats,
            supervisor.running_by_job,
            processes=supervisor.processes,
            gpus=gpus.latest,
            app=self.app.name,
        )
        self.collector = collector
        if self.config.register_metrics:
            REGISTRY.register(collector)
        leases.start()  # before any child can claim: their leases are renewed from the start
        loops: list[MaintenanceLoop | HealthPublisher] = []
        try:
            try:
                # Every child warm (startup hooks run) before serving; SIGTERM meanwhile
                # ends the consumer now, its starting children killed (``finally``).
                if not supervisor.start(lambda: self.signalled or self._stop.is_set()):
                    log.info("consumer stopped while its job processes started")
                    return
            except StartupError as exc:
                raise StartupFailed(str(exc)) from None
            heartbeat()
            # Made now, not before the children warmed up: a loop's health counts from then.
            maintenance = MaintenanceLoop(store, self.settings.maintenance_interval_s)
            health = HealthPublisher(
                store.client,
                self.settings,
                role="consumer",
                process_id=self.worker_id,
                info={"app": self.app.name, "gpu_class": self.gpu_class},
                problems=supervisor.problems,
            )
            loops = [maintenance, health]
            maintenance.start()
            health.start()
            self.ready.set()
            log.info(
                "consumer ready",
                worker=self.worker_id,
                app=self.app.name,
                gpu_class=self.gpu_class,
                queues=self.plan.own,
                fallback_queues=self.plan.fallback,
                slots=len(places),
                gpus_per_child=self.plan.gpus_per_child,
            )
            # Woken every second: a signal's handler only sets ``signalled`` (and one the
            # kernel hands to another thread runs only when this thread runs again).
            while not (self._stop.wait(1.0) or self.signalled):
                pass
            log.info("consumer draining", drain_s=self.config.drain_s)
            supervisor.drain(self.config.drain_s)
        finally:
            supervisor.close()
            for loop in loops:
                if isinstance(loop, HealthPublisher):
                    loop.close()
                else:
                    loop.stop()
            leases.stop()
            registry.remove(self.worker_id)
            if self.config.register_metrics:
                REGISTRY.unregister(collector)
            gpus.close()
            shutil.rmtree(outputs, ignore_errors=True)
            log.info("consumer stopped", worker=self.worker_id)

    def stop(self) -> None:
        self._stop.set()

    def memory_default(self) -> int | None:
        """The memory limit for jobs that set none: ``--memory-limit``, else the setting."""
        if self.config.memory_limit is not None:
            return self.config.memory_limit
        try:
            return memory_size("JOBCORD_JOB_MEMORY_LIMIT", self.settings.job_memory_limit)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    def on_child_gone(self, child: ChildProcess) -> None:
        """An elastic child exited for good: the autoscaler takes its devices back."""
        if self.child_gone is not None:
            self.child_gone(self, child)

    #: Set by the autoscaler: called with (consumer, child) when an elastic child is gone.
    child_gone: Callable[[Consumer, ChildProcess], None] | None = None


def stop_on_signals(target: Any) -> None:
    """SIGTERM and SIGINT set ``target.signalled``, which its main loop looks at every
    second, then drains. The handler does nothing else: it runs between two bytecodes of the
    main thread, which may hold a lock the handler would need (a log call's lock deadlocked
    a worker on SIGTERM; even ``Event.set`` takes one its ``wait`` holds for a moment)."""

    def on_signal(_signum: int, _frame: object) -> None:
        target.signalled = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def run_consumer(config: ConsumerConfig, settings: Settings) -> None:
    consumer = Consumer(config, settings)
    stop_on_signals(consumer)
    consumer.run()
