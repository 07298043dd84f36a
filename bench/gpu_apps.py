"""The benchmark's GPU app: a tiny torch job on the child's device (the CPU without a GPU)."""

from __future__ import annotations

import os
from typing import Any

from jobcord.producers import App, JobContext, NodeSelector

app = App("bench-gpu")
# The class of the benchmark machine's GPU (bench_gpu.py sets it), so requests wait on the
# queue its consumer owns.
ON = NodeSelector(gpu_count=1, include=[os.environ.get("BENCH_GPU_CLASS", "h100")])


def pick_device() -> Any:
    import torch

    dev = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    weights = torch.randn(64, 64, device=dev)
    return {"device": dev, "weights": weights}


@app.on_startup()
def model() -> Any:
    return pick_device()


def tiny_body(state: Any, n: int) -> float:
    """What the job does, callable directly for the in-process baseline."""
    import torch

    x = torch.full((n, 64), 1.0, device=state["device"])
    return float((x @ state["weights"]).sum().item())  # .item() waits for the GPU


@app.job(node_selector=ON, timeout=60)
def tiny(n: int, ctx: JobContext) -> float:
    return tiny_body(ctx.state["model"], n)


@app.job(node_selector=ON, timeout=60)
def whoami() -> int:
    return os.getpid()
