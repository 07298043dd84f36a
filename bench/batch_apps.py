"""The batching benchmark's model: a small MLP, served one request per call and batched.

Small inputs and outputs (32 and 16 floats), wide hidden layers: one request's forward pass
reads every weight (16 MB) for little arithmetic, as small embedding and classifier models
do, which is what batching amortises.

On a GPU (``BENCH_GPU_CLASS`` set, a consumer with ``--gpus``) it runs on the child's device;
otherwise on the CPU with one torch thread, so that the benchmark's callers and Redis keep
the machine's other core.
"""

from __future__ import annotations

import os

from jobcord.producers import App, JobContext, NodeSelector

app = App("batchbench")

#: Input width, hidden width, output width.
WIDTH_IN, HIDDEN, WIDTH_OUT = 32, 2048, 16
_gpu = os.environ.get("BENCH_GPU_CLASS")
_where = NodeSelector(gpu_count=1, include=[_gpu]) if _gpu else None


@app.on_startup()
def model() -> object:
    import torch

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() and _gpu else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(WIDTH_IN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, WIDTH_OUT),
    )
    return net.eval().to(device), device


def _forward(ctx: JobContext, rows: list[list[float]]) -> list[list[float]]:
    import torch

    net, device = ctx.state["model"]
    with torch.inference_mode():
        out = net(torch.tensor(rows, device=device))
    return out.cpu().tolist()


@app.job(node_selector=_where)
def embed_one(x: list[float], ctx: JobContext) -> list[float]:
    return _forward(ctx, [x])[0]


@app.job(node_selector=_where, max_batch_size=64, batch_wait_ms=10)
def embed_batch(x: list[list[float]], ctx: JobContext) -> list[list[float]]:
    return _forward(ctx, x)
