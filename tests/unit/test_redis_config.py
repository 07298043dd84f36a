"""The start-up check of a Redis's settings for jobs (warnings, never a refusal)."""

from __future__ import annotations

from jobcord.storage.redis_config import redis_config_problems

GOOD = {"maxmemory-policy": "noeviction", "appendonly": "yes", "stream-node-max-bytes": "512"}


def test_jobcords_own_settings_pass():
    assert redis_config_problems(GOOD) == []
    assert redis_config_problems({}) == []  # CONFIG refused: nothing to say


def test_each_setting_that_loses_requests_or_memory_is_named():
    bad = {"maxmemory-policy": "allkeys-lru", "appendonly": "no", "stream-node-max-bytes": "4096"}
    problems = redis_config_problems(bad)
    assert len(problems) == 3
    assert "evict" in problems[0] and "noeviction" in problems[0]
    assert "restart loses" in problems[1]
    assert "4096" in problems[2] and "512" in problems[2]
