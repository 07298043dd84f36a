"""A background pass repeated every interval until stopped; a Redis error skips one pass."""

from __future__ import annotations

import threading
from typing import Any

import redis
import structlog

__all__ = ["EveryInterval"]

log = structlog.get_logger("jobcord.loops")


class EveryInterval(threading.Thread):
    def __init__(self, name: str, interval_s: float) -> None:
        super().__init__(name=f"jobcord-{name}", daemon=True)
        self.interval_s = interval_s
        self._stopped = threading.Event()

    def run_once(self) -> Any:
        raise NotImplementedError

    def run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.run_once()
            except redis.RedisError as exc:  # Redis will be back: the next pass retries
                log.warning("pass failed", loop=self.name, error=str(exc))

    def stop(self) -> None:
        self._stopped.set()
