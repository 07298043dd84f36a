"""HTTP figures in one run: async_run_remote requests/s, and the latency of a no-op
``run_remote`` round trip (HTTP -> queue -> consumer -> HTTP) beside the same function behind a
plain FastAPI route in one process.

    .venv/bin/python bench/bench_http.py [--requests 300] [--submits 1000] [--threads 8]

Both servers are uvicorn on loopback; one consumer with 2 slots serves the queue.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_lifecycle import _clean, _redis_url  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _latencies(call, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(20):  # warm-up
        call()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return sorted(out)


def _wrk(url: str, headers: dict[str, str], body: str, seconds: int = 5) -> float | None:
    """Requests/s that wrk (Debian's package; one thread, 16 connections) gets from a POST
    route: a load generator that is not itself the bottleneck. None without wrk."""
    if shutil.which("wrk") is None:
        return None
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        out = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if match is None or non2xx is not None:
        raise RuntimeError(f"wrk run failed:\n{out}")
    return float(match.group(1))


def _p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--submits", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    url = _redis_url()
    r = redis.Redis.from_url(url)
    _clean(r)
    env = {
        **os.environ,
        "JOBCORD_REDIS_URL": url,
        "PYTHONPATH": str(ROOT),
        "JOBCORD_LOG_LEVEL": "WARNING",
    }
    from jobcord.storage.apikeys import ApiKeyStore

    key, record = ApiKeyStore(redis.Redis.from_url(url, decode_responses=True)).create(["bench"])
    api_port, plain_port = _port(), _port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "jobcord.cli", "api", "bench.apps:app", "--port", str(api_port)],
            cwd=ROOT,
            env=env,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "jobcord.cli", "worker", "bench.apps:app", "--concurrency", "2"],
            cwd=ROOT,
            env=env,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "bench.plain_fastapi", str(plain_port)], cwd=ROOT, env=env
        ),
    ]
    try:
        _up(f"http://127.0.0.1:{api_port}/healthz")
        _up(f"http://127.0.0.1:{plain_port}/docs")
        headers = {"Authorization": f"Bearer {key}"}
        jc = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers=headers)
        plain = httpx.Client(base_url=f"http://127.0.0.1:{plain_port}")
        # Make sure the consumer is warm before timing.
        while (
            jc.post(
                "/v1/apps/bench/jobs/noop/run_remote?wait_seconds=10", json={"input": {}}
            ).status_code
            != 200
        ):
            time.sleep(0.2)

        def via_queue() -> None:
            reply = jc.post(
                "/v1/apps/bench/jobs/noop/run_remote?wait_seconds=10", json={"input": {}}
            )
            assert reply.status_code == 200 and reply.json()["status"] == "SUCCEEDED"

        def direct() -> None:
            assert plain.post("/noop").status_code == 200

        queue_ms = _latencies(via_queue, args.requests)
        direct_ms = _latencies(direct, args.requests)

        def submit(_: int) -> None:
            reply = jc.post("/v1/apps/bench/jobs/noop/async_run_remote", json={"input": {}})
            assert reply.status_code == 202

        started = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(submit, range(args.submits)))
        submit_rate = args.submits / (time.perf_counter() - started)
        json_headers = {"Content-Type": "application/json"}
        wrk_queue = _wrk(
            f"http://127.0.0.1:{api_port}/v1/apps/bench/jobs/noop/async_run_remote",
            {**headers, **json_headers},
            '{"input": {}}',
        )
        wrk_plain = _wrk(f"http://127.0.0.1:{plain_port}/noop", json_headers, "{}")
        # The API process alone (what one API process takes): the consumer stopped, so
        # its children do not share the two cores; the requests just wait on the queue.
        procs[1].terminate()
        procs[1].wait(30)
        wrk_alone = _wrk(
            f"http://127.0.0.1:{api_port}/v1/apps/bench/jobs/noop/async_run_remote",
            {**headers, **json_headers},
            '{"input": {}}',
        )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        ApiKeyStore(redis.Redis.from_url(url, decode_responses=True)).revoke(record.key_id)
        _clean(r)
    table = Table(
        title=f"HTTP, {args.requests} sequential calls; {args.submits} submissions "
        f"from {args.threads} threads; one consumer with 2 slots"
    )
    for col in (
        "metric",
        "jobcord (HTTP -> queue -> consumer)",
        "plain FastAPI route",
        "added by the queue",
    ):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for name, q in (("p50 ms", 0.5), ("p99 ms", 0.99)):
        a, b = _p(queue_ms, q), _p(direct_ms, q)
        table.add_row(f"no-op run_remote {name}", f"{a:.2f}", f"{b:.2f}", f"{a - b:+.2f} ms")
    table.add_row(
        "mean ms", f"{statistics.mean(queue_ms):.2f}", f"{statistics.mean(direct_ms):.2f}", ""
    )
    table.add_row(
        f"async_run_remote requests/s ({args.threads} Python client threads)",
        f"{submit_rate:,.0f}",
        "",
        "",
    )
    if wrk_queue is not None and wrk_plain is not None:
        table.add_row(
            "requests/s, wrk -t1 -c16 (async_run_remote | plain route)",
            f"{wrk_queue:,.0f}",
            f"{wrk_plain:,.0f}",
            f"{wrk_queue / wrk_plain:.2f}x",
        )
    if wrk_alone is not None and wrk_plain is not None:
        table.add_row(
            "requests/s, wrk -t1 -c16, async_run_remote with no consumer on the cores",
            f"{wrk_alone:,.0f}",
            f"{wrk_plain:,.0f}",
            f"{wrk_alone / wrk_plain:.2f}x",
        )
    Console(width=130).print(table)


if __name__ == "__main__":
    main()
