"""Queue placement: every request goes on a queue named by app and GPU class."""

from __future__ import annotations

from .gpu_classes import CPU_CLASS, NodeSelector

__all__ = ["queue_name", "placement_class"]


def queue_name(app: str, gpu_class: str, gpu_count: int = 1) -> str:
    """``jobcord.{app}.{class}``; multi-GPU requests get ``{class}x{count}``."""
    suffix = gpu_class if gpu_count <= 1 or gpu_class == CPU_CLASS else f"{gpu_class}x{gpu_count}"
    return f"jobcord.{app}.{suffix}"


def placement_class(selector: NodeSelector | None) -> str:
    """The class a request is queued on: the cheapest that satisfies its selector."""
    if selector is None:
        return CPU_CLASS
    return selector.gpu_classes()[0]
