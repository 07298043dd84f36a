"""Hot-path Redis calls on a connection a thread keeps, past redis-py's per-command layers.

redis-py's ``Redis.execute_command`` wraps every call in a pool checkout, a retry policy and
event hooks: on this project's 2-core machine a PING costs ~105 µs of client CPU that way,
~45 µs sent on one of its connections directly (``send_command`` / ``read_response``), and
~20 µs with a bare socket (``/tmp``-style measurements in ``bench/bench_lifecycle.py``'s
notes). The few calls every job makes (submit, fetch, finish, the wait for a result) go
through :class:`DirectCalls`: still redis-py's connection (its handshake, AUTH, TLS, health
checks and hiredis parser), without the wrapper. Everything else uses the client as usual.

Each thread holds one connection of the client's pool, given back when the thread ends.
A command that could not be sent is tried once more on a new connection; a failure after it
was sent closes the connection and is raised as redis-py raises it (the command may have
run), so callers' outage handling is unchanged.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

import redis
from hiredis import pack_command

__all__ = ["DirectCalls", "as_dict", "stream_entries"]


def as_dict(reply: Any) -> dict[Any, Any]:
    """A hash as HGETALL returns it: a map (RESP3) or a flat list (RESP2)."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def stream_entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """The entries of a one-stream XREAD reply, as (id, fields): RESP3 gives a map of
    streams, RESP2 a list of (stream, entries) pairs."""
    if not reply:
        return []
    streams = list(reply.values()) if isinstance(reply, dict) else [s[1] for s in reply]
    return [(entry_id, as_dict(fields)) for entries in streams for entry_id, fields in entries]


class _Held:
    """A thread's connection; returned to the pool when the thread's locals go away."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.conn = pool.get_connection()
        weakref.finalize(self, _give_back, pool, self.conn)


def _give_back(pool: redis.ConnectionPool, conn: Any) -> None:
    with contextlib.suppress(Exception):  # a pool already closed: nothing to give back to
        pool.release(conn)


class DirectCalls:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._pool = client.connection_pool
        self._local = threading.local()

    def __call__(self, *args: Any) -> Any:
        """Send one command and read its reply (raw: no response callbacks)."""
        return self.pipeline(args)[0]

    def pipeline(self, *commands: tuple[Any, ...], raise_on_error: bool = True) -> list[Any]:
        """Send several commands in one write, then read their replies in order. A reply that
        is an error is raised once every reply is read (the connection stays in step), or,
        with ``raise_on_error`` False, left in its place in the list."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is None:
            held = _Held(self._pool)
            self._local.held = held
        conn = held.conn
        try:
            packed = [pack_command(c) for c in commands]  # hiredis's C packer
        except TypeError as exc:
            raise redis.DataError(f"{commands[0][0]}: {exc}") from None
        try:
            # connect() first: a Sentinel-managed connection asks the sentinels where the
            # primary is there; send_packed_command alone would reconnect to the old address.
            conn.connect()
            conn.send_packed_command(packed)
        except (redis.ConnectionError, redis.TimeoutError):
            # Not sent (a connection that died while idle, a restarted server): once more on
            # a new one. A command that was sent is never sent twice.
            conn.disconnect()
            conn.connect()
            conn.send_packed_command(packed)
        replies: list[Any] = []
        error: redis.ResponseError | None = None
        try:
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    error = error or exc
                    replies.append(exc)
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()  # the next call connects again
            raise
        if error is not None and raise_on_error:
            raise error
        return replies
