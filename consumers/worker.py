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
from scheduler.jobspec import AppRegistry
from scheduler.loader import load_app
from scheduler.maintenance import MaintenanceLoop
from storage.connection import connect, redis_url
from storage.errors import ConfigurationError
from storage.keys import ACTOR_NAME
from storage.registry import ConsumerRegistry
from storage.requests import RequestStore
from storage.results import open_result_store
from storage.settings import Settings

from .broker import WakingRedisBroker
from .devices import Device, pinning_env
from .leases import LeaseKeeper
from .runner import Runner
from .slots import ChildSlot

__all__ = ["ConsumerConfig", "Consumer", "run_consumer", "served_queues"]

log = structlog.get_logger("jobcord.worker")


@dataclass
class ConsumerConfig:
    app_ref: str
    concurrency: int = 1
    devices: list[Device] = field(default_factory=list)
    drain_s: float = 30.0  # on SIGTERM, running requests get this long before being handed back


def served_queues(app: AppRegistry, devices: list[Device]) -> tuple[str, list[str]]:
    """The class this consumer serves and the app's queues for it."""
    classes = {d.gpu_class for d in devices}
    if not devices:
        gpu_class = CPU_CLASS
    elif len(classes) == 1 and None not in classes:
        gpu_class = classes.pop()  # type: ignore[assignment]
    else:
        names = ", ".join(f"{d.index}:{d.name}" for d in devices)
        raise ConfigurationError(
            f"run one worker per GPU class (--gpus with matching indexes); got {names}"
        )
    queues = sorted({s.queue for s in app.jobs.values() if s.gpu_class == gpu_class})
    return gpu_class, queues


class Consumer:
    def __init__(self, config: ConsumerConfig, settings: Settings) -> None:
        if config.concurrency < 1:
            raise ConfigurationError("--concurrency must be at least 1")
        self.config = config
        self.settings = settings
        self.app = load_app(config.app_ref)
        self.gpu_class, self.queues = served_queues(self.app, config.devices)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()

    def _slots(self) -> list[ChildSlot]:
        groups = [[d] for d in self.config.devices] or [[]]
        return [
            ChildSlot(
                self.config.app_ref,
                name=f"{self.gpu_class}{'-' + str(g[0].index) if g else ''}-{i}",
                env=pinning_env(g),
                kill_grace_s=self.settings.kill_grace_s,
                log_format=self.settings.log_format,
            )
            for g in groups
            for i in range(self.config.concurrency)
        ]

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`stop`), then drain and hand back work."""
        if not self.queues:
            raise ConfigurationError(
                f"app {self.app.name!r} has no job for GPU class {self.gpu_class!r}"
            )
        url = redis_url(self.settings)
        store = RequestStore(connect(self.settings), self.settings)
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
            "queues": self.queues,
            "slots": len(slots),
            "devices": [d.uuid for d in self.config.devices],
        }
        ttl = 3 * self.settings.lease_ttl_s

        def heartbeat() -> None:
            registry.heartbeat(self.worker_id, info, ttl)

        heartbeat()
        leases = LeaseKeeper(store, self.settings.lease_ttl_s, heartbeat)
        maintenance = MaintenanceLoop(store, self.settings.maintenance_interval_s)
        runner = Runner(
            self.app,
            store,
            open_result_store(self.settings),
            leases,
            slots,
            self.settings,
            self.worker_id,
            ",".join(d.uuid for d in self.config.devices),
        )
        broker = WakingRedisBroker(url, priority_aging_every=self.settings.priority_aging_every)
        dramatiq.actor(actor_name=ACTOR_NAME, queue_name=self.queues[0], broker=broker)(
            runner.execute
        )
        for q in self.queues:
            broker.declare_queue(q)
        worker = dramatiq.Worker(broker, queues=set(self.queues), worker_threads=len(slots))
        worker.queue_prefetch = len(slots)  # never hold a message no slot can start now
        leases.start()
        maintenance.start()
        worker.start()
        log.info(
            "consumer ready",
            worker=self.worker_id,
            app=self.app.name,
            gpu_class=self.gpu_class,
            queues=self.queues,
            slots=len(slots),
        )
        try:
            self._stop.wait()
        finally:
            log.info("consumer draining", drain_s=self.config.drain_s)
            stopper = threading.Thread(target=worker.stop, daemon=True)
            stopper.start()
            stopper.join(self.config.drain_s)
            if stopper.is_alive():
                for slot in slots:
                    slot.stop_current("shutdown")
                stopper.join()
            maintenance.stop()
            leases.stop()
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
