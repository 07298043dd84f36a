"""How many replicas (warm job processes) an app should have, and how a host's devices are
shared among its apps. Pure decisions: the consumer's scaler (``jobcord.consumers.scaler``) feeds
them what Redis says and acts on what they return.

The model is Baseten's, in its names where they fit: an app keeps between ``min_replicas``
(0: scale to zero) and ``max_replicas``; it wants
``ceil(in_flight / (concurrency_target * target_utilization))`` replicas, where in_flight is
its requests waiting or running on every host. It scales up at once; it scales down only to
the largest want seen over the last ``window_s``, and only once that has held for
``scale_down_delay_s`` (a lull between bursts must not cost a cold start).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Autoscaling", "ScaleDecider", "Decision", "share_devices"]


class Autoscaling(BaseModel):
    """``App("imaging", autoscaling=Autoscaling(min_replicas=0, max_replicas=4))``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_replicas: int = Field(default=0, ge=0, le=1024)
    max_replicas: int = Field(default=64, ge=1, le=1024)
    concurrency_target: float = Field(
        default=1.0, gt=0, le=10_000, description="Requests one replica should hold at once."
    )
    target_utilization: float = Field(default=0.7, gt=0, le=1.0)
    window_s: float = Field(default=60.0, gt=0, le=3600)
    scale_down_delay_s: float = Field(default=900.0, ge=0, le=86_400)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        return self

    def wanted(self, in_flight: int) -> int:
        """Replicas for ``in_flight`` requests, within min and max."""
        per_replica = self.concurrency_target * self.target_utilization
        return max(self.min_replicas, min(self.max_replicas, math.ceil(in_flight / per_replica)))


@dataclass(frozen=True)
class Decision:
    desired: int  # replicas the app should have on all hosts together
    reason: str


class ScaleDecider:
    """One app's desired replica count over time (see the module's docstring)."""

    def __init__(self, policy: Autoscaling) -> None:
        self.policy = policy
        self._seen: deque[tuple[float, int]] = deque()  # (when, wanted) within the window
        self._desired: int | None = None
        self._lower_since: float | None = None  # since when the window wants fewer

    def decide(self, now: float, in_flight: int) -> Decision:
        p = self.policy
        wanted = p.wanted(in_flight)
        self._seen.append((now, wanted))
        while self._seen and self._seen[0][0] < now - p.window_s:
            self._seen.popleft()
        peak = max(w for _, w in self._seen)
        current = self._desired
        if current is None or wanted > current:
            self._desired, self._lower_since = wanted, None
            why = "start" if current is None else "scale up"
            return Decision(wanted, f"{why}: {in_flight} in flight wants {wanted}")
        if peak >= current:
            self._lower_since = None
            return Decision(current, f"steady: {in_flight} in flight, window peak wants {peak}")
        if self._lower_since is None:
            self._lower_since = now
        held = now - self._lower_since
        if held >= p.scale_down_delay_s:
            self._desired, self._lower_since = peak, None
            return Decision(peak, f"scale down: {peak} enough for {held:.0f} s")
        return Decision(
            current,
            f"holding {current}: {peak} would do, for {held:.0f} of {p.scale_down_delay_s:.0f} s",
        )


def share_devices(capacity: int, needs: dict[str, tuple[int, int, int]]) -> dict[str, int]:
    """Replicas each app gets on a host of ``capacity`` device units: ``needs`` maps an app
    to (replicas it needs here, its floor here, units one replica takes). Floors first,
    then one replica at a time to the app furthest from its need (the smallest share of it
    met), while units last. Deterministic: ties go by name."""
    given = {app: 0 for app in needs}
    left = capacity
    for app in sorted(needs):
        need, floor, units = needs[app]
        n = min(floor, need, left // units) if units else min(floor, need)
        given[app], left = n, left - n * units
    while True:
        hungry = [
            app for app, (need, _, units) in needs.items() if given[app] < need and units <= left
        ]
        if not hungry:
            return given
        app = min(hungry, key=lambda a: (given[a] / needs[a][0], a))
        given[app] += 1
        left -= needs[app][2]
