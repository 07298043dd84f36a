"""``on_complete``: a dramatiq actor or message as a bounded target, refused with the field."""

from __future__ import annotations

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from pydantic import ValidationError

from jobcord.producers.options import MAX_TARGET_BYTES, RequestOptions, SubmitOptions
from jobcord.scheduler.webhooks.actors import (
    COMPLETION_OPTION,
    completion_message,
    completion_message_id,
)
from jobcord.storage.records import RequestRecord


@pytest.fixture
def done_actor():
    broker = StubBroker()

    @dramatiq.actor(queue_name="cpu", broker=broker)
    def done(tag: str, request: dict) -> None:
        pass

    return done


def test_actor_and_message_become_targets(done_actor):
    bare = SubmitOptions(on_complete=done_actor).on_complete
    assert bare is not None and (bare.actor, bare.queue, bare.args) == ("done", "cpu", [])
    msg = SubmitOptions(on_complete=done_actor.message_with_options(args=("t",), max_retries=2))
    assert msg.on_complete is not None
    assert msg.on_complete.args == ["t"] and msg.on_complete.options == {"max_retries": 2}
    # Over HTTP the same target is JSON.
    body = msg.request_options()["on_complete"]
    assert RequestOptions(on_complete=body).on_complete == msg.on_complete


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ({"actor": "bad name!"}, "on_complete.actor"),
        ({"actor": "a", "queue": "q" * 200}, "on_complete.queue"),
        ({"actor": "a", "args": ["x" * MAX_TARGET_BYTES]}, "at most"),
        ({"actor": "a", "options": {COMPLETION_OPTION: {}}}, "jobcord's own"),
        ({"actor": "a", "surprise": 1}, "surprise"),
        (42, "on_complete must be a dramatiq actor"),
    ],
)
def test_bad_targets_are_refused_naming_the_field(target, says):
    with pytest.raises(ValidationError) as caught:
        RequestOptions(on_complete=target)
    assert says in str(caught.value)


def test_webhook_and_actor_not_both():
    with pytest.raises(ValidationError, match="not both"):
        RequestOptions(on_complete={"actor": "a"}, webhook_endpoint="https://example.com/h")


def test_completion_message_names_the_attempt_and_appends_the_request():
    record = RequestRecord(
        request_id="r1",
        app="a",
        job="j",
        queue="cpu",
        status="SUCCEEDED",
        attempt=2,
        created_at=1.0,
        finished_at=2.0,
        output=[1, 2],
        on_complete={"actor": "done", "queue": "q", "args": ["t"], "kwargs": {"k": 1}},
    )
    message = completion_message(record)
    assert (message.queue_name, message.actor_name) == ("q", "done")
    assert message.args[0] == "t" and message.args[1]["output"] == [1, 2]
    assert message.kwargs == {"k": 1}
    assert message.options[COMPLETION_OPTION] == {"request_id": "r1", "attempt": 2}
    # Every send of one attempt has one id; the next attempt another.
    assert message.message_id == completion_message_id("r1", 2) != completion_message_id("r1", 3)
