"""The request list's filters, read from a query string that anyone can type: bounded, and
wrong values become one message naming the field (the page shows it; never a 500)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from jobcord.storage.statuses import Status

__all__ = ["RequestFilter", "FilterError", "SINCE_CHOICES"]

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_SINCE = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: What the page's "since" menu offers (any NUMBER+s/m/h/d is accepted).
SINCE_CHOICES = ("", "15m", "1h", "6h", "24h", "7d")
_MAX_LIMIT = 500


class FilterError(ValueError):
    """A filter value that cannot be used; the message names the field."""


@dataclass(frozen=True)
class RequestFilter:
    app: str
    job: str | None = None
    statuses: frozenset[Status] = field(default_factory=frozenset)
    since: str = ""  # as typed, e.g. "1h"
    limit: int = 50

    @property
    def since_epoch(self) -> float | None:
        if not self.since:
            return None
        n, unit = _SINCE.match(self.since).groups()  # type: ignore[union-attr]
        return time.time() - int(n) * _UNIT_S[unit]

    @classmethod
    def parse(cls, query: Mapping[str, str], default_app: str) -> RequestFilter:
        app = query.get("app", "").strip() or default_app
        if not _NAME.match(app):
            raise FilterError("app: letters, digits, '.', '_' or '-', at most 128")
        job = query.get("job", "").strip() or None
        if job is not None and not _NAME.match(job):
            raise FilterError("job: letters, digits, '.', '_' or '-', at most 128")
        statuses = set()
        for name in filter(None, (s.strip().upper() for s in query.get("status", "").split(","))):
            try:
                statuses.add(Status(name))
            except ValueError:
                known = ", ".join(s.value for s in Status)
                raise FilterError(f"status: {name[:40]!r} is not one of {known}") from None
        since = query.get("since", "").strip().lower()
        if since and not _SINCE.match(since):
            raise FilterError("since: a number and a unit, like 15m, 6h or 7d")
        raw_limit = query.get("limit", "").strip() or "50"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _MAX_LIMIT:
            raise FilterError(f"limit: a whole number from 1 to {_MAX_LIMIT}")
        return cls(app, job, frozenset(statuses), since, int(raw_limit))

    def query(self) -> dict[str, str]:
        """The filter as query parameters (links, the live stream)."""
        out = {"app": self.app}
        if self.job:
            out["job"] = self.job
        if self.statuses:
            out["status"] = ",".join(sorted(s.value for s in self.statuses))
        if self.since:
            out["since"] = self.since
        if self.limit != 50:
            out["limit"] = str(self.limit)
        return out
