"""A job process's memory limit, set as each attempt starts, and how it reports hitting it.

The limit covers the whole job process while it runs an attempt of that job (its model,
what ``on_startup`` loaded, and its helpers), so set it with the resident model in mind.

- ``cgroup2`` / ``cgroup1``: the kernel enforces it; past it the OOM killer ends a member of
  the process's cgroup (``memory.events`` / ``memory.oom_control`` count those kills), and
  swap is not allowed to stand in for it.
- ``rlimit``: ``RLIMIT_DATA`` on the job process (helpers started afterwards inherit it):
  an allocation past it fails, which Python raises as ``MemoryError``. It is a per-process
  bound, the best a host without a writable memory cgroup offers.
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path
from typing import Any

import structlog

from .cgroups import MemoryControl

__all__ = ["MemoryLimit", "format_bytes", "out_of_memory_message", "memory_limit_for"]

log = structlog.get_logger("jobcord.limits")


def memory_limit_for(spec: Any, default: int | None) -> int | None:
    """The limit an attempt of ``spec`` runs under: its job's own, else the worker's."""
    own = spec.memory_limit if spec is not None else None
    return own or default


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def out_of_memory_message(limit: int | None) -> str:
    return f"out of memory: limit {format_bytes(limit)}" if limit else "out of memory"


class MemoryLimit:
    """The limit in force in this job process (None: none)."""

    def __init__(self, control: MemoryControl) -> None:
        self.control = control
        self.current: int | None = None
        self._dir = Path(control.directory) if control.directory else None
        self._rlimit_hard = resource.getrlimit(resource.RLIMIT_DATA)[1]

    def apply(self, limit: int | None) -> None:
        """Make ``limit`` (bytes; None: none) the one in force, if it is not already."""
        if limit == self.current:
            return
        try:
            self._set(limit)
        except OSError as exc:  # e.g. v1 refuses a limit below what the process holds now
            log.warning("memory limit not set", limit=limit, error=str(exc))
            return
        self.current = limit

    def _set(self, limit: int | None) -> None:
        mode = self.control.mode
        if mode == "cgroup2" and self._dir is not None:
            self._write("memory.max", str(limit) if limit else "max")
            self._write("memory.swap.max", "0" if limit else "max")
        elif mode == "cgroup1" and self._dir is not None:
            value = str(limit) if limit else "-1"
            # memsw (memory + swap) must never be below the memory limit: order the writes.
            raising = limit is None or (self.current is not None and limit > self.current)
            if raising:
                self._write("memory.memsw.limit_in_bytes", value)
                self._write("memory.limit_in_bytes", value)
            else:
                self._write("memory.limit_in_bytes", value)
                self._write("memory.memsw.limit_in_bytes", value)
        else:
            soft = limit if limit else self._rlimit_hard
            if self._rlimit_hard != resource.RLIM_INFINITY and soft > self._rlimit_hard:
                soft = self._rlimit_hard
            resource.setrlimit(resource.RLIMIT_DATA, (soft, self._rlimit_hard))

    def _write(self, name: str, value: str) -> None:
        assert self._dir is not None
        with contextlib.suppress(FileNotFoundError):  # no swap accounting on this host
            (self._dir / name).write_text(value)

    def oom_kills(self) -> int:
        """How many processes the kernel ended for this cgroup's limit so far (0 without
        one)."""
        if self._dir is None:
            return 0
        name = "memory.events" if self.control.mode == "cgroup2" else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self._dir / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0
