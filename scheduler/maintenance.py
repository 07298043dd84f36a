"""Maintenance: recover requests of dead workers and promote due retries, every interval.

Every consumer runs it (and ``jobcord scheduler`` may); each pass is one atomic script, so
any number of processes can run it at once.
"""

from __future__ import annotations

import threading

import redis
import structlog

from storage.requests import RequestStore

__all__ = ["MaintenanceLoop"]

log = structlog.get_logger("jobcord.maintenance")


class MaintenanceLoop(threading.Thread):
    def __init__(self, store: RequestStore, interval_s: float) -> None:
        super().__init__(name="jobcord-maintenance", daemon=True)
        self.store = store
        self.interval_s = interval_s
        self._stopped = threading.Event()

    def run_once(self) -> list[tuple[str, str]]:
        # Right after a Redis restart every lease looks expired: give live consumers one
        # lease period to renew before treating their requests as orphaned.
        grace_s = 2 * self.store.settings.lease_ttl_s
        if int(self.store.client.info("server")["uptime_in_seconds"]) < grace_s:
            return []
        changed = self.store.recover()
        for request_id, outcome in changed:
            log.info("maintenance", request_id=request_id, outcome=outcome)
        return changed

    def run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.run_once()
            except redis.RedisError as exc:
                log.warning("maintenance pass failed", error=str(exc))

    def stop(self) -> None:
        self._stopped.set()
