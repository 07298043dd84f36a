"""consumers/broker.py subclasses dramatiq's private Redis consumer (there is no public hook
for a blocking wake-up or a custom fetch). This pins what it relies on, so an upgrade that
changes those internals fails here, loudly, instead of in production."""

from __future__ import annotations

import inspect

import dramatiq
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer

#: The dramatiq releases these internals were read in and tested with (pyproject pins it).
TESTED = ((1, 17), (2, 3))


def test_dramatiq_version_is_in_the_tested_range():
    version = tuple(int(p) for p in dramatiq.__version__.split(".")[:2])
    low, high = TESTED
    assert low <= version < high, (
        f"dramatiq {dramatiq.__version__} is outside the tested range; re-read "
        "dramatiq/brokers/redis.py against consumers/broker.py, then widen TESTED"
    )


def test_the_private_consumer_still_has_what_we_override_and_read():
    init = inspect.signature(_RedisConsumer.__init__).parameters
    assert list(init)[:5] == ["self", "broker", "queue_name", "prefetch", "timeout"]
    for name in ("__next__", "ack", "nack"):
        assert callable(getattr(_RedisConsumer, name))
    source = inspect.getsource(_RedisConsumer)
    attributes = (
        "message_cache",
        "outstanding_message_count",
        "prefetch",
        "queue_name",
        "queued_message_ids",  # what an ack done by our finish script must still discard
    )
    for attribute in attributes:
        assert f"self.{attribute}" in source, attribute
    # Fetching goes through the broker's do_fetch (we replace it) and _dispatch (we reuse it).
    assert "self.broker.do_fetch(" in source
    assert callable(RedisBroker._dispatch)
    assert isinstance(inspect.getattr_static(RedisBroker, "consumer_class"), property)


def test_an_ack_is_the_two_writes_our_finish_script_repeats():
    """storage/lua/finish.lua acks the message it ends as dramatiq's dispatch.lua does."""
    import pathlib

    import dramatiq.brokers.redis as redis_broker
    from dramatiq.middleware import CurrentMessage

    lua = (pathlib.Path(redis_broker.__file__).parent / "redis" / "dispatch.lua").read_text()
    ack = lua[lua.index('command == "ack"') : lua.index('command == "nack"')]
    assert 'redis.call("srem", queue_acks, message_id) > 0' in ack
    assert 'redis.call("hdel", queue_messages, message_id)' in ack
    assert callable(CurrentMessage.get_current_message)  # how the runner finds the message
