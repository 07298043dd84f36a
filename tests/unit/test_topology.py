"""Sentinel URLs: every form the README names, and clear refusals of malformed ones."""

from __future__ import annotations

import pytest

from jobcord.storage.errors import ConfigurationError
from jobcord.storage.topology import parse_sentinel_url


def test_plain_urls_are_not_sentinel_urls():
    assert parse_sentinel_url("redis://127.0.0.1:6379/0") is None
    assert parse_sentinel_url("unix:///tmp/redis.sock") is None


def test_hosts_service_and_db():
    t = parse_sentinel_url("redis+sentinel://h1:26379,h2:26380,h3/mymaster/3")
    assert t is not None
    assert t.sentinels == (("h1", 26379), ("h2", 26380), ("h3", 26379))
    assert (t.service, t.db, t.ssl, t.password) == ("mymaster", 3, False, None)


def test_passwords_tls_and_options():
    t = parse_sentinel_url(
        "rediss+sentinel://app:s%40cret@[::1]:26379/svc?sentinel_password=sp&socket_timeout=0.5"
    )
    assert t is not None
    assert t.sentinels == (("::1", 26379),)
    assert (t.username, t.password, t.ssl, t.db) == ("app", "s@cret", True, 0)
    assert t.sentinel_kwargs == {"socket_timeout": 0.5, "password": "sp", "ssl": True}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h1:26379", "name the service"),
        ("redis+sentinel://h1:26379/svc/x", "expected /SERVICE"),
        ("redis+sentinel://h1:26379/svc/0/1", "expected /SERVICE"),
        ("redis+sentinel://h1:port/svc", "bad sentinel address"),
        ("redis+sentinel://:1/svc", "bad sentinel address"),
        ("redis+sentinel://h1/svc?socket_timeout=soon", "socket_timeout"),
    ],
)
def test_malformed_urls_are_refused_by_name(url, message):
    with pytest.raises(ConfigurationError, match=message):
        parse_sentinel_url(url)
