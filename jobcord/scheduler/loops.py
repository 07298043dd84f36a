"""A supervised background pass repeated every interval until stopped.

Whatever a pass raises is logged, counted and backed off from (``jobcord.scheduler.supervision``);
the loop itself never dies. ``wake()`` runs the next pass now.
"""

from __future__ import annotations

import threading
from typing import Any

from .supervision import BACKOFF_MAX_S, LOOPS, LoopState, run_supervised

__all__ = ["EveryInterval"]


class EveryInterval(threading.Thread):
    def __init__(
        self, name: str, interval_s: float, *, backoff_max_s: float = BACKOFF_MAX_S
    ) -> None:
        super().__init__(name=f"jobcord-{name}", daemon=True)
        self.interval_s = interval_s
        self.state = LoopState(name, interval_s, backoff_max_s)
        self._stopped = threading.Event()
        self._wake = threading.Event()

    def run_once(self) -> Any:
        raise NotImplementedError

    def start(self) -> None:
        LOOPS.add(self.state)  # reported from now on, until the loop ends
        super().start()

    def run(self) -> None:
        run_supervised(self.state, self.run_once, self._stopped, wake=self._wake)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
