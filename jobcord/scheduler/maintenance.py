"""Maintenance: recover requests of dead workers and promote due retries, every interval.

Every consumer runs it (and ``jobcord scheduler`` may); each pass is one atomic script, so
any number of processes can run it at once.
"""

from __future__ import annotations

import time

import structlog

from jobcord.storage.parked import prune_parked
from jobcord.storage.requests import RequestStore

from .loops import EveryInterval

__all__ = ["MaintenanceLoop", "PRUNE_EVERY_S"]

#: How often parked messages of ended requests are dropped (jobcord.storage.parked).
PRUNE_EVERY_S = 5.0

log = structlog.get_logger("jobcord.maintenance")


class MaintenanceLoop(EveryInterval):
    def __init__(self, store: RequestStore, interval_s: float) -> None:
        super().__init__("maintenance", interval_s)
        self.store = store
        self._pruned_at = float("-inf")

    def run_once(self) -> list[tuple[str, str]]:
        # Right after a Redis restart every lease looks expired: give live consumers one
        # lease period to renew before treating their requests as orphaned.
        grace_s = 2 * self.store.settings.lease_ttl_s
        if int(self.store.client.info("server")["uptime_in_seconds"]) < grace_s:
            return []
        changed = self.store.recover()
        for request_id, outcome in changed:
            log.info("maintenance", request_id=request_id, outcome=outcome)
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = time.monotonic()
            if removed := prune_parked(self.store.client):
                log.info("parked messages of ended requests dropped", count=removed)
        return changed
