"""Which queues a consumer serves, given its GPU class and the GPUs each of its children has.

The rule (documented in the README, tested):
- A request waits on the queue of the cheapest GPU class its NodeSelector accepts (its *own*
  queue, ``jobcord.{app}.{class}[x{count}]``).
- A consumer serves the own queues of its class, for jobs needing at most as many GPUs as each
  of its children has (``gpus_per_child``).
- It also serves, as *fallback*, the queues of other classes whose every job accepts its
  class too (a cheaper class is preferred), but only requests that have waited at least
  ``JOBCORD_FALLBACK_AFTER_S`` there: the cheapest class gets the first chance, and a busy
  cheaper class does not leave a request waiting while an adequate GPU idles. When no
  consumer of the cheaper class is alive at all, it takes them at once (a fleet of H100s
  serves a job whose cheapest adequate class is the T4 without delay).
- ``exclude``, ``include`` and ``min_vram_gb_per_gpu`` are never bent: a class the selector
  rejects never sees the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gpu_classes import CPU_CLASS
from .jobspec import AppRegistry, JobSpec

__all__ = ["Placement", "plan_placement", "accepts"]


def accepts(spec: JobSpec, gpu_class: str) -> bool:
    """Whether a consumer of ``gpu_class`` may run this job at all."""
    if spec.node_selector is None or spec.gpu_count == 0:
        return gpu_class == CPU_CLASS
    return gpu_class in spec.node_selector.gpu_classes()


@dataclass(frozen=True)
class Placement:
    gpu_class: str
    gpus_per_child: int
    own: list[str]
    fallback: list[str]
    #: Jobs of this class that need more GPUs than a child has (served by no child here).
    too_big: list[str]


def plan_placement(
    app: AppRegistry, gpu_class: str, device_count: int, gpus_per_child: int | None = None
) -> Placement:
    """The queues a consumer of ``gpu_class`` with ``device_count`` GPUs serves. By default
    each child gets as many GPUs as the largest job of this class needs (within the devices)."""
    usable = [s for s in app.jobs.values() if accepts(s, gpu_class)]
    if gpu_class == CPU_CLASS:
        group = 0
    elif gpus_per_child is not None:
        if not 1 <= gpus_per_child <= device_count:
            raise ValueError(
                f"--gpus-per-child must be between 1 and the {device_count} GPU(s) given"
            )
        group = gpus_per_child
    else:
        needs = [s.gpu_count for s in usable if s.gpu_count <= device_count]
        group = max(needs, default=1)
    fits = [s for s in usable if s.gpu_count <= max(group, 0)]
    own = sorted({s.queue for s in fits if s.gpu_class == gpu_class})
    by_queue: dict[str, list[JobSpec]] = {}
    for spec in app.jobs.values():
        by_queue.setdefault(spec.queue, []).append(spec)
    # A queue is shared by every job placed on it: take from it only if all of them fit here.
    fallback = sorted(
        q
        for q, specs in by_queue.items()
        if q not in own and all(s in fits for s in specs) and gpu_class != CPU_CLASS
    )
    too_big = sorted({s.name for s in usable if s.gpu_count > max(group, 0)})
    return Placement(gpu_class, group, own, fallback, too_big)
