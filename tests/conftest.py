"""Shared fixtures: real Redis, a real S3 HTTP endpoint (moto's server), real workers.

A service that is absent skips its tests on a developer machine and fails them under CI
(``CI=true``), so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required under CI but is not available")
    pytest.skip(f"{what} is not available (it is required under CI)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setenv_all(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for k, v in values.items():
        monkeypatch.setenv(k, v)


def terminate(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: Linux only, as are jobcord's consumers)."""
    out: list[int] = []
    # Each thread's children are listed under it (a consumer starts its children from one
    # thread of its own).
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids = [int(c) for c in children.read_text().split()]
        except FileNotFoundError:
            continue
        for child in pids:
            out += [child, *descendants(child)]
    return out


def wait_for(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.02):
    """Test-side polling of an observable condition (the product itself never polls)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- Redis --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("JOBCORD_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    # Under pytest-xdist each worker gets its own database (13, 12, 11, ...): tests clean
    # the whole jobcord keyspace, so workers must never share one.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    base, _, db = url.rpartition("/")
    url = f"{base}/{int(db or 13) - int(worker.removeprefix('gw'))}"
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        service_missing(f"Redis at {url}")
    return url


def delete_jobcord_keys(url: str) -> None:
    client = redis.Redis.from_url(url)
    for pattern in ("jobcord:*", "jobcord.dq:*"):
        batch = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            client.delete(*batch[i : i + 500])


@pytest.fixture
def rds(redis_url: str) -> Iterator[redis.Redis]:
    """A clean keyspace for one test, cleaned again afterwards."""
    delete_jobcord_keys(redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    delete_jobcord_keys(redis_url)


def start_private_redis(port: int, data_dir) -> None:
    from jobcord.storage.embedded_redis import start_redis_server

    start_redis_server(
        data_dir, ["--port", str(port), "--bind", "127.0.0.1", "--save", ""], appendfsync="always"
    )
    wait_for(lambda: ping_redis(port), 10, "redis-server to answer")


def ping_redis(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis(tmp_path, monkeypatch, jobcord_env):
    """A redis-server of the test's own (AOF on), which it may restart, fill or stop."""
    port = free_port()
    start_private_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("JOBCORD_REDIS_URL", url)
    yield port, url, tmp_path
    if ping_redis(port):
        redis.Redis(port=port).shutdown(nosave=True)


# -- S3 (moto's server, a real HTTP endpoint) -----------------------------------------------
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        service_missing("moto's S3 server")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    service_missing("moto's S3 server (did not start)")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[str]:
    import boto3

    name = f"jobcord-test-{int(time.time() * 1000)}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=name)
    yield name
    for obj in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


