"""What a consumer's GPUs are doing now: memory used and utilisation, read through NVML.

The consumer reads them for its heartbeat (the dashboard's device table) and for its metrics
port. NVML stays initialised between readings (an init costs milliseconds); a reading that
fails gives None figures, never an exception: a flaky driver must not stop a heartbeat.
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
        with self._lock:
            if self._nvml:
                with contextlib.suppress(self._nvml.NVMLError):
                    self._nvml.nvmlShutdown()
            self._nvml = None
