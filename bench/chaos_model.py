"""What the fault suite records while it runs, and the shape of its accounting."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Submission", "Fault", "Row", "Audit"]


@dataclass
class Submission:
    """One logical request: an idempotency key, its input, and every id the SDK answered."""

    key: str
    token: str
    sleep_s: float
    pad: int
    rids: list[str] = field(default_factory=list)
    created: list[bool] = field(default_factory=list)
    retries: int = 0  # submissions refused (Redis down) and tried again with the same key
    error: str | None = None  # why it was never accepted

    @property
    def input(self) -> dict[str, Any]:
        return {"token": self.token, "sleep_s": self.sleep_s, "pad": self.pad}


@dataclass
class Fault:
    kind: str
    at: float  # time.time() when it was injected (Redis TIME is the same clock here)
    detail: str = ""
    worker: str | None = None  # the victim consumer's id
    running: list[str] = field(default_factory=list)  # its requests at injection
    took_s: float | None = None  # freeze / pause / Redis downtime
    resubmitted: Counter[str] = field(default_factory=Counter)  # after a Redis restart

    @property
    def injected(self) -> bool:
        return not self.detail.startswith("not injected")


@dataclass
class Row:
    metric: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: information, no target


@dataclass
class Audit:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # evidence: request ids, keys, objects
    notes: list[str] = field(default_factory=list)  # how each redelivery went
    numbers: dict[str, Any] = field(default_factory=dict)

    def add(self, metric: str, value: object, target: str = "", ok: bool | None = None) -> None:
        self.rows.append(Row(metric, str(value), target, ok))
        self.numbers[metric] = value

    @property
    def missed(self) -> list[str]:
        return [r.metric for r in self.rows if r.ok is False]

    def verdicts(self, prefix: str) -> list[Row]:
        """The rows with a target whose measure starts with ``prefix``."""
        return [r for r in self.rows if r.metric.startswith(prefix) and r.ok is not None]
