"""Redis Cluster (and Valkey cluster): jobcord's keys in one hash slot, on the primary that owns it.

``redis+cluster://[user:password@]host1:7000,host2:7001[?socket_timeout=1]`` (and
``rediss+cluster://`` for TLS) names a cluster by some of its nodes. In that layout every key
jobcord writes carries the hash tag ``{jobcord}`` (storage.keys), so all of them live in one
slot. Each Lua script stays single-slot and atomic as on one server, and pipelines, MULTI,
blocking reads and pub/sub work unchanged on that slot's primary; every process (worker, job
processes, API, scheduler, CLI, SDK) connects there. A new connection asks the known nodes
(CLUSTER SLOTS) which primary owns the slot. A MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply, a
refused connection or a primary gone silent drops the connection, and the next one asks again:
after a failover (a replica promoted by the cluster) every process follows within seconds,
with one log line.

What this gives is a cluster's failover and a place for jobcord beside other data; jobcord's
own load stays on one shard (its scripts read and write the queues, the leases and the
request records together, which one slot keeps atomic). Moving jobcord's slot to another shard
while jobcord runs is not supported: stop the workers first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import structlog
from redis.asyncio.connection import Connection as AsyncConnection
from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ResponseError,
    TryAgainError,
)

from .errors import ConfigurationError
from .keys import HASH_TAG

__all__ = [
    "ClusterTarget",
    "SlotLocator",
    "parse_cluster_url",
    "cluster_client",
    "async_cluster_client",
    "JOBCORD_SLOT",
]

SCHEMES = ("redis+cluster", "rediss+cluster")
#: The slot that holds every jobcord key in the cluster layout.
JOBCORD_SLOT = key_slot(HASH_TAG.encode())
#: Node replies that mean "not here (any more)": reconnect to the slot's current owner.
_ELSEWHERE = (AskError, TryAgainError, ClusterDownError)  # MovedError is an AskError
_UNBLOCKED = "UNBLOCKED"  # a blocked read on a primary that was demoted
#: A node that cannot say where the slot is: ask the next one.
_UNANSWERED = (
    redis.ConnectionError,
    redis.TimeoutError,
    ResponseError,
    OSError,
)  # a blocked read on a primary that was demoted
log = structlog.get_logger("jobcord.redis")


@dataclass(frozen=True)
class ClusterTarget:
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    discovery_timeout_s: float = 1.0


def parse_cluster_url(url: str) -> ClusterTarget | None:
    """The cluster a URL names; None for any other URL. Refuses a malformed one with a
    message naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        return None
    netloc = parts.netloc.rsplit("@", 1)
    username = password = None
    if len(netloc) == 2:
        user, _, secret = netloc[0].partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    nodes = []
    for item in netloc[-1].split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item, "", "6379")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"redis+cluster URL: bad node address {item!r}")
        nodes.append((host, int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ConfigurationError(
            f"redis+cluster URL: a cluster has database 0 only, got {parts.path!r}"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        timeout = float(query.get("socket_timeout", 1.0))
    except ValueError:
        raise ConfigurationError("redis+cluster URL: socket_timeout must be seconds") from None
    if not 0 < timeout <= 60:
        raise ConfigurationError("redis+cluster URL: socket_timeout must be in (0, 60] seconds")
    return ClusterTarget(
        tuple(nodes), username, password, parts.scheme == "rediss+cluster", timeout
    )


def _owner(slots: Any, asked: tuple[str, int]) -> tuple[tuple[str, int] | None, list]:
    """(the primary serving JOBCORD_SLOT, every node named) from a CLUSTER SLOTS reply."""
    owner, seen = None, []
    for entry in slots or []:
        start, end, *nodes = entry
        for node in nodes:
            host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
            # An empty or '?' endpoint means "the address you reached me at".
            address = (asked[0] if host in ("", "?") else host, int(node[1]))
            seen.append(address)
            if owner is None and node is nodes[0] and int(start) <= JOBCORD_SLOT <= int(end):
                owner = address
    return owner, seen


class SlotLocator:
    """Where jobcord's slot is served: asked of the cluster's nodes, remembered until a
    connection there fails or is sent elsewhere. Shared by every connection of a process."""

    def __init__(self, target: ClusterTarget) -> None:
        self.target = target
        self._known: list[tuple[str, int]] = list(target.nodes)
        self._owner: tuple[str, int] | None = None
        self._announced: tuple[str, int] | None = None
        self._lock = threading.Lock()

    def _node_kwargs(self) -> dict[str, Any]:
        timeout = self.target.discovery_timeout_s
        return {
            "username": self.target.username,
            "password": self.target.password,
            "ssl": self.target.ssl,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
        }

    def _candidates(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(dict.fromkeys([*self.target.nodes, *self._known]))

    def _found(self, owner: tuple[str, int], seen: list[tuple[str, int]]) -> tuple[str, int]:
        with self._lock:
            self._owner = owner
            self._known = list(dict.fromkeys([*seen, *self._known]))[:64]
            before, self._announced = self._announced, owner
        if before is None:
            log.info("redis cluster: jobcord's slot found", slot=JOBCORD_SLOT, primary=_text(owner))
        elif before != owner:
            log.warning(
                "redis cluster: jobcord's slot moved (failover): following it",
                slot=JOBCORD_SLOT,
                primary=_text(owner),
                was=_text(before),
            )
        return owner

    def _cached(self) -> tuple[str, int] | None:
        with self._lock:
            return self._owner

    def _answered(self, address: tuple[str, int], reply: Any) -> tuple[str, int] | None:
        owner, seen = _owner(reply, address)
        return None if owner is None else self._found(owner, seen)

    def _nobody(self, tried: list[tuple[str, int]]) -> redis.ConnectionError:
        return redis.ConnectionError(
            f"no node of the redis cluster said who serves slot {JOBCORD_SLOT} "
            f"(tried {', '.join(map(_text, tried))})"
        )

    def primary(self) -> tuple[str, int]:
        """The slot's primary (asks the nodes when it is not known)."""
        owner = self._cached()
        candidates = [] if owner else self._candidates()
        for address in candidates:
            node = redis.Redis(host=address[0], port=address[1], **self._node_kwargs())
            try:
                reply = node.execute_command("CLUSTER SLOTS")
            except _UNANSWERED:
                continue
            finally:
                node.close()
            if owner := self._answered(address, reply):
                break
        if owner is None:
            raise self._nobody(candidates)
        return owner

    async def primary_async(self) -> tuple[str, int]:
        """The same, without blocking an event loop."""
        owner = self._cached()
        candidates = [] if owner else self._candidates()
        for address in candidates:
            node = aioredis.Redis(host=address[0], port=address[1], **self._node_kwargs())
            try:
                reply = await node.execute_command("CLUSTER SLOTS")
            except _UNANSWERED:
                continue
            finally:
                await node.aclose()
            if owner := self._answered(address, reply):
                break
        if owner is None:
            raise self._nobody(candidates)
        return owner

    def forget(self, address: tuple[str, int]) -> bool:
        """That node no longer serves the slot (or cannot be reached): ask again next time.
        True if it was the remembered owner (False: someone asked again already)."""
        with self._lock:
            if self._owner != address:
                return False
            self._owner = None
            return True


def _text(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _sent_elsewhere(exc: ResponseError) -> bool:
    return isinstance(exc, _ELSEWHERE) or str(exc).startswith(_UNBLOCKED)


class SlotOwnerConnection(redis.Connection):
    """A connection to whichever node serves jobcord's slot."""

    def __init__(self, **kwargs: Any) -> None:
        self.locator: SlotLocator = kwargs.pop("locator")
        super().__init__(**kwargs)

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self._sock:
            return
        for asked in (False, True):  # a remembered owner that fails: ask the nodes once
            self.host, self.port = self.locator.primary()
            try:
                return super().connect_check_health(
                    check_health=check_health, retry_socket_connect=retry_socket_connect
                )
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                if not self.locator.forget((self.host, self.port)) or asked:
                    raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            self.locator.forget((self.host, self.port))
            raise
        except ResponseError as exc:
            if not _sent_elsewhere(exc):
                raise
            self.locator.forget((self.host, self.port))
            self.disconnect()
            raise redis.ConnectionError(f"redis cluster: {exc}") from exc


class SlotOwnerSSLConnection(SlotOwnerConnection, redis.SSLConnection):
    pass


class AsyncSlotOwnerConnection(AsyncConnection):
    def __init__(self, **kwargs: Any) -> None:
        self.locator: SlotLocator = kwargs.pop("locator")
        super().__init__(**kwargs)

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self.is_connected:
            return
        for asked in (False, True):
            self.host, self.port = await self.locator.primary_async()
            try:
                return await super().connect_check_health(
                    check_health=check_health, retry_socket_connect=retry_socket_connect
                )
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                if not self.locator.forget((self.host, int(self.port))) or asked:
                    raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            self.locator.forget((self.host, int(self.port)))
            raise
        except ResponseError as exc:
            if not _sent_elsewhere(exc):
                raise
            self.locator.forget((self.host, int(self.port)))
            await self.disconnect()
            raise redis.ConnectionError(f"redis cluster: {exc}") from exc


class AsyncSlotOwnerSSLConnection(AsyncSlotOwnerConnection, AsyncSSLConnection):
    pass


_locators: dict[ClusterTarget, SlotLocator] = {}
_locators_lock = threading.Lock()


def locator_for(target: ClusterTarget) -> SlotLocator:
    """One locator per cluster per process: one discovery, one log line per failover."""
    with _locators_lock:
        return _locators.setdefault(target, SlotLocator(target))


def _pool_kwargs(target: ClusterTarget, kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    out.pop("connection_pool", None)
    if target.password is not None:
        out["password"] = target.password
    if target.username is not None:
        out["username"] = target.username
    out["locator"] = locator_for(target)
    return out


def cluster_client(target: ClusterTarget, **kwargs: Any) -> redis.Redis:
    """A client of the node serving jobcord's slot (``kwargs`` as for ``redis.Redis``)."""
    kwargs = _pool_kwargs(target, kwargs)
    pool = redis.ConnectionPool(
        connection_class=SlotOwnerSSLConnection if target.ssl else SlotOwnerConnection,
        **kwargs,
    )
    return redis.Redis(connection_pool=pool)


def async_cluster_client(
    target: ClusterTarget, *, pool_wait_s: float | None = None, **kwargs: Any
) -> aioredis.Redis:
    """The asyncio client of the same node; ``pool_wait_s``: a blocking pool that waits that
    long for a free connection."""
    kwargs = _pool_kwargs(target, kwargs)
    cls = AsyncSlotOwnerSSLConnection if target.ssl else AsyncSlotOwnerConnection
    pool: aioredis.ConnectionPool
    if pool_wait_s is not None:
        pool = aioredis.BlockingConnectionPool(connection_class=cls, timeout=pool_wait_s, **kwargs)
    else:
        pool = aioredis.ConnectionPool(connection_class=cls, **kwargs)
    return aioredis.Redis(connection_pool=pool)
