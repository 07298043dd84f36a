"""``jobcord dev``: embedded Redis, local results, a consumer, and a tour of the demo app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from jobcord.storage.connection import redis_url
from jobcord.storage.embedded_redis import embedded_redis_running, stop_embedded_redis
from jobcord.storage.settings import Settings

__all__ = ["run_dev"]

console = Console()


def _start_worker(app_ref: str, concurrency: int, env: dict[str, str]) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "jobcord.cli",
        "worker",
        app_ref,
        "--concurrency",
        str(concurrency),
    ]
    return subprocess.Popen(cmd, env=env)


def _demo_requests() -> list[tuple[str, object]]:
    from jobcord.scheduler.loader import load_app

    load_app("examples.demo:app")  # puts the current directory on sys.path, like the worker
    demo = sys.modules["examples.demo"]

    handles = [
        ("add(2, 3)", demo.add.async_run_remote(2, 3)),
        ("scale([1, 2, 3]) with progress", demo.scale.async_run_remote([1.0, 2.0, 3.0])),
        ("render('hello', copies=2) -> files", demo.render.async_run_remote("hello", copies=2)),
        ("flaky(fail_times=1) -> retried", demo.flaky.async_run_remote(fail_times=1)),
        ("stuck(10) in C, timeout 1.5 s", demo.stuck.async_run_remote(10)),
        ("noise(100000) -> bytes in store", demo.noise.async_run_remote(100_000)),
    ]
    key = f"dev-{int(time.time())}"
    first = demo.add.async_run_remote(40, 2, idempotency_key=key)
    again = demo.add.async_run_remote(40, 2, idempotency_key=key)
    handles.append((f"add(40, 2) key={key}", first))
    handles.append(("  same key again -> same request" if not again.created else "?!", again))
    cancel_me = demo.sleepy.async_run_remote(30)
    handles.append(("sleepy(30), then canceled", cancel_me))
    threading.Timer(2.0, cancel_me.cancel).start()
    return handles


def _table(rows: list[tuple[str, object]]) -> Table:
    table = Table("request", "id", "status", "attempt", "progress", "output / error")
    for label, handle in rows:
        rec = handle.status()  # type: ignore[attr-defined]
        if rec.error is not None and rec.status.value != "SUCCEEDED":
            detail = f"[red]{rec.error.type}[/red]: {rec.error.message[:60]}"
        elif rec.output is not None:
            detail = str(rec.output)[:60]
        elif rec.result is not None or rec.files:
            names = [f.name for f in ([rec.result] if rec.result else []) + rec.files]
            detail = "stored: " + ", ".join(names)
        else:
            detail = ""
        progress = f"{rec.progress:.0%}" if rec.progress is not None else ""
        table.add_row(
            label, rec.request_id[:8], rec.status.value, str(rec.attempt), progress, detail
        )
    return table


def _start_api(app_ref: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jobcord.cli", "api", app_ref, "--no-auth", "--port", str(port)]
    return subprocess.Popen(cmd, env=env)


def _http_tour(port: int) -> None:
    """The same app over HTTP: a job, a cord, and a streaming cord."""
    import httpx

    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30) as http:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
        done = http.post(
            "/v1/apps/demo/jobs/add/run_remote?wait_seconds=10", json={"input": {"a": 20, "b": 22}}
        ).json()
        console.print(
            f"POST {base}/v1/apps/demo/jobs/add/run_remote -> {done['status']} "
            f"output={done['output']}"
        )
        predicted = http.post("/apps/demo/predict", json={"values": [1.5, 2.5]}).json()
        console.print(f"POST {base}/apps/demo/predict -> {predicted}")
        items = []
        with http.stream("POST", "/apps/demo/generate", json={"prompt": "tok", "tokens": 4}) as r:
            for line in r.iter_lines():
                if line.startswith("data:") and "status" not in line:
                    items.append(line[5:].strip())
        console.print(f"POST {base}/apps/demo/generate (server-sent events) -> {', '.join(items)}")


def stop_dev(settings: Settings) -> None:
    """``jobcord dev stop``: stop the embedded redis-server of this user (its data stays)."""
    where = settings.data_dir.resolve()
    if stop_embedded_redis(settings.data_dir):
        console.print(f"stopped the embedded redis-server of {where} (data kept on disk)")
    else:
        console.print(f"no embedded redis-server is running for {where}")


def run_dev(
    settings: Settings, app_ref: str, *, serve: bool, concurrency: int, api_port: int = 8000
) -> None:
    embedded = settings.redis_url is None and not embedded_redis_running(settings.data_dir)
    url = redis_url(settings)  # starts the embedded redis-server when no URL is configured
    env = {**os.environ, "JOBCORD_REDIS_URL": url, "JOBCORD_DATA_DIR": str(settings.data_dir)}
    os.environ.update({"JOBCORD_REDIS_URL": url})
    where = settings.s3_bucket and f"s3://{settings.s3_bucket}" or settings.data_dir / "results"
    console.print(f"[bold]jobcord dev[/bold]: redis at {url}, results in {where}")
    worker = _start_worker(app_ref, concurrency, env)
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "jobcord.cli", "scheduler", app_ref], env=env
    )
    children = [worker, scheduler]
    if api_port:
        children.append(_start_api(app_ref, api_port, env))
        console.print(f"HTTP API (no keys) on http://127.0.0.1:{api_port}, docs at /docs")
    try:
        if app_ref == "examples.demo:app":
            rows = _demo_requests()
            with Live(_table(rows), console=console, refresh_per_second=8) as live:
                while not all(h.status().is_terminal for _, h in rows):  # type: ignore[attr-defined]
                    time.sleep(0.15)
                    live.update(_table(rows))
                live.update(_table(rows))
            for label, handle in rows:
                rec = handle.status()  # type: ignore[attr-defined]
                for f in ([rec.result] if rec.result else []) + rec.files:
                    console.print(f"  {label}: {f.name} -> {f.url}")
            if api_port:
                _http_tour(api_port)
        if serve or app_ref != "examples.demo:app":
            console.print("consumer running; Ctrl-C to stop")
            worker.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(60)
        if embedded:  # we started it: stop it (its data stays on disk for the next run)
            stop_embedded_redis(settings.data_dir)
