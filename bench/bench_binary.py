"""A 10 MB float32 array through the whole round trip: msgpack (raw bytes) vs JSON/base64.

    .venv/bin/python bench/bench_binary.py [--mb 10] [--rounds 10]

Both go SDK -> Redis -> a warm consumer -> the result store -> SDK and do the same work
(multiply by 2): ``scale`` takes and returns the array (msgpack, raw buffer), ``scale_b64``
takes and returns base64 text in JSON, the way JSON-only queues make you send arrays; its
timing includes the client's encode/decode. Prints medians, bytes stored and the ratio.
Redis: JOBCORD_BENCH_REDIS_URL, else 127.0.0.1:6379/12, else an embedded redis-server.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_lifecycle import Engine, _clean, _redis_url  # noqa: E402


class ArraysConsumer(Engine):
    name = "jobcord"

    def consumer_cmd(self) -> list[str]:
        return [sys.executable, "-m", "jobcord.cli", "worker", "examples.arrays:app"]

    def ready_marker(self) -> str:
        return "consumer ready"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    url = _redis_url()
    os.environ["JOBCORD_REDIS_URL"] = url
    os.environ["JOBCORD_DATA_DIR"] = tempfile.mkdtemp(prefix="jobcord-bench-binary-")
    from examples import arrays
    from jobcord.producers import RedisClient, set_default_client
    from jobcord.storage.settings import load_settings

    set_default_client(RedisClient(load_settings()))
    r = redis.Redis.from_url(url)
    _clean(r)
    a = np.random.default_rng(0).random(int(args.mb * 2**20 / 4), dtype=np.float32)
    consumer = ArraysConsumer(url, 1)
    consumer.env = {**consumer.env, **os.environ}
    consumer.start()
    times: dict[str, list[float]] = {"msgpack": [], "json/base64": []}
    stored: dict[str, int] = {}
    try:
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            handle = arrays.scale.async_run_remote(a, factor=2.0)
            out = handle.result(timeout=120)
            times["msgpack"].append(time.perf_counter() - t0)
            assert np.array_equal(out, a * 2)
            stored["msgpack"] = r.strlen(f"jobcord:req:{handle.request_id}:input")

            t0 = time.perf_counter()
            text = base64.b64encode(a.tobytes()).decode()
            handle = arrays.scale_b64.async_run_remote(text, "float32", list(a.shape), 2.0)
            back = np.frombuffer(base64.b64decode(handle.result(timeout=120)), dtype=np.float32)
            times["json/base64"].append(time.perf_counter() - t0)
            assert np.array_equal(back, a * 2)
            stored["json/base64"] = len(r.hget(f"jobcord:req:{handle.request_id}", "input"))
            _clean(r)
    finally:
        consumer.stop()
        _clean(r)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    table = Table(
        title=f"{a.nbytes / 2**20:.0f} MB float32 array, SDK -> queue -> consumer -> result "
        f"store -> SDK, median of {args.rounds}, Redis {url}"
    )
    for col in ("payload", "round trip ms", "input bytes in Redis", "vs msgpack"):
        table.add_column(col, justify="left" if col == "payload" else "right")
    for name in times:
        table.add_row(
            name, f"{med[name]:,.0f}", f"{stored[name]:,}", f"{med[name] / med['msgpack']:.2f}x"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
