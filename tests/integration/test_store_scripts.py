"""The atomic scripts of RequestStore, against a real Redis, without consumers."""

from __future__ import annotations

import time
import uuid

import pytest

from jobcord.storage import NewRequest, RequestStore, Status, load_settings
from jobcord.storage.keys import delayed_key, running_key


@pytest.fixture
def store(jobcord_env, rds):
    from jobcord.storage.connection import connect

    settings = load_settings(lease_ttl_s=0.3, max_worker_losses=2)
    return RequestStore(connect(settings), settings)


def _submit(store: RequestStore, **kw) -> str:
    rid = uuid.uuid4().hex
    store.submit(
        NewRequest(
            request_id=rid,
            app="t",
            job="j",
            queue="jobcord.t.cpu",
            input_json="{}",
            input_hash="h",
            **kw,
        )
    )
    return rid


def test_submit_writes_the_record_and_a_message_of_id_attempt_and_time(store, rds):
    before = time.time()
    rid = _submit(store)
    assert rds.hget(f"jobcord:req:{rid}", "status") == "QUEUED"
    [mid] = rds.lrange("jobcord.dq:jobcord.t.cpu", 0, -1)
    request_id, attempt, at_ms = mid.split(".")
    assert (request_id, attempt) == (rid, "1") and before - 1 <= int(at_ms) / 1000 <= time.time()
    assert rds.llen("jobcord:wake:jobcord.t.cpu") == 1
    assert not rds.exists("jobcord.dq:jobcord.t.cpu.msgs")  # nothing else per message


def test_expired_lease_is_requeued_then_failed_after_max_losses(store, rds):
    rid = _submit(store)
    assert store.claim(rid, 1, "w1", "tok1")[0] == "claimed"
    time.sleep(0.35)
    assert store.recover() == [(rid, "requeued")]
    rec = store.get(rid)
    assert (rec.status, rec.attempt, rec.worker_losses) == (Status.QUEUED, 2, 1)
    assert store.claim(rid, 1, "w1", "stale")[0] == "stale"  # the old message is ignored
    assert store.finish(rid, "tok1", Status.SUCCEEDED, output="1") is False  # old lease
    assert store.claim(rid, 2, "w2", "tok2")[0] == "claimed"
    assert store.renew({rid: "tok2"}) == {rid: "ok"}
    time.sleep(0.35)
    assert store.recover() == [(rid, "failed")]
    rec = store.get(rid)
    assert rec.status is Status.FAILED and rec.error.type == "WorkerLost"
    assert store.renew({rid: "tok2"}) == {rid: "lost"}
    assert rds.zscore(running_key(), rid) is None


def test_delayed_retry_is_promoted_when_due(store, rds):
    rid = _submit(store)
    store.claim(rid, 1, "w", "tok")
    nxt = store.retry(
        rid,
        "tok",
        delay_s=0.2,
        counter="failures",
        error={"type": "E", "message": "m"},
        reason="retry",
    )
    assert nxt == 2 and rds.zscore(delayed_key(), rid) is not None
    assert store.recover() == []
    time.sleep(0.25)
    assert store.recover() == [(rid, "promoted")]
    assert rds.llen("jobcord.dq:jobcord.t.cpu") == 2  # attempt 1's own, then attempt 2's


def test_cancel_running_then_lease_expiry_ends_canceled(store):
    rid = _submit(store)
    store.claim(rid, 1, "w", "tok")
    assert store.cancel(rid) is Status.IN_PROGRESS
    assert store.renew({rid: "tok"}) == {rid: "cancel"}
    time.sleep(0.35)
    assert store.recover() == [(rid, "canceled")]
    assert store.get(rid).status is Status.CANCELED
    assert store.cancel(rid) is Status.CANCELED  # idempotent on a terminal request


