"""A consumer process: warm child slots, a dramatiq Worker feeding them, leases, maintenance.

``jobcord worker MODULE:APP --gpus none --concurrency N`` runs :func:`run_consumer`.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dramatiq
import structlog

from scheduler.gpu_classes import CPU_CLASS
from scheduler.health import HealthPublisher
from scheduler.jobspec import AppRegistry
from scheduler.loader import load_app
from scheduler.maintenance import MaintenanceLoop
from scheduler.placement import plan_placement
from storage.connection import connect, redis_url
from storage.errors import ConfigurationError
from storage.keys import ACTOR_NAME
from storage.redis_config import read_redis_config, redis_config_problems
from storage.registry import ConsumerRegistry
from storage.requests import RequestStore
from storage.results import open_result_store
from storage.settings import Settings

from .broker import WakingRedisBroker
from .devices import Device, memory_probe, pinning_env
from .leases import LeaseKeeper
from .runner import Runner
from .slots import ChildSlot, Recycling

__all__ = [
    "ConsumerConfig",
    "Consumer",
    "run_consumer",
    "served_queues",
    "consumer_class",
    "device_groups",
    "default_concurrency",
]

log = structlog.get_logger("jobcord.worker")


@dataclass
class ConsumerConfig:
    app_ref: str
    concurrency: int = 1  # children per device group
    devices: list[Device] = field(default_factory=list)
    drain_s: float = 30.0  # on SIGTERM, running requests get this long before being handed back
    gpus_per_child: int | None = None  # None: as many as the app's largest job of this class
    max_jobs_per_child: int = 0  # recycle a child after this many jobs (0: never)
    recycle_memory_fraction: float = 0.0  # recycle when a child keeps this much of a GPU


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

    def _slot(self, group: list[Device], suffix: str) -> ChildSlot:
        return ChildSlot(
            self.config.app_ref,
            name=f"{self.gpu_class}{''.join(f'-{d.index}' for d in group)}-{suffix}",
            env=pinning_env(group),
            kill_grace_s=self.settings.kill_grace_s,
            log_format=self.settings.log_format,
            recycling=Recycling(
                max_jobs=self.config.max_jobs_per_child,
                memory_fraction=self.config.recycle_memory_fraction,
                probe=memory_probe(group),
            ),
        )

    def _slots(self) -> list[ChildSlot]:
        return [self._slot(g, str(i)) for g in self.groups for i in range(self.config.concurrency)]

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
        store = RequestStore(connect(self.settings), self.settings)
        store.client.ping()  # an unreachable Redis is one clear error, before any child starts
        for problem in redis_config_problems(read_redis_config(store.client)):
            log.warning("redis is not set up for jobs", problem=problem)
        slots = self._slots()
        with ThreadPoolExecutor(len(slots)) as pool:  # warm every child before consuming
            list(pool.map(lambda s: s.start(), slots))
        registry = ConsumerRegistry(store.client)
        info = {
            "worker": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "app": self.app.name,
            "gpu_class": self.gpu_class,
            "queues": self.plan.own,
            "fallback_queues": self.plan.fallback,
            "slots": len(slots),
            "gpus_per_child": self.plan.gpus_per_child,
            "devices": [d.uuid for d in self.config.devices],
        }
        ttl = 3 * self.settings.lease_ttl_s

        def heartbeat() -> None:
            registry.heartbeat(self.worker_id, info, ttl)

        heartbeat()
        leases = LeaseKeeper(store, self.settings.lease_ttl_s, heartbeat)
        maintenance = MaintenanceLoop(store, self.settings.maintenance_interval_s)
        broker = WakingRedisBroker(
            url,
            priority_aging_every=self.settings.priority_aging_every,
            fallback_after_s={q: self.settings.fallback_after_s for q in self.plan.fallback},
        )
        runner = Runner(
            self.app,
            store,
            open_result_store(self.settings),
            leases,
            slots,
            self.settings,
            self.worker_id,
            add_capacity=broker.add_capacity,
            current_ack=broker.current_ack,
            acked_by_finish=broker.acked_by_finish,
            max_lent=self.settings.max_lent_slots,
        )
        broker.claim_on_fetch(runner.claims)
        dramatiq.actor(actor_name=ACTOR_NAME, queue_name=self.queues[0], broker=broker)(
            runner.execute
        )
        for q in self.queues:
            broker.declare_queue(q)
        # Threads for the slots, for the outcomes being stored while their slots already run
        # the next job, and for slots lent while jobs wait on their children.
        threads = 2 * len(slots) + self.settings.max_lent_slots
        worker = dramatiq.Worker(broker, queues=set(self.queues), worker_threads=threads)
        worker.queue_prefetch = len(slots)  # never hold a message no slot can start now
        health = HealthPublisher(
            store.client,
            self.settings,
            role="consumer",
            process_id=self.worker_id,
            info={"app": self.app.name, "gpu_class": self.gpu_class},
        )
        leases.start()
        maintenance.start()
        health.start()
        worker.start()
        log.info(
            "consumer ready",
            worker=self.worker_id,
            app=self.app.name,
            gpu_class=self.gpu_class,
            queues=self.plan.own,
            fallback_queues=self.plan.fallback,
            slots=len(slots),
            gpus_per_child=self.plan.gpus_per_child,
        )
        try:
            self._stop.wait()
        finally:
            log.info("consumer draining", drain_s=self.config.drain_s)
            # dramatiq keeps fetching while its workers drain (for heartbeats) and requeues
            # what it fetched: claim no more, or each would start an attempt only to hand it back.
            broker.claim_on_fetch(None)
            stopper = threading.Thread(target=worker.stop, daemon=True)
            stopper.start()
            stopper.join(self.config.drain_s)
            if stopper.is_alive():
                for slot in slots:
                    slot.stop_current("shutdown")
                stopper.join()
            runner.claims.release_unstarted()
            maintenance.stop()
            leases.stop()
            health.close()
            registry.remove(self.worker_id)
            for slot in slots:
                slot.close()
            broker.close()
            log.info("consumer stopped", worker=self.worker_id)

    def stop(self) -> None:
        self._stop.set()


def run_consumer(config: ConsumerConfig, settings: Settings) -> None:
    consumer = Consumer(config, settings)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal received", signal=signal.Signals(signum).name)
        consumer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    consumer.run()
