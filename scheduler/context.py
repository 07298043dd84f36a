"""JobContext: what a running job may know and do besides its input.

A job declares a parameter annotated ``JobContext`` to receive it; every other parameter is
input. It lives here (not in producers or consumers) because both sides need the type.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["JobContext"]


@dataclass
class JobContext:
    request_id: str
    attempt: int
    app: str
    job: str
    output_dir: Path
    #: What the app's ``on_startup`` hooks returned (by hook name): a loaded model, say.
    state: dict[str, Any] = field(default_factory=dict)
    #: Devices this process is pinned to (``CUDA_VISIBLE_DEVICES`` value; empty for CPU).
    devices: str = ""
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    _report: Callable[[float, str | None], None] | None = field(default=None, repr=False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress (0..1); shown on the request's status."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be within 0..1, got {fraction}")
        if self._report is not None:
            self._report(fraction, message)

    @property
    def cancelled(self) -> bool:
        """True once the request is being stopped (cancel or timeout); the process is killed
        after a grace period, so long loops may check this to stop cleanly."""
        return self._cancelled.is_set()
