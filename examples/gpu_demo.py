"""A GPU app: a torch job pinned to one GPU, and one stuck in a long CUDA computation.

    jobcord worker examples.gpu_demo:app --gpus all      # one child per GPU, pinned by UUID
    jobcord worker examples.gpu_demo:app --gpus none     # the CPU job

torch is imported in on_startup and job bodies only, so the API never loads it.
"""

from __future__ import annotations

import os
from typing import Any

from jobcord import App, JobContext, NodeSelector

app = App("gpu-demo")

ANY_GPU = NodeSelector(gpu_count=1, min_vram_gb_per_gpu=8)


@app.on_startup()
def device() -> dict[str, Any]:
    """Runs once per child, on its device: what a model load would do."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.init()
        return {"device": "cuda:0", "name": torch.cuda.get_device_name(0)}
    return {"device": "cpu", "name": "cpu"}


@app.job(node_selector=ANY_GPU, timeout=120)
def matmul(n: int, ctx: JobContext) -> dict[str, Any]:
    """Multiplies two n x n matrices on this child's GPU; says where it ran."""
    import torch

    dev = ctx.state["device"]["device"]
    a = torch.randn(n, n, device=dev)
    checksum = float((a @ a).sum().item())
    out: dict[str, Any] = {
        "device": dev,
        "checksum": checksum,
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }
    if dev.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        out.update(
            name=props.name,
            uuid=str(getattr(props, "uuid", "")),
            memory_allocated=torch.cuda.memory_allocated(),
        )
    return out


@app.job(node_selector=ANY_GPU, timeout=5)
def spin(seconds: float, ctx: JobContext) -> str:
    """A long CUDA computation: only killing the process stops it (its timeout is 5 s)."""
    import time

    import torch

    x = torch.randn(8192, 8192, device="cuda")
    ctx.progress(0.0, f"spinning in pid {os.getpid()}")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        x = (x @ x).clamp_(-1, 1)  # kernels queue up; synchronize only at the end
    torch.cuda.synchronize()
    return "finished"


@app.job(timeout=60)
def describe() -> dict[str, str]:
    """A CPU job: runs on --gpus none consumers."""
    return {"pid": str(os.getpid())}
