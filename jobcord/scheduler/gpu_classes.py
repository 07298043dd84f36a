"""GPU classes and NodeSelector: which kinds of device a job may run on.

A GPU class is a short, stable name for a family of cards (``h100``, ``a100-40gb``, ...);
``cpu`` is the class of a consumer with no GPU. ``relative_cost`` orders classes so that the
cheapest adequate one is preferred (hourly list prices, roughly, normalised to the T4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["GpuClass", "GPU_CLASSES", "CPU_CLASS", "NodeSelector", "classify_gpu_name"]

CPU_CLASS = "cpu"


@dataclass(frozen=True)
class GpuClass:
    name: str
    vram_gb: int
    relative_cost: float
    # Regular expressions over the lower-cased NVML device name.
    nvml_names: tuple[str, ...]


GPU_CLASSES: dict[str, GpuClass] = {
    c.name: c
    for c in (
        GpuClass("t4", 16, 1.0, (r"\bt4\b",)),
        GpuClass("l4", 24, 1.4, (r"\bl4\b",)),
        GpuClass("a10g", 24, 1.9, (r"\ba10g\b",)),
        GpuClass("a10", 24, 1.8, (r"\ba10\b",)),
        GpuClass("3090", 24, 0.9, (r"\brtx 3090\b",)),
        GpuClass("4090", 24, 1.3, (r"\brtx 4090\b",)),
        GpuClass("a5000", 24, 1.5, (r"\brtx a5000\b",)),
        GpuClass("a6000", 48, 2.3, (r"\brtx a6000\b",)),
        GpuClass("l40s", 48, 3.0, (r"\bl40s\b",)),
        GpuClass("a100-40gb", 40, 3.6, (r"\ba100\b.*\b40gb\b",)),
        GpuClass("a100", 80, 4.5, (r"\ba100\b",)),
        GpuClass("h100", 80, 7.5, (r"\bh100\b",)),
        GpuClass("h200", 141, 9.0, (r"\bh200\b",)),
        GpuClass("b200", 180, 14.0, (r"\bb200\b",)),
    )
}


def classify_gpu_name(nvml_name: str, memory_bytes: int | None = None) -> str | None:
    """Map an NVML device name (e.g. ``NVIDIA H100 80GB HBM3``) to a class name, or None."""
    name = nvml_name.lower()
    for cls in GPU_CLASSES.values():  # a100-40gb is listed before the generic a100
        if any(re.search(pattern, name) for pattern in cls.nvml_names):
            if cls.name == "a100" and memory_bytes is not None and memory_bytes < 60 * 2**30:
                return "a100-40gb"
            return cls.name
    return None


class NodeSelector(BaseModel):
    """Where a job may run (the names follow Chutes' NodeSelector)."""

    model_config = ConfigDict(frozen=True)

    gpu_count: int = Field(default=1, ge=0, le=8, description="GPUs per request; 0: CPU only.")
    min_vram_gb_per_gpu: int = Field(default=16, ge=0)
    include: tuple[str, ...] | None = Field(default=None, description="Only these GPU classes.")
    exclude: tuple[str, ...] = ()

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _known_classes(cls, value: object) -> object:
        if value is None:
            return value
        names = [str(v).lower() for v in value]  # type: ignore[attr-defined]
        unknown = [n for n in names if n not in GPU_CLASSES]
        if unknown:
            raise ValueError(
                f"unknown GPU class(es) {unknown}; known: {', '.join(sorted(GPU_CLASSES))}"
            )
        return tuple(names)

    @model_validator(mode="after")
    def _satisfiable(self) -> NodeSelector:
        if self.gpu_count > 0 and not self.gpu_classes():
            raise ValueError("no GPU class satisfies this node selector")
        return self

    def gpu_classes(self) -> list[str]:
        """Matching classes, cheapest first; ``["cpu"]`` when no GPU is needed."""
        if self.gpu_count == 0:
            return [CPU_CLASS]
        matches = [
            c
            for c in GPU_CLASSES.values()
            if c.vram_gb >= self.min_vram_gb_per_gpu
            and (self.include is None or c.name in self.include)
            and c.name not in self.exclude
        ]
        return [c.name for c in sorted(matches, key=lambda c: (c.relative_cost, c.name))]
