"""``jobcord worker a.mod:app b.mod:app ... --gpus all``: one worker process serves several
apps on one host's devices, each app's replicas scaled by demand (``jobcord.consumers.scaler``).

Each app gets an elastic :class:`~consumers.worker.Consumer` (its own supervisor, leases,
registration and loops, run on a thread of this process) that starts with no children;
the scaler adds and retires them. One app alone runs so too when it declares
``autoscaling`` (or ``--autoscale`` is given).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from pydantic import ValidationError

from jobcord.scheduler.autoscaling import Autoscaling
from jobcord.storage.connection import connect
from jobcord.storage.errors import ConfigurationError
from jobcord.storage.requests import RequestStore
from jobcord.storage.settings import Settings

from .devices import Device
from .metrics import ConsumerCollector
from .scaler import DevicePool, HostScaler, ServedApp
from .worker import Consumer, ConsumerConfig, default_concurrency, stop_on_signals

__all__ = ["HostConfig", "run_host", "Host"]

log = structlog.get_logger("jobcord.host")


@dataclass
class HostConfig:
    app_refs: list[str]
    devices: list[Device] = field(default_factory=list)
    cpu_slots: int | None = None  # CPU replicas at once (default: one per core)
    drain_s: float = 30.0
    gpus_per_child: int | None = None
    max_jobs_per_child: int = 0
    recycle_memory_fraction: float = 0.0
    #: Replicas (of any apps) one GPU may hold at once; 1: a GPU is one replica's alone.
    share_gpus: int = 1
    #: Autoscaling fields set on the command line, over every app's own.
    overrides: dict[str, Any] = field(default_factory=dict)


class _Merged:
    """One collector over several consumers' (same metric names, the app label apart)."""

    def __init__(self, collectors: Iterable[ConsumerCollector]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for collector in self.collectors:
            for metric in collector.collect():
                first = merged.setdefault(metric.name, metric)
                kept = [] if first is metric else first.samples
                for sample in metric.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if key not in seen:  # the host's GPUs, told by every app's consumer
                        seen.add(key)
                        kept.append(sample)
                first.samples = kept
        yield from merged.values()


def policy_for(own: Autoscaling | None, overrides: dict[str, Any], what: str) -> Autoscaling:
    """A declared policy (or the defaults), with the command line's fields over it."""
    try:
        return Autoscaling.model_validate({**(own or Autoscaling()).model_dump(), **overrides})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'autoscaling'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise ConfigurationError(f"{what}: {problems}") from None


def groups_of(consumer: Consumer, units: int, overrides: dict[str, Any]) -> list[ServedApp]:
    """What scales as one: each job with a policy of its own (its own queue), then the
    app's other jobs under the app's policy."""
    app = consumer.app
    groups = []
    for spec in app.jobs.values():
        if spec.autoscaling is not None and spec.queue in consumer.queues:
            policy = policy_for(spec.autoscaling, overrides, f"job {app.name}.{spec.name}")
            groups.append(ServedApp(consumer, policy, units, [spec.queue], job=spec.name))
    taken = {q for g in groups for q in g.queues}
    rest = [q for q in consumer.queues if q not in taken]
    if rest:
        policy = policy_for(app.autoscaling, overrides, f"app {app.name!r}")
        groups.append(ServedApp(consumer, policy, units, rest))
    return groups


class Host:
    def __init__(self, config: HostConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        slots = config.cpu_slots or default_concurrency([])
        self.pool = DevicePool(config.devices, slots, per_device=config.share_gpus)
        self.served: list[ServedApp] = []
        for ref in config.app_refs:
            consumer = Consumer(
                ConsumerConfig(
                    ref,
                    1,
                    config.devices,
                    config.drain_s,
                    gpus_per_child=config.gpus_per_child,
                    max_jobs_per_child=config.max_jobs_per_child,
                    recycle_memory_fraction=config.recycle_memory_fraction,
                    elastic=True,
                    register_metrics=False,
                ),
                settings,
            )
            if not consumer.queues:
                log.warning(
                    "app has no job these devices can run; not served here",
                    app=consumer.app.name,
                    gpu_class=consumer.gpu_class,
                )
                continue
            units = consumer.plan.gpus_per_child if config.devices else 1
            consumer.config.capacity = max(1, self.pool.units // max(1, units))
            self.served.extend(groups_of(consumer, units, config.overrides))
        if not self.served:
            raise ConfigurationError("none of these apps has a job these devices can run")
        names = [c.app.name for c in self.consumers]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"an app is named twice: {names}")
        self._stop = threading.Event()
        self.signalled = False  # SIGTERM or SIGINT (stop_on_signals)
        self._threads: list[threading.Thread] = []
        self.scaler: HostScaler | None = None

    @property
    def consumers(self) -> list[Consumer]:
        """One per app (an app's groups share it)."""
        return list({id(s.consumer): s.consumer for s in self.served}.values())

    def run(self) -> None:
        for consumer in self.consumers:
            thread = threading.Thread(
                target=self._serve,
                args=(consumer,),
                name=f"jobcord-{consumer.app.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        while not all(c.ready.is_set() for c in self.consumers):
            failed = next((c.failed for c in self.consumers if c.failed), None)
            if failed is not None:
                self._stop_all()
                raise failed
            if self._stop.wait(0.05) or self.signalled:
                break
        merged = _Merged(c.collector for c in self.consumers if c.collector)
        REGISTRY.register(merged)
        store = RequestStore(connect(self.settings), self.settings)
        self.scaler = HostScaler(
            self.served, self.pool, store, lease_ttl_s=self.settings.lease_ttl_s
        )
        try:
            self.scaler.start()
            log.info(
                "autoscaling host ready",
                apps={s.name: s.policy.model_dump() for s in self.served},
                units=self.pool.units,
            )
            # Woken every second: a signal is handled only when this thread runs.
            while not (self._stop.wait(1.0) or self.signalled):
                if any(c.failed for c in self.consumers):
                    break
        finally:
            self.scaler.stop()
            self._stop_all()
            self.scaler.release_all()
            REGISTRY.unregister(merged)

    def _serve(self, consumer: Consumer) -> None:
        try:
            consumer.run()
        except BaseException as exc:  # noqa: BLE001 - the host stops and says why
            log.exception("app consumer failed", app=consumer.app.name)
            consumer.failed = exc
            self._stop.set()

    def _stop_all(self) -> None:
        for consumer in self.consumers:
            consumer.stop()
        for thread in self._threads:
            while thread.is_alive():
                thread.join(1.0)

    def stop(self) -> None:
        self._stop.set()


def run_host(config: HostConfig, settings: Settings) -> None:
    host = Host(config, settings)
    stop_on_signals(host)
    host.run()
    failed = next((c.failed for c in host.consumers if c.failed), None)
    if failed is not None:
        raise failed