def test_queued_request_past_its_deadline_expires_without_a_consumer(store, rds):
    rid = _submit(store, max_queue_s=0.2)
    keep = _submit(store, max_queue_s=60)
    assert store.recover() == []
    time.sleep(0.25)
    assert store.recover() == [(rid, "expired")]
    rec = store.get(rid)
    assert rec.status is Status.EXPIRED and rec.error.type == "Expired"
    assert store.claim(rid, 1, "w", "t")[0] == "stale"  # its message is skipped later
    assert store.claim(keep, 1, "w", "t")[0] == "claimed"
    assert rds.zscore("jobcord:deadlines", keep) is None  # started: deadline no longer applies


@pytest.mark.parametrize("functions", [True, False], ids=["fcall", "evalsha"])
def test_every_script_runs_as_a_function_library_and_as_cached_scripts(rds, functions):
    from jobcord.storage.scripts import SCRIPT_NAMES, Scripts, function_library, lua_script

    for name in SCRIPT_NAMES:
        rds.script_load(lua_script(name))  # compiles: every key_* and helper it calls exists
    rds.function_load(function_library()[0], replace=True)
    scripts = Scripts(rds, functions=functions)
    assert scripts("renew", 5.0) == []  # a call through the chosen path
    assert scripts.uses_functions is functions


def test_a_server_without_the_library_gets_it_loaded_on_first_call(rds):
    from jobcord.storage.scripts import Scripts, function_library

    library = function_library()[0].split("\n", 1)[0].split("name=")[1]
    rds.execute_command("FUNCTION", "DELETE", library)
    assert Scripts(rds)("renew", 5.0) == []
    assert rds.function_list(library)  # loaded again


def test_a_request_whose_worker_died_goes_to_the_front_of_its_queue(store, rds):
    lost = _submit(store)
    assert store.claim(lost, 1, "w1", "tok1")[0] == "claimed"
    newer = [_submit(store) for _ in range(3)]  # arrived while it ran
    time.sleep(0.35)
    assert store.recover() == [(lost, "requeued")]
    head = rds.lindex("jobcord.dq:jobcord.t.cpu", 0)
    assert head.startswith(f"{lost}.2."), (head, newer)  # before everything that came since


def _endings(store, results):
    from jobcord.consumers.endings import Endings
    from jobcord.consumers.metrics import JobCounts
    from jobcord.scheduler.jobspec import AppRegistry

    return Endings(AppRegistry("t"), store, lambda: results, store.settings, JobCounts())


def test_a_lost_finish_reply_never_removes_the_winners_objects(store, tmp_path):
    """finish ran but its reply was lost; the retried finish finds the request ended: the
    objects the record names (this attempt's own) must stay."""
    from jobcord.consumers.endings import AttemptRef
    from jobcord.storage.results import LocalResultStore

    results = LocalResultStore(tmp_path)
    rid = _submit(store)
    store.claim(rid, 1, "w", "tok")
    key = f"t/j/{rid}/attempt-1/output"
    stored = results.put_bytes(key, b"mine", "application/octet-stream")
    assert store.finish(rid, "tok", Status.SUCCEEDED, result=stored.model_dump(exclude={"url"}))
    _endings(store, results)._discard(AttemptRef(rid, "t", "j", 1), [key])
    assert results.get_bytes(key) == b"mine"


def test_the_winning_attempt_sweeps_what_dead_attempts_left(store, tmp_path):
    from jobcord.consumers.endings import AttemptRef
    from jobcord.storage.results import LocalResultStore

    results = LocalResultStore(tmp_path)
    rid = _submit(store)
    store.claim(rid, 1, "w1", "tok1")
    results.put_bytes(f"t/j/{rid}/attempt-1/output", b"orphan", "application/octet-stream")
    time.sleep(0.35)
    store.recover()  # attempt 1's consumer died after its upload
    store.claim(rid, 2, "w2", "tok2")
    won = results.put_bytes(f"t/j/{rid}/attempt-2/output", b"won", "application/octet-stream")
    assert _endings(store, results)._finish(
        AttemptRef(rid, "t", "j", 2),
        "tok2",
        Status.SUCCEEDED,
        result=won.model_dump(exclude={"url"}),
    )
    assert not (tmp_path / "t/j" / rid / "attempt-1").exists()
    assert results.get_bytes(won.key) == b"won"


QUEUE = [("jobcord.t.cpu", 0)]


