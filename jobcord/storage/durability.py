"""When a submit counts as acknowledged: the primary's reply, or copies on replicas / disk.

Redis replicates asynchronously: a primary that dies before its replica has a write takes the
write with it, and the replica Sentinel promotes never had it. With
``JOBCORD_REDIS_MIN_REPLICAS_ACK=N`` a submit sends ``WAIT N timeout`` in the same write as its
script, on the same connection, so the reply counts the replicas that hold this very submit
(record, queue entry and idempotency key are one script's effects: all or none of them); with
``JOBCORD_REDIS_ACK_AOF`` it sends ``WAITAOF 1 N timeout`` (Redis 7.2+): the primary's own
append-only file too. Short of that the caller gets :class:`NotAcknowledged` (retryable) and
no request id. WAIT only reports: the write stays on the primary, and if that primary lives
on, the request runs; a retry with the same idempotency key returns the same request.

Consumers wait the same way after each fetch, before a job starts: replication is one ordered
stream, so a fetch that N replicas hold means the submit before it is held too. A request is
thus never run while a failover could still erase it (and a replayed key then make a second
one); claims that are not confirmed in time are handed back to their queue, unstarted.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError, NotAcknowledged
from .settings import Settings

__all__ = ["wait_command", "check", "shortfall"]


def wait_command(settings: Settings) -> tuple[Any, ...] | None:
    """The command that follows a submit (None: the primary's reply is enough)."""
    n, timeout = settings.redis_min_replicas_ack, settings.redis_ack_timeout_ms
    if settings.redis_ack_aof:
        return ("WAITAOF", 1, n, timeout)
    if n > 0:
        return ("WAIT", n, timeout)
    return None


def shortfall(settings: Settings, reply: Any) -> str | None:
    """None if ``reply`` (to :func:`wait_command`'s command) confirms the writes before it,
    else what is missing."""
    n = settings.redis_min_replicas_ack
    if isinstance(reply, Exception):
        if "unknown command" in str(reply).lower():
            raise ConfigurationError(
                "JOBCORD_REDIS_ACK_AOF needs WAITAOF (Redis 7.2+); this server has no such "
                "command: unset it or upgrade Redis"
            )
        raise reply
    if settings.redis_ack_aof:
        local, replicas = int(reply[0]), int(reply[1])
        if local >= 1 and replicas >= n:
            return None
        return f"the primary's AOF {'has' if local else 'lacks'} it, {replicas} of {n} replicas"
    replicas = int(reply)
    if replicas >= n:
        return None
    return f"{replicas} of {n} replicas hold it"


def check(settings: Settings, reply: Any) -> None:
    """Raise unless ``reply`` confirms the submit."""
    held = shortfall(settings, reply)
    if held is None:
        return
    raise NotAcknowledged(
        f"the submit was not acknowledged within {settings.redis_ack_timeout_ms} ms ({held}): a "
        "failover could erase it, so no request id is returned. Retry with the same "
        "idempotency key (the same request is returned if it survived, never a second one)."
    )
