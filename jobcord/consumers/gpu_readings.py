"""What a consumer's GPUs are doing now: memory used and utilisation, read through NVML.

The consumer shows them in its heartbeat (the dashboard's device table) and on its metrics
port, both from the latest reading a thread of their own takes every ``_EVERY_S``: an NVML
call that hangs on a sick GPU must never hold up the lease renewal that sends the heartbeat,
nor a scrape. NVML stays initialised between readings (an init costs milliseconds); a
reading that fails gives None figures, never an exception.
``JOBCORD_FAKE_GPUS`` (``consumers.devices``) stands in for NVML in tests: each fake device's
``used_gb`` and ``utilization`` (0..1) are what it reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from typing import Any

from .devices import Device

__all__ = ["GpuReading", "GpuReader"]

#: How often the reader's thread reads the GPUs.
_EVERY_S = 2.0


@dataclass(frozen=True)
class GpuReading:
    index: int
    uuid: str
    name: str
    gpu_class: str | None
    memory_total_bytes: int
    memory_used_bytes: int | None
    utilization: float | None  # 0..1, the share of the last sample period a kernel ran

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class GpuReader:
    def __init__(self, devices: list[Device]) -> None:
        self.devices = devices
        self._lock = threading.Lock()
        self._nvml: Any = None  # the pynvml module once initialised; False when unavailable
        self._latest: list[GpuReading] = []  # swapped whole: read without a lock
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Read now, then every ``_EVERY_S`` on a daemon thread (none without GPUs)."""
        if not self.devices:
            return
        self._latest = self.read()
        self._thread = threading.Thread(target=self._loop, name="jobcord-gpus", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.wait(_EVERY_S):
            try:
                self._latest = self.read()
            except Exception:  # noqa: BLE001 - the last reading stays; try again
                continue

    def latest(self) -> list[GpuReading]:
        """The last reading (never waits on NVML)."""
        return self._latest

    def read(self) -> list[GpuReading]:
        if not self.devices:
            return []
        fake = os.environ.get("JOBCORD_FAKE_GPUS")
        if fake:
            return self._fake(fake)
        with self._lock:
            return [self._read_one(d) for d in self.devices]

    def _fake(self, spec: str) -> list[GpuReading]:
        by_uuid = {d.get("uuid"): d for d in json.loads(spec)}
        out = []
        for d in self.devices:
            fake = by_uuid.get(d.uuid, {})
            used = int(float(fake.get("used_gb", 0)) * 2**30)
            util = float(fake.get("utilization", 0.0))
            out.append(self._reading(d, used, util))
        return out

    def _read_one(self, device: Device) -> GpuReading:
        nvml = self._session()
        if not nvml:
            return self._reading(device, None, None)
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(device.uuid)
            used = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
        except nvml.NVMLError:
            return self._reading(device, None, None)
        try:
            util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
        except nvml.NVMLError:  # MIG instances and some drivers have no utilisation
            util = None
        return self._reading(device, used, util)

    def _session(self) -> Any:
        if self._nvml is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception:  # noqa: BLE001 - no library or driver: figures stay None
                self._nvml = False
        return self._nvml

    @staticmethod
    def _reading(device: Device, used: int | None, util: float | None) -> GpuReading:
        return GpuReading(
            device.index,
            device.uuid,
            device.name,
            device.gpu_class,
            device.memory_bytes,
            used,
            util,
        )

    def close(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            if self._nvml:
                with contextlib.suppress(self._nvml.NVMLError):
                    self._nvml.nvmlShutdown()
            self._nvml = None
