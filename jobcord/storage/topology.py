"""Which Redis a URL names: one server, or the primary that Redis Sentinel points at.

``redis+sentinel://[user:password@]host1:26379,host2:26379/SERVICE[/DB][?options]`` (and
``rediss+sentinel://`` for TLS to the servers and the sentinels) names the primary of
``SERVICE`` as the sentinels see it. Every jobcord process (worker, job processes, API,
scheduler, CLI, SDK) asks them on each new connection, so after a failover a process is on
the new primary within seconds, with no restart: a connection to the old one fails (or is
told READONLY once it has been demoted), is dropped, and the next one asks the sentinels
again. Each process logs one line when the primary it uses changes.

Options: ``sentinel_password`` / ``sentinel_username`` (when the sentinels ask for their own
AUTH; the password in the netloc is the Redis servers'), ``socket_timeout`` for the sentinels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
import structlog
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import Sentinel, SentinelConnectionPool

from .errors import ConfigurationError

__all__ = ["SentinelTarget", "parse_sentinel_url", "sentinel_client", "async_sentinel_client"]

SCHEMES = ("redis+sentinel", "rediss+sentinel")
log = structlog.get_logger("jobcord.redis")
_seen: dict[str, tuple[str, int]] = {}
_seen_lock = threading.Lock()


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict)


def parse_sentinel_url(url: str) -> SentinelTarget | None:
    """The sentinel target a URL names; None for a URL of one server. Refuses a malformed
    one with a message naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        return None
    netloc = parts.netloc.rsplit("@", 1)
    hosts_text = netloc[-1]
    username = password = None
    if len(netloc) == 2:
        user, _, secret = netloc[0].partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    sentinels = []
    for item in hosts_text.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item, "", "26379")
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ConfigurationError(f"redis+sentinel URL: bad sentinel address {item!r}")
        sentinels.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigurationError("redis+sentinel URL: name the service, e.g. .../mymaster/0")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigurationError(f"redis+sentinel URL: expected /SERVICE[/DB], got {parts.path!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        timeout = float(query.get("socket_timeout", 1.0))
    except ValueError:
        raise ConfigurationError("redis+sentinel URL: socket_timeout must be seconds") from None
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": timeout}
    if "sentinel_password" in query:
        sentinel_kwargs["password"] = query["sentinel_password"]
    if "sentinel_username" in query:
        sentinel_kwargs["username"] = query["sentinel_username"]
    ssl = parts.scheme == "rediss+sentinel"
    if ssl:
        sentinel_kwargs["ssl"] = True
    return SentinelTarget(
        tuple(sentinels),
        unquote(path[0]),
        int(path[1]) if len(path) == 2 else 0,
        username,
        password,
        ssl,
        sentinel_kwargs,
    )


def _announce(service: str, address: Any) -> None:
    """One line per process when the primary it is sent to changes (a failover)."""
    if address is None:
        return
    address = (str(address[0]), int(address[1]))
    with _seen_lock:
        before = _seen.get(service)
        if before == address:
            return
        _seen[service] = address
    if before is None:
        log.info(
            "redis primary found by sentinel", service=service, primary=f"{address[0]}:{address[1]}"
        )
    else:
        log.warning(
            "redis primary changed (failover): following it",
            service=service,
            primary=f"{address[0]}:{address[1]}",
            was=f"{before[0]}:{before[1]}",
        )


class _FollowingPool(SentinelConnectionPool):
    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)
        # Connections ask the pool's proxy (not the pool) where the primary is.
        ask = self.proxy.get_master_address

        def following() -> Any:
            address = ask()
            _announce(service_name, address)
            return address

        self.proxy.get_master_address = following  # type: ignore[method-assign]


class _AsyncFollowingPool(AsyncSentinelPool):
    async def get_master_address(self) -> Any:
        address = await super().get_master_address()
        _announce(self.service_name, address)
        return address


def _server_kwargs(target: SentinelTarget, kwargs: dict[str, Any]) -> dict[str, Any]:
    out = {"db": target.db, **kwargs}
    if target.password is not None:
        out["password"] = target.password
    if target.username is not None:
        out["username"] = target.username
    if target.ssl:
        out["ssl"] = True
    return out


def sentinel_client(target: SentinelTarget, **kwargs: Any) -> redis.Redis:
    """A client of the service's primary (``kwargs`` as for ``redis.Redis``)."""
    manager = Sentinel(list(target.sentinels), sentinel_kwargs=dict(target.sentinel_kwargs))
    return manager.master_for(
        target.service, connection_pool_class=_FollowingPool, **_server_kwargs(target, kwargs)
    )


def async_sentinel_client(target: SentinelTarget, **kwargs: Any) -> aioredis.Redis:
    manager = AsyncSentinel(list(target.sentinels), sentinel_kwargs=dict(target.sentinel_kwargs))
    return manager.master_for(
        target.service, connection_pool_class=_AsyncFollowingPool, **_server_kwargs(target, kwargs)
    )
