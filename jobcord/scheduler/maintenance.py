"""Maintenance: recover requests of dead workers and promote due retries, every interval.

Every consumer runs it (and ``jobcord scheduler`` may); each pass is one atomic script, so
any number of processes can run it at once.
"""

from __future__ import annotations

import structlog

from jobcord.storage.requests import RequestStore

from .loops import EveryInterval

__all__ = ["MaintenanceLoop"]

log = structlog.get_logger("jobcord.maintenance")


class MaintenanceLoop(EveryInterval):
    def __init__(self, store: RequestStore, interval_s: float) -> None:
        super().__init__("maintenance", interval_s)
        self.store = store

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