def test_fetch_claims_as_it_takes_and_drops_stale_messages_in_redis(store, rds):
    stale, live = _submit(store), _submit(store)
    rds.hset(f"jobcord:req:{stale}", "attempt", 2)  # its message's attempt is no longer queued
    [(token, record)] = store.fetch(QUEUE, "w", "GPU-x", n=10)
    assert record["id"] == live and record["status"] == "IN_PROGRESS"
    assert record["lease"] == token and record["device"] == "GPU-x"
    rec = store.get(live)
    assert rec.status is Status.IN_PROGRESS and rec.worker == "w" and rec.device == "GPU-x"
    assert rds.zscore(running_key(), live) is not None  # leased from the claim on
    assert store.get(stale).status is Status.QUEUED  # untouched; its message is gone
    assert rds.llen("jobcord.dq:jobcord.t.cpu") == 0


def test_a_fetch_that_empties_its_queues_clears_their_wake_ups(store, rds):
    rids = [_submit(store) for _ in range(3)]
    assert rds.llen("jobcord:wake:jobcord.t.cpu") == 3
    assert len(store.fetch(QUEUE, "w", n=2)) == 2
    assert rds.llen("jobcord:wake:jobcord.t.cpu") == 3  # one is still waiting
    assert [r["id"] for _, r in store.fetch(QUEUE, "w", n=2)] == rids[2:]
    assert not rds.exists("jobcord:wake:jobcord.t.cpu")  # none left for idle consumers


def test_finish_next_ends_one_attempt_and_takes_the_next_in_one_call(store):
    first, second = _submit(store), _submit(store)
    [(token, _)] = store.fetch(QUEUE, "w")
    finished, claims = store.finish_next(
        first, token, Status.SUCCEEDED, {"output": "1"}, QUEUE, "w"
    )
    assert finished and store.get(first).status is Status.SUCCEEDED
    assert [r["id"] for _, r in claims] == [second]
    finished, claims = store.finish_next(first, token, Status.FAILED, {}, QUEUE, "w")
    assert not finished and claims == []  # a stale token writes nothing
    assert store.get(first).status is Status.SUCCEEDED


def test_a_fallback_consumer_takes_only_messages_that_waited(store):
    rid = _submit(store)
    assert store.fetch([("jobcord.t.cpu", 60_000)], "w") == []  # it waited less than a minute
    time.sleep(0.05)
    [(_, record)] = store.fetch([("jobcord.t.cpu", 20)], "w")
    assert record["id"] == rid


def test_messages_from_before_0_2_are_taken_and_their_hash_entries_removed(store, rds):
    """Before 0.2 a message was '<id>.<attempt>.<seq>' and also lived in dramatiq's hash."""
    rid = _submit(store)
    rds.delete("jobcord.dq:jobcord.t.cpu")
    legacy = f"{rid}.1.17"
    rds.rpush("jobcord.dq:jobcord.t.cpu", legacy)
    rds.hset("jobcord.dq:jobcord.t.cpu.msgs", legacy, "{}")
    [(_, record)] = store.fetch(QUEUE, "w")
    assert record["id"] == rid and not rds.exists("jobcord.dq:jobcord.t.cpu.msgs")


def test_the_attempt_that_ended_a_request_is_in_its_log_and_a_rerun_keeps_it(store):
    rid = _submit(store)
    [(token, _)] = store.fetch(QUEUE, "w1")
    store.finish(rid, token, Status.FAILED, error='{"type": "Boom", "message": "m"}')
    [ended] = store.get(rid).attempts  # made from the record, not stored
    assert (ended.attempt, ended.outcome, ended.error, ended.worker) == (1, "FAILED", "Boom", "w1")
    assert store.rerun(rid) == 2
    [(token, _)] = store.fetch(QUEUE, "w2")
    store.finish(rid, token, Status.SUCCEEDED, output="1")
    attempts = store.get(rid).attempts
    assert [(a.attempt, a.outcome, a.error) for a in attempts] == [
        (1, "FAILED", "Boom"),
        (2, "SUCCEEDED", None),
    ]
