"""One webhook attempt: one wall-clock deadline over connect, send and read, and at most
:data:`MAX_REPLY_BYTES` of the receiver's body read (never kept).

httpx's timeouts are per phase and per read, so a receiver that trickles a byte every few
seconds would hold an attempt for minutes. Here a watchdog shuts the attempt's socket down
when the deadline passes, which ends whatever phase is blocked on it. Connections are never
reused (no keep-alive), so every attempt owns its socket.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["MAX_REPLY_BYTES", "Attempt", "post_once", "webhook_http_client"]

#: Bytes of the receiver's reply body read (and dropped) before the connection is closed.
MAX_REPLY_BYTES = 4096


@dataclass(frozen=True)
class Attempt:
    status_code: int | None  # None: no answer (refused, reset, past the deadline)
    elapsed_s: float
    error: str | None  # None: a 2xx answer

    @property
    def ok(self) -> bool:
        return self.error is None


def webhook_http_client(deadline_s: float) -> httpx.Client:
    """No redirects followed, no connection kept, no phase longer than the deadline."""
    return httpx.Client(
        timeout=httpx.Timeout(deadline_s),
        follow_redirects=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


class _Watchdog:
    """Shuts the attempt's socket down once ``deadline_s`` has passed."""

    def __init__(self, deadline_s: float) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = False
        self._timer = threading.Timer(deadline_s, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's ``trace`` extension: note the socket once connected (and after TLS)."""
        if event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            sock = info["return_value"].get_extra_info("socket")
            with self._lock:
                self._sock = sock
                if self.expired:
                    self._shutdown()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                # The plain socket method even on a TLS socket: it only ends the fd's I/O,
                # which makes the blocked recv or send in the attempt's thread return.
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


def post_once(
    client: httpx.Client,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    extensions: dict[str, Any],
    deadline_s: float,
) -> Attempt:
    """POST once; never raises for what the receiver or the network does."""
    started = time.monotonic()
    with _Watchdog(deadline_s) as watchdog:
        try:
            with client.stream(
                "POST",
                url,
                content=content,
                headers=headers,
                extensions={**extensions, "trace": watchdog.trace},
            ) as reply:
                code = reply.status_code
                with contextlib.suppress(httpx.HTTPError, OSError):  # the status is in
                    _drain(reply)
        except (httpx.HTTPError, OSError) as exc:
            elapsed = time.monotonic() - started
            if watchdog.expired or isinstance(exc, httpx.TimeoutException):
                return Attempt(None, elapsed, f"no answer within {deadline_s:g} s")
            return Attempt(None, elapsed, f"connection failed: {type(exc).__name__}")
    elapsed = time.monotonic() - started
    if 200 <= code < 300:
        return Attempt(code, elapsed, None)
    return Attempt(code, elapsed, f"HTTP {code} after {elapsed * 1000:.0f} ms")


def _drain(reply: httpx.Response) -> None:
    """Read (and drop) at most MAX_REPLY_BYTES of the body, so a short reply ends cleanly."""
    seen = 0
    for chunk in reply.iter_raw():
        seen += len(chunk)
        if seen >= MAX_REPLY_BYTES:
            return
