"""The dramatiq message whose actor is running in this thread, as jobcord's calls see it.

Set by the bridge's middleware (``jobcord.producers.dramatiq.JobcordMiddleware``) around each actor
run; read by ``async_run_remote`` to give each call a key derived from the message id and
the call's position, so a redelivered or retried message gets the requests it made back
instead of starting new ones. No dramatiq import here: the SDK works without it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from jobcord.storage.errors import ConfigurationError

__all__ = ["BridgeMissing", "MessageCalls", "MessageKey", "current_message", "message_call_key"]


class BridgeMissing(ConfigurationError):
    """A dramatiq actor calls a jobcord job, but its broker lacks jobcord's middleware."""


class MessageKey(str):
    """A key derived from a dramatiq message: its request, found again on a redelivery, is
    run again when it ended unsuccessfully (the message is being retried)."""

    __slots__ = ()


@dataclass
class MessageCalls:
    message_id: str
    _calls: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def next_key(self) -> MessageKey:
        return MessageKey(f"dramatiq:{self.message_id}:{next(self._calls)}")


_current: ContextVar[MessageCalls | None] = ContextVar("jobcord_dramatiq_message", default=None)


def current_message() -> ContextVar[MessageCalls | None]:
    return _current


def message_call_key() -> MessageKey | None:
    """The key for this actor's next call, None outside an actor. Inside one whose broker
    has no bridge middleware it refuses: without it a redelivered message would start a
    second job."""
    calls = _current.get()
    if calls is not None:
        return calls.next_key()
    if type(threading.current_thread()).__module__ == "dramatiq.worker":
        raise BridgeMissing(
            "a dramatiq actor calls a jobcord job, but its broker has no jobcord middleware, "
            "so a redelivered message would start a second job: add "
            "broker.add_middleware(jobcord.dramatiq.JobcordMiddleware()), or pass "
            "idempotency_key= yourself"
        )
    return None
