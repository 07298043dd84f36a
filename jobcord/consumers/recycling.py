"""When a healthy child is replaced anyway (both off by default)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Recycling"]


@dataclass(frozen=True)
class Recycling:
    """``max_jobs``: after this many jobs (the child counts and exits itself);
    ``memory_fraction``: when, after a job, it still holds this much of a GPU (``probe``:
    pid -> the largest fraction of one of its GPUs it holds). The child asks, after each
    job and before that job's finish may take the next one."""

    max_jobs: int = 0
    memory_fraction: float = 0.0
    probe: Callable[[int], float | None] | None = None

    def reason(self, jobs_done: int, pid: int) -> str | None:
        if self.max_jobs and jobs_done >= self.max_jobs:
            return f"ran {jobs_done} jobs"
        return self.memory_reason(pid)

    def memory_reason(self, pid: int) -> str | None:
        if self.memory_fraction and self.probe is not None:
            held = self.probe(pid)
            if held is not None and held >= self.memory_fraction:
                return f"holds {held:.0%} of a GPU's memory after a job"
        return None
