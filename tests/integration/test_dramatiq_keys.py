"""Keys from dramatiq messages, in-process (dramatiq's StubBroker and Worker, jobcord's real
Redis): a message delivered twice finds its requests again; no middleware, no silent risk."""

from __future__ import annotations

import dramatiq
import pytest
from dramatiq import Message, Worker
from dramatiq.brokers.stub import StubBroker

from jobcord.dramatiq import BridgeMissing, JobcordMiddleware


def _run(broker: StubBroker, *messages: Message) -> None:
    worker = Worker(broker, worker_timeout=50, worker_threads=1)  # in order
    worker.start()
    try:
        for message in messages:
            broker.enqueue(message)
        broker.join("q", fail_fast=True)
    finally:
        worker.stop()


def _calls_twice(broker: StubBroker, made: list[tuple[str, bool]]):
    from tests.apps.bridge import embed

    @dramatiq.actor(queue_name="q", broker=broker, max_retries=0)
    def two(text: str) -> None:
        for suffix in ("a", "b"):
            handle = embed.async_run_remote(text + suffix)
            made.append((handle.request_id, handle.created))

    return two


def test_a_redelivered_message_finds_its_requests(client):
    broker = StubBroker()
    broker.add_middleware(JobcordMiddleware(client=client))
    made: list[tuple[str, bool]] = []
    two = _calls_twice(broker, made)
    first = two.message("x")
    _run(broker, first, first.copy(), two.message("x"))
    ids = [rid for rid, _ in made]
    # The first delivery made two requests, the second found both, another message made new.
    assert ids[:2] == ids[2:4] and len(set(ids)) == 4
    assert [created for _, created in made] == [True, True, False, False, True, True]
    keys = {client.get(rid).idempotency_key for rid in ids[:2]}
    assert keys == {f"dramatiq:{first.message_id}:1", f"dramatiq:{first.message_id}:2"}


def test_an_actor_without_the_middleware_is_refused(client):
    broker = StubBroker()  # no JobcordMiddleware: a redelivery would start a second job
    two = _calls_twice(broker, [])
    with pytest.raises(BridgeMissing, match="JobcordMiddleware"):
        _run(broker, two.message("x"))
    # An explicit key is the caller's own choice, and works without it.
    from tests.apps.bridge import embed

    broker = StubBroker()

    @dramatiq.actor(queue_name="q", broker=broker, max_retries=0)
    def keyed() -> None:
        embed.async_run_remote("y", idempotency_key="mine")

    _run(broker, keyed.message())
