"""The hot path's child-side finish: a small JSON success is ended by the child itself, with
the same fenced script the parent runs; anything else comes back for the parent to store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from consumers.protocol import FinishHere, Task
from consumers.slots import ChildSlot, OutcomeKind
from storage import NewRequest, RequestStore, Status, load_settings
from storage.connection import connect


@pytest.fixture
def store(jobcord_env) -> RequestStore:
    settings = load_settings()
    return RequestStore(connect(settings), settings)


@pytest.fixture
def slot(jobcord_env) -> Iterator[ChildSlot]:
    s = ChildSlot("tests.apps.protocol:app", name="finish", kill_grace_s=1.0)
    s.start()
    try:
        yield s
    finally:
        s.close()


def _claimed(store: RequestStore, text: str) -> tuple[str, str]:
    rid, token = uuid.uuid4().hex, uuid.uuid4().hex
    data = json.dumps({"text": text})
    store.submit(NewRequest(rid, "protocol", "echo", "jobcord.protocol.cpu", data, "h"))
    assert store.claim(rid, 1, "w", token)[0] == "claimed"
    return rid, token


def _run(slot: ChildSlot, rid: str, text: str, leave: FinishHere):
    return slot.run(Task(rid, 1, "echo", {"text": text}, "", leave), 10.0, lambda f, m: None)


def test_a_small_success_is_finished_by_the_child_under_its_lease(store, slot):
    rid, token = _claimed(store, "hi")
    outcome = _run(slot, rid, "hi", FinishHere(token, None, 1024))
    assert outcome.kind is OutcomeKind.OK and outcome.ended_by_child is not None
    assert outcome.ended_by_child.finished and not outcome.data  # nothing left to store
    record = store.get(rid)
    assert record.status is Status.SUCCEEDED and record.output["text"] == "hi"
    assert record.progress == 1.0


def test_a_child_without_the_lease_writes_nothing(store, slot):
    rid, _token = _claimed(store, "hi")
    outcome = _run(slot, rid, "hi", FinishHere("someone-elses-token", None, 1024))
    assert outcome.ended_by_child is not None and not outcome.ended_by_child.finished
    assert store.get(rid).status is Status.IN_PROGRESS  # still the lease holder's


def test_an_output_over_the_inline_limit_comes_back_to_the_parent(store, slot):
    rid, token = _claimed(store, "x" * 200)
    outcome = _run(slot, rid, "x" * 200, FinishHere(token, None, 64))
    assert outcome.kind is OutcomeKind.OK and outcome.ended_by_child is None
    assert json.loads(outcome.data)["text"] == "x" * 200
    assert store.get(rid).status is Status.IN_PROGRESS  # the parent stores it, not the child