# -- jobcord processes --------------------------------------------------------------------
@pytest.fixture
def jobcord_env(
    rds: redis.Redis, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Short leases and grace periods so failure paths finish in seconds."""
    values = {
        "JOBCORD_REDIS_URL": redis_url,
        "JOBCORD_DATA_DIR": str(tmp_path / "data"),
        "JOBCORD_LEASE_TTL_S": "1.0",
        "JOBCORD_MAINTENANCE_INTERVAL_S": "0.2",
        "JOBCORD_KILL_GRACE_S": "0.5",
        "JOBCORD_LOG_FORMAT": "json",
    }
    setenv_all(monkeypatch, values)
    return values


@pytest.fixture
def s3_env(s3_endpoint, s3_bucket, monkeypatch, jobcord_env) -> dict[str, str]:
    """Results in the real S3 endpoint, under a prefix; JSON over 1 KiB goes there too."""
    env = {
        "JOBCORD_S3_ENDPOINT_URL": s3_endpoint,
        "JOBCORD_S3_BUCKET": s3_bucket,
        "JOBCORD_S3_PREFIX": "results",
        "JOBCORD_INLINE_OUTPUT_MAX_BYTES": "1024",
    }
    setenv_all(monkeypatch, env)
    return env


@pytest.fixture
def s3_client_fixture(s3_endpoint):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def client(jobcord_env: dict[str, str]) -> Iterator[object]:
    from jobcord.producers import RedisClient, set_default_client
    from jobcord.storage.settings import load_settings

    c = RedisClient(load_settings())
    set_default_client(c)
    yield c
    set_default_client(None)


def health_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``jobcord health`` as an operator runs it, with ``env`` on top of this one's."""
    return subprocess.run(
        [sys.executable, "-m", "jobcord.cli", "health"],
        cwd=ROOT,
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=30,
    )


class WorkerProcess:
    def __init__(
        self, app_ref: str, env: dict[str, str], args: list[str], prefix: list[str] | None = None
    ) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.worker_id: str | None = None  # its id in Redis, once ready
        # ``prefix``: what runs it (``ip netns exec NAME``: a host of its own network).
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "jobcord.cli", "worker", app_ref, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "consumer ready" in line:
                found = re.search(r'"worker": "([^"]+)"', line)
                self.worker_id = found.group(1) if found else None
                self.ready.set()

    @property
    def log(self) -> str:
        return "".join(self.lines[-60:])

    def wait_ready(self, timeout: float = 30) -> WorkerProcess:
        if not self.ready.wait(timeout):
            raise AssertionError(f"worker not ready after {timeout} s:\n{self.log}")
        return self

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def tree(self) -> list[int]:
        """The consumer's pid and those of its job processes."""
        return [self.proc.pid, *descendants(self.proc.pid)]

    def freeze(self) -> None:
        """SIGSTOP the whole consumer (a VM paused, a machine swapping): parent and children."""
        for pid in self.tree():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.tree():
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        terminate(self.proc)


@pytest.fixture
def start_worker(jobcord_env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(
        app_ref: str = "tests.apps.lifecycle:app",
        *args: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        prefix: list[str] | None = None,
    ) -> WorkerProcess:
        # One child unless a test asks for more (the CLI's CPU default is one per core).
        one = [] if "--concurrency" in args else ["--concurrency", "1"]
        w = WorkerProcess(
            app_ref, {**jobcord_env, **(env or {})}, ["--drain", "2", *one, *args], prefix
        )
        started.append(w)
        return w.wait_ready() if wait else w

    yield start
    for w in started:
        w.stop()


class ApiServer:
    def __init__(
        self, env: dict[str, str], args: list[str], app_ref: str = "tests.apps.lifecycle:app"
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobcord.cli",
                "api",
                app_ref,
                "--port",
                str(self.port),
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                terminate(self.proc)  # reading a live process's stderr would block forever
                raise AssertionError(f"API did not start: {self.proc.stderr.read()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        terminate(self.proc)


@pytest.fixture
def api_server(jobcord_env: dict[str, str]) -> Iterator[ApiServer]:
    server = ApiServer({**jobcord_env, "JOBCORD_API_MAX_BODY_BYTES": "65536"}, [])
    yield server
    server.stop()


@pytest.fixture
def api_key(jobcord_env: dict[str, str]) -> str:
    from jobcord.storage.apikeys import ApiKeyStore

    key, _ = ApiKeyStore(
        redis.Redis.from_url(jobcord_env["JOBCORD_REDIS_URL"], decode_responses=True)
    ).create(["lifecycle"])
    return key


@pytest.fixture
def http(api_server: ApiServer, api_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=api_server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    ) as c:
        yield c


@pytest.fixture
def start_scheduler(jobcord_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen]]:
    """``start(*apps, **env)``: a ``jobcord scheduler`` process, stopped after the test."""
    procs: list[subprocess.Popen] = []

    def start(*apps: str, **extra: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobcord.cli", "scheduler", *apps],
            cwd=ROOT,
            env={**os.environ, **jobcord_env, **extra},
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        terminate(proc)
