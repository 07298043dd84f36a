"""Connection guards for the API's HTTP server: a request-head timeout and a cap on open
connections, which uvicorn does not have.

uvicorn times out only the silence *after* a response (``timeout_keep_alive``): a connection
that opens and never sends a byte, or sends its request head a byte at a time (slowloris),
is held for ever, each holding a file descriptor, until the process can accept no more.
``guarded_protocol`` returns uvicorn's httptools protocol with:

- a head timeout: the request line and headers must have arrived ``header_timeout_s`` after
  the connection opened (its first request) or after the first byte of a later request (the
  silence between requests is the keep-alive timeout's); past it the connection is closed,
  with a 408 where part of a head had arrived. A connection still answering an earlier
  request is closed after that answer instead.
- a cap on open connections: at ``max_connections`` a new connection makes room by closing
  the one idle longest (waiting for a request head, nothing being answered). Where every
  connection is being answered, the new one is closed at once, unanswered (and logged, at
  most every 10 s). uvicorn's ``limit_concurrency`` is no such cap: it counts idle
  connections too, and answers 503 to every caller once idle sockets fill it.
"""

from __future__ import annotations

import asyncio
import resource
import sys
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["guarded_protocol", "raise_open_files_limit"]

log = structlog.get_logger("jobcord.api")

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_REFUSAL_LOG_EVERY_S = 10.0


class _GuardedProtocol(HttpToolsProtocol):
    keep_alive_s: float
    header_timeout_s: float
    max_connections: int
    refusal_logged_at = float("-inf")  # per class, i.e. per server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.keep_alive_s  # type: ignore[assignment]  # int-typed there
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True  # between requests: the next bytes are a request head
        self._head_started = False
        self._idle_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        if len(self.connections) > self.max_connections and not self._make_room():
            self._refuse()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_started = True
            if self._head_timer is None:
                self._arm_head_timer()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._awaiting_head = self._head_started = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = self.loop.time()

    # -- the head timeout ------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # close once the earlier request is answered
            return
        if self._head_started:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()

    # -- the connection cap ----------------------------------------------------------------
    def _idle(self) -> bool:
        answering = self.cycle is not None and not self.cycle.response_complete
        return self._awaiting_head and not answering and not self.transport.is_closing()

    def _make_room(self) -> bool:
        idle = [
            c
            for c in self.connections
            if c is not self and isinstance(c, _GuardedProtocol) and c._idle()
        ]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._idle_since)
        # Out of the count now, not when the loop reports it lost: a burst evicts one each.
        self.connections.discard(oldest)
        oldest.transport.close()
        return True

    def _refuse(self) -> None:
        self.connections.discard(self)
        self.transport.close()
        now = self.loop.time()
        cls = type(self)
        if now - cls.refusal_logged_at >= _REFUSAL_LOG_EVERY_S:
            cls.refusal_logged_at = now
            log.warning(
                "api_connection_refused",
                max_connections=self.max_connections,
                reason="every open connection is being answered",
            )


def guarded_protocol(
    *, keep_alive_s: float, header_timeout_s: float, max_connections: int
) -> type[asyncio.Protocol]:
    """uvicorn's ``http=`` protocol class with these limits (see the module's docstring)."""
    limits = {
        "keep_alive_s": keep_alive_s,
        "header_timeout_s": header_timeout_s,
        "max_connections": max_connections,
    }
    return type("GuardedHttpToolsProtocol", (_GuardedProtocol,), limits)


def raise_open_files_limit(needed: int) -> int:
    """Raise this process's soft open-files limit to ``needed`` where the hard limit allows;
    returns the soft limit then in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # macOS caps it below a hard "unlimited"
            pass
    return soft
