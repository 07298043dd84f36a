"""Device discovery through NVML (nvidia-ml-py), with a CPU fallback.

NVML ignores ``CUDA_VISIBLE_DEVICES`` and may order devices differently from CUDA, so jobcord
pins processes by UUID. ``JOBCORD_FAKE_GPUS`` (JSON list of {name, memory_gb, uuid?, mig?,
process_memory_gb?, processes_file?}) replaces NVML at this one hardware boundary for tests on
machines without a GPU (``process_memory_gb``: what any process holds on that device after a
job; ``processes_file``: lines ``pid bytes`` of processes holding memory on it, counted while
they live, as NVML counts a process until it exits).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobcord.scheduler.gpu_classes import classify_gpu_name

__all__ = [
    "Device",
    "discover_devices",
    "pinning_env",
    "select_devices",
    "memory_probe",
    "gpu_processes",
]


@dataclass(frozen=True)
class Device:
    index: int
    uuid: str
    name: str
    memory_bytes: int
    mig_mode: bool
    gpu_class: str | None

    @property
    def memory_gb(self) -> float:
        return round(self.memory_bytes / 2**30, 1)


def _fake_specs(spec: str) -> list[dict[str, Any]]:
    items = json.loads(spec)
    for i, d in enumerate(items):
        d.setdefault("uuid", f"GPU-fake-{i:04d}")
    return list(items)


def _fake_devices(spec: str) -> list[Device]:
    out = []
    for i, d in enumerate(_fake_specs(spec)):
        mem = int(float(d.get("memory_gb", 80)) * 2**30)
        name = d.get("name", "NVIDIA H100 80GB HBM3")
        uuid = d["uuid"]
        out.append(
            Device(i, uuid, name, mem, bool(d.get("mig", False)), classify_gpu_name(name, mem))
        )
    return out


def discover_devices() -> list[Device]:
    """The machine's GPUs; an empty list when there is no NVIDIA driver."""
    fake = os.environ.get("JOBCORD_FAKE_GPUS")
    if fake:
        return _fake_devices(fake)
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            uuid = pynvml.nvmlDeviceGetUUID(h)
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            mem = int(pynvml.nvmlDeviceGetMemoryInfo(h).total)
            try:
                mig = bool(pynvml.nvmlDeviceGetMigMode(h)[0])
            except pynvml.NVMLError:
                mig = False
            devices.append(Device(i, uuid, name, mem, mig, classify_gpu_name(name, mem)))
        return devices
    finally:
        pynvml.nvmlShutdown()


def select_devices(spec: str, devices: list[Device]) -> list[Device]:
    """``--gpus`` value -> devices: ``none``, ``all`` or comma-separated NVML indexes."""
    spec = spec.strip().lower()
    if spec == "none":
        return []
    if spec == "all":
        return devices
    try:
        wanted = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ValueError(
            f"--gpus must be 'all', 'none' or indexes like '0,1', got {spec!r}"
        ) from None
    by_index = {d.index: d for d in devices}
    missing = [i for i in wanted if i not in by_index]
    if missing:
        raise ValueError(f"no GPU with index {missing}; this machine has {sorted(by_index)}")
    return [by_index[i] for i in wanted]


def pinning_env(devices: list[Device]) -> dict[str, str]:
    """The environment that pins a child process to exactly these devices."""
    if not devices:
        return {"CUDA_VISIBLE_DEVICES": ""}
    return {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": ",".join(d.uuid for d in devices),
    }


def memory_probe(devices: list[Device]) -> Callable[[int], float | None] | None:
    """A function pid -> the largest fraction of one of ``devices`` that process holds, from
    NVML's per-process accounting (where NVML cannot see the pid, e.g. in a container with its
    own pid namespace, the device's used memory stands in). None for CPU consumers."""
    if not devices:
        return None
    fake = os.environ.get("JOBCORD_FAKE_GPUS")
    if fake:
        held = {d["uuid"]: float(d.get("process_memory_gb", 0)) for d in _fake_specs(fake)}
        return lambda pid: max(held.get(d.uuid, 0.0) * 2**30 / d.memory_bytes for d in devices)
    return lambda pid: _nvml_fraction(devices, pid)


def _nvml_fraction(devices: list[Device], pid: int) -> float | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no library: nothing to measure
        return None
    try:
        worst = 0.0
        for d in devices:
            h = pynvml.nvmlDeviceGetHandleByUUID(d.uuid)
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
            mine = [p.usedGpuMemory or 0 for p in procs if p.pid == pid]
            used = sum(mine) if mine else int(pynvml.nvmlDeviceGetMemoryInfo(h).used)
            worst = max(worst, used / d.memory_bytes)
        return worst
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()


def gpu_processes(devices: list[Device]) -> list[tuple[int, int, str]]:
    """(pid, bytes held, device UUID) of every compute process NVML shows on ``devices``."""
    fake = os.environ.get("JOBCORD_FAKE_GPUS")
    if fake:
        return _fake_processes(fake, {d.uuid for d in devices})
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no library: nothing to see
        return []
    out = []
    try:
        for d in devices:
            h = pynvml.nvmlDeviceGetHandleByUUID(d.uuid)
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                out.append((int(p.pid), int(p.usedGpuMemory or 0), d.uuid))
    except pynvml.NVMLError:
        pass
    finally:
        pynvml.nvmlShutdown()
    return out


def _fake_processes(spec: str, uuids: set[str]) -> list[tuple[int, int, str]]:
    out = []
    for d in _fake_specs(spec):
        path = d.get("processes_file")
        if d["uuid"] not in uuids or not path:
            continue
        try:
            lines = open(path).read().split("\n")  # noqa: SIM115 - a test's small file
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit() and _alive(int(parts[0])):
                out.append((int(parts[0]), int(parts[1]), d["uuid"]))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False
