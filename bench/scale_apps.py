"""The autoscaling benchmark's app: torch loaded in on_startup (a cold start pays for it), and
a job that holds its GPU for a while."""

from __future__ import annotations

import os
import time
from typing import Any

from jobcord.producers import App, Autoscaling, JobContext, NodeSelector

from .gpu_apps import pick_device

app = App(
    "bench-scale",
    autoscaling=Autoscaling(
        min_replicas=0,
        max_replicas=int(os.environ.get("BENCH_MAX_REPLICAS", "4")),
        window_s=1.0,
        scale_down_delay_s=2.0,
    ),
)
ON = NodeSelector(gpu_count=1, include=[os.environ.get("BENCH_GPU_CLASS", "h100")])


@app.on_startup()
def model() -> Any:
    return pick_device()  # imports torch, puts a tensor on the device


@app.job(node_selector=ON, timeout=60)
def infer(ms: float, ctx: JobContext) -> int:
    import torch

    state = ctx.state["model"]
    x = torch.ones((8, 64), device=state["device"])
    float((x @ state["weights"]).sum().item())
    time.sleep(ms / 1000)
    return os.getpid()
