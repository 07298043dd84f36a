"""The gateway remembers keys that verified, briefly and boundedly; bad keys are never kept."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException

from jobcord.producers.gateway import auth
from jobcord.storage.apikeys import ApiKey

GOOD = ApiKey("k1", frozenset({"*"}), 0.0)


class _Keys:
    def __init__(self) -> None:
        self.asked = 0

    def verify(self, token: str) -> ApiKey | None:
        self.asked += 1
        return GOOD if token.startswith("jc_good") else None


class _Request:
    def __init__(self, token: str) -> None:
        self.headers = {"authorization": f"Bearer {token}"}


def _check(a: auth.Authenticator, token: str) -> ApiKey:
    return asyncio.run(a(_Request(token)))  # type: ignore[arg-type]


def test_a_verified_key_is_asked_again_only_after_its_time(monkeypatch):
    keys = _Keys()
    a = auth.Authenticator(keys, required=True)  # type: ignore[arg-type]
    now = [100.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    assert _check(a, "jc_good_1") is GOOD and _check(a, "jc_good_1") is GOOD
    assert keys.asked == 1
    now[0] += auth.VERIFIED_FOR_S + 0.01
    _check(a, "jc_good_1")
    assert keys.asked == 2  # a revocation is seen within VERIFIED_FOR_S


def test_bad_keys_are_refused_every_time_and_never_remembered(monkeypatch):
    keys = _Keys()
    a = auth.Authenticator(keys, required=True)  # type: ignore[arg-type]
    for i in range(50):
        with pytest.raises(HTTPException) as refused:
            _check(a, f"jc_bad_{i}")
        assert refused.value.status_code == 401
    assert keys.asked == 50 and not a._verified


def test_the_memory_of_good_keys_is_bounded(monkeypatch):
    monkeypatch.setattr(auth, "_REMEMBERED", 3)
    a = auth.Authenticator(_Keys(), required=True)  # type: ignore[arg-type]
    for i in range(10):
        _check(a, f"jc_good_{i}")
    assert list(a._verified) == ["jc_good_7", "jc_good_8", "jc_good_9"]
