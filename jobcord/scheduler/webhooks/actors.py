"""Completions as dramatiq messages: a request's ``on_complete`` actor, on the team's broker.

The deliverer of webhooks sends these too, on the same schedule, leases and status
(``webhook_status``; ``DELIVERED`` once the broker has taken the message). The broker is the
operator's (``JOBCORD_DRAMATIQ_BROKER_URL``: ``redis://`` or ``amqp://``), never one a caller
names, and ``JOBCORD_DRAMATIQ_ACTORS`` may list the actors callers may name.

The message is ``actor(*args, request, **kwargs)`` with ``request`` the request as ``GET
/v1/requests/{id}`` returns it (fresh result URLs), like the next step of a dramatiq pipeline.
Its id is the same for every send of one finished attempt, and its option
``jobcord_completion`` names the request and attempt: the bridge's middleware on the team's
workers (``jobcord.producers.dramatiq``) runs the actor's logic once per attempt however often the
message arrives. On RabbitMQ it is published with confirms (an unconfirmed publish is a
failed attempt).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jobcord.storage.connection import redacted
from jobcord.storage.errors import ConfigurationError
from jobcord.storage.records import RequestRecord

from .attempt import Attempt

__all__ = ["COMPLETION_OPTION", "ActorSender", "completion_message_id"]

#: The message option that marks a jobcord completion: {"request_id", "attempt"}.
COMPLETION_OPTION = "jobcord_completion"

_IDS = uuid.UUID("6f1c1b8e-32a4-4f59-9a37-6a0c1d3e5b21")  # uuid5 namespace of message ids


def completion_message_id(request_id: str, attempt: int) -> str:
    """One id for every send of one finished attempt's completion."""
    return str(uuid.uuid5(_IDS, f"{request_id}:{attempt}"))


def open_broker(url: str, deadline_s: float) -> Any:
    """A dramatiq broker for sending only (no middleware), every call bounded by
    ``deadline_s``."""
    scheme = urlsplit(url).scheme.lower()
    try:
        if scheme in ("redis", "rediss", "unix"):
            from dramatiq.brokers.redis import RedisBroker  # noqa: PLC0415 (optional extra)

            return RedisBroker(
                url=url,
                middleware=[],
                socket_timeout=deadline_s,
                socket_connect_timeout=deadline_s,
            )
        if scheme in ("amqp", "amqps"):
            from dramatiq.brokers.rabbitmq import RabbitmqBroker  # noqa: PLC0415

            return RabbitmqBroker(
                url=_bounded_amqp(url, deadline_s), middleware=[], confirm_delivery=True
            )
    except ImportError as exc:
        raise ConfigurationError(
            f"JOBCORD_DRAMATIQ_BROKER_URL needs dramatiq ({exc.name} is not installed): "
            "pip install 'jobcord[dramatiq]'"
        ) from None
    raise ConfigurationError(
        f"JOBCORD_DRAMATIQ_BROKER_URL must be redis://, rediss://, unix:// or amqp(s)://, "
        f"got {scheme or 'no scheme'}://"
    )


def _bounded_amqp(url: str, deadline_s: float) -> str:
    """pika's own timeouts, unless the URL sets them: no publish waits past the deadline."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name in ("socket_timeout", "stack_timeout", "blocked_connection_timeout"):
        query.setdefault(name, f"{deadline_s:g}")
    query.setdefault("connection_attempts", "1")
    return urlunsplit(parts._replace(query=urlencode(query)))


class ActorSender:
    """Sends completion messages to the operator's broker (opened on first use)."""

    def __init__(self, broker_url: str | None, allowed_actors: str, deadline_s: float) -> None:
        self.broker_url = broker_url
        self.allowed = {a.strip() for a in allowed_actors.split(",") if a.strip()}
        self.deadline_s = deadline_s
        self._broker: Any = None
        self._lock = threading.Lock()

    @property
    def receiver(self) -> str:
        """Where messages go, as a name for logs and per-receiver counts (no credentials)."""
        return redacted(self.broker_url) if self.broker_url else "dramatiq"

    def refusal(self, target: dict[str, Any]) -> str | None:
        """Why a target can never be delivered (not retried), or None."""
        if self.allowed and target.get("actor") not in self.allowed:
            return f"on_complete actor {target.get('actor')!r} is not in JOBCORD_DRAMATIQ_ACTORS"
        return None

    def _opened(self) -> Any:
        with self._lock:
            if self._broker is None:
                if not self.broker_url:
                    raise ConfigurationError(
                        "no dramatiq broker to send on_complete messages to: set "
                        "JOBCORD_DRAMATIQ_BROKER_URL for jobcord scheduler"
                    )
                self._broker = open_broker(self.broker_url, self.deadline_s)
            return self._broker

    def send(self, record: RequestRecord) -> Attempt:
        """Enqueue the completion once; never raises for what the broker does."""
        started = time.monotonic()
        try:
            self._opened().enqueue(completion_message(record))
        except ConfigurationError as exc:
            return Attempt(None, time.monotonic() - started, str(exc))
        except Exception as exc:  # noqa: BLE001 - any broker failure is a failed attempt
            detail = f"{type(exc).__name__}: {exc}"[:300]
            return Attempt(None, time.monotonic() - started, f"broker refused: {detail}")
        return Attempt(None, time.monotonic() - started, None)

    def close(self) -> None:
        with self._lock:
            if self._broker is not None:
                self._broker.close()
                self._broker = None


def completion_message(record: RequestRecord) -> Any:
    """The dramatiq message that tells ``record``'s ``on_complete`` actor it finished."""
    from dramatiq import Message  # noqa: PLC0415 (optional extra)

    target = record.on_complete or {}
    options = {k: v for k, v in (target.get("options") or {}).items() if k != COMPLETION_OPTION}
    options[COMPLETION_OPTION] = {"request_id": record.request_id, "attempt": record.attempt}
    return Message(
        queue_name=target["queue"],
        actor_name=target["actor"],
        args=(*target.get("args", ()), record.public()),
        kwargs=dict(target.get("kwargs") or {}),
        options=options,
        message_id=completion_message_id(record.request_id, record.attempt),
        message_timestamp=int((record.finished_at or time.time()) * 1000),
    )
