"""Jobs that start helpers the way real jobs do, then hang, grow, or finish.

Each helper's pid goes to the Redis list ``jobcord:test:helpers:<tag>`` once it runs (the
double-forked one reports its own, final pid), so a test can watch every one of them die.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

import redis

from jobcord.producers import App, JobContext, NodeSelector

app = App("containment")

#: How each kind of helper is started. ``stubborn`` ignores SIGTERM; ``daemon`` forks twice
#: and calls setsid (a classic daemon: re-parented away from the job, in a session of its
#: own); ``escapee`` does that and also clears its environment.
HELPER_KINDS = ("popen", "fork", "stubborn", "daemon")

_HELPER = """
import os, signal, sys, time, redis
kind, key, url = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if kind in ("daemon", "escapee"):
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
redis.Redis.from_url(url).rpush(key, os.getpid())
if kind == "escapee" and len(sys.argv) > 4:
    with open(sys.argv[4], "a") as f:
        f.write(f"{os.getpid()} {2**30}\\n")
while True:
    time.sleep(1)
"""


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["JOBCORD_REDIS_URL"], decode_responses=True)


def _key(tag: str) -> str:
    return f"jobcord:test:helpers:{tag}"


def _forked_helper(key: str, url: str) -> None:
    # A fork-context child: it inherits the job process's descriptors and signal handlers.
    redis.Redis.from_url(url).rpush(key, os.getpid())
    while True:
        time.sleep(1)


def start_helper(kind: str, tag: str, gpu_file: str | None = None) -> None:
    key, url = _key(tag), os.environ["JOBCORD_REDIS_URL"]
    if kind == "fork":
        multiprocessing.get_context("fork").Process(target=_forked_helper, args=(key, url)).start()
        return
    args = [sys.executable, "-c", _HELPER, kind, key, url]
    env = None
    if kind == "escapee":
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path)}
        args.append(gpu_file or "")
    subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL)


def _wait_reported(tag: str, n: int) -> None:
    deadline = time.monotonic() + 20
    while _redis().llen(_key(tag)) < n and time.monotonic() < deadline:
        time.sleep(0.02)


@app.job(timeout=2.0)
def helpers_then_hang(tag: str, kinds: list[str], ctx: JobContext) -> None:
    """Start one helper of each kind, say so, then hang past the timeout."""
    for kind in kinds:
        start_helper(kind, tag)
    _wait_reported(tag, len(kinds))
    _redis().set(f"jobcord:test:running:{tag}", os.getpid())
    while True:
        time.sleep(0.1)


@app.job()
def helpers_then_wait(tag: str, kinds: list[str], seconds: float) -> None:
    """The same without a timeout of its own (cancels, worker kills)."""
    for kind in kinds:
        start_helper(kind, tag)
    _wait_reported(tag, len(kinds))
    _redis().set(f"jobcord:test:running:{tag}", os.getpid())
    time.sleep(seconds)


@app.job(timeout=2.0, node_selector=NodeSelector(gpu_count=1, include=["h100"]))
def escape_then_hang(tag: str, gpu_file: str) -> None:
    """A helper that leaves every mark of the tree behind and holds (fake) GPU memory."""
    start_helper("escapee", tag, gpu_file)
    _wait_reported(tag, 1)
    _redis().set(f"jobcord:test:running:{tag}", os.getpid())
    while True:
        time.sleep(0.1)


@app.job(memory_limit="256MiB", retries=1, retry_initial_delay_s=0.1)
def grow(tag: str, mib: int) -> int:
    """Allocate ``mib`` MiB, touching every page (so it is really held)."""
    _redis().incr(f"jobcord:test:grow:{tag}")
    blocks = []
    for _ in range(mib):
        block = bytearray(2**20)
        block[::4096] = b"\x01" * len(block[::4096])
        blocks.append(block)
    return len(blocks)


@app.job(memory_limit="256MiB")
def grow_in_helper(tag: str, mib: int) -> int:
    """A helper grows past the limit (the job process itself stays small)."""
    code = subprocess.call(
        [sys.executable, "-c", f"b = [bytearray(2**20) for _ in range({mib})]; print(len(b))"]
    )
    if code != 0:
        raise RuntimeError(f"helper exited {code}")
    return code


@app.job()
def echo(x: int) -> int:
    _redis().incr("jobcord:test:containment:echo")
    return x


@app.job()
def pid() -> int:
    return os.getpid()


@app.job(node_selector=NodeSelector(gpu_count=1, include=["h100"]))
def gpu_echo(x: int) -> int:
    return x
