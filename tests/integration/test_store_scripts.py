"""The atomic scripts of RequestStore, against a real Redis, without consumers."""

from __future__ import annotations

import time
import uuid

import pytest

from storage import NewRequest, RequestStore, Status, load_settings
from storage.keys import DELAYED_KEY, RUNNING_KEY


@pytest.fixture
def store(jobcord_env, rds):
    from storage.connection import connect

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


def test_submit_writes_record_event_and_dramatiq_message(store, rds):
    rid = _submit(store)
    assert rds.hget(f"jobcord:req:{rid}", "status") == "QUEUED"
    [mid] = rds.lrange("jobcord.dq:jobcord.t.cpu", 0, -1)
    assert rid in rds.hget("jobcord.dq:jobcord.t.cpu.msgs", mid)
    assert rds.llen("jobcord:wake:jobcord.t.cpu") == 1


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
    assert rds.zscore(RUNNING_KEY, rid) is None


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
    assert nxt == 2 and rds.zscore(DELAYED_KEY, rid) is not None
    assert store.recover() == []
    time.sleep(0.25)
    assert store.recover() == [(rid, "promoted")]
    assert rds.llen("jobcord.dq:jobcord.t.cpu") == 2  # attempt 1's message was never acked here


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


def test_scripts_run_with_the_generated_prelude(rds):
    from storage.requests import _SCRIPT_NAMES, lua_script

    for name in (*_SCRIPT_NAMES, "fetch", "rate"):
        rds.script_load(lua_script(name))  # compiles: every key_* it calls exists


def test_a_request_whose_worker_died_goes_to_the_front_of_its_queue(store, rds):
    lost = _submit(store)
    assert store.claim(lost, 1, "w1", "tok1")[0] == "claimed"
    newer = [_submit(store) for _ in range(3)]  # arrived while it ran
    time.sleep(0.35)
    assert store.recover() == [(lost, "requeued")]
    head = rds.lindex("jobcord.dq:jobcord.t.cpu", 0)
    assert head.startswith(f"{lost}.2."), (head, newer)  # before everything that came since


def _runner(store, results):
    from consumers.runner import Runner
    from scheduler.jobspec import AppRegistry

    return Runner(AppRegistry("t"), store, results, None, [], store.settings, "w")  # type: ignore[arg-type]


def test_a_lost_finish_reply_never_removes_the_winners_objects(store, tmp_path):
    """finish ran but its reply was lost; the retried finish finds the request ended: the
    objects the record names (this attempt's own) must stay."""
    from storage.results import LocalResultStore

    results = LocalResultStore(tmp_path)
    rid = _submit(store)
    store.claim(rid, 1, "w", "tok")
    key = f"t/j/{rid}/attempt-1/output"
    stored = results.put_bytes(key, b"mine", "application/octet-stream")
    assert store.finish(rid, "tok", Status.SUCCEEDED, result=stored.model_dump(exclude={"url"}))
    _runner(store, results)._discard(store.get(rid), [key])
    assert results.get_bytes(key) == b"mine"


def test_the_winning_attempt_sweeps_what_dead_attempts_left(store, tmp_path):
    from storage.results import LocalResultStore

    results = LocalResultStore(tmp_path)
    rid = _submit(store)
    store.claim(rid, 1, "w1", "tok1")
    results.put_bytes(f"t/j/{rid}/attempt-1/output", b"orphan", "application/octet-stream")
    time.sleep(0.35)
    store.recover()  # attempt 1's consumer died after its upload
    _, record = store.claim(rid, 2, "w2", "tok2")
    won = results.put_bytes(f"t/j/{rid}/attempt-2/output", b"won", "application/octet-stream")
    assert _runner(store, results)._finish(
        rid, "tok2", Status.SUCCEEDED, record, result=won.model_dump(exclude={"url"})
    )
    assert not (tmp_path / "t/j" / rid / "attempt-1").exists()
    assert results.get_bytes(won.key) == b"won"


class _Claims:
    """What the runner does with claims made at fetch, recorded."""

    worker_id = "w"
    lease = (5.0, 3600)

    def __init__(self) -> None:
        self.got: list[list[str]] = []

    def claimed(self, flat: list[str]) -> None:
        self.got.append(flat)


def _fetch(redis_url: str, claims: object, n: int = 10) -> list[bytes]:
    from consumers.broker import WakingRedisBroker

    broker = WakingRedisBroker(redis_url)
    broker.claim_on_fetch(claims)  # type: ignore[arg-type]
    try:
        return broker.do_fetch("jobcord.t.cpu", n)
    finally:
        broker.close()


def test_fetch_claims_as_it_takes_and_acks_stale_messages_in_redis(store, rds, redis_url):
    stale, live = _submit(store), _submit(store)
    rds.hset(f"jobcord:req:{stale}", "attempt", 2)  # its message's attempt is no longer queued
    claims = _Claims()
    messages = _fetch(redis_url, claims)
    assert len(messages) == 1 and live in messages[0].decode()
    [(token, message_id, *fields)] = claims.got
    assert message_id.startswith(f"{live}.1.")
    record = dict(zip(fields[::2], fields[1::2], strict=True))
    assert record["status"] == "IN_PROGRESS" and record["lease"] == token
    assert store.get(live).status is Status.IN_PROGRESS
    # The stale message was acked inside the script: only the live one is left unacked.
    assert rds.hkeys("jobcord.dq:jobcord.t.cpu.msgs") == [message_id]
    assert store.get(stale).status is Status.QUEUED  # untouched


def test_an_attempt_claimed_at_fetch_but_never_started_goes_back_uncounted(store, redis_url):
    from consumers.leases import LeaseKeeper
    from consumers.runner import Runner
    from scheduler.jobspec import AppRegistry

    rid = _submit(store)
    leases = LeaseKeeper(store, 5.0)
    runner = Runner(AppRegistry("t"), store, None, leases, [], store.settings, "w")  # type: ignore[arg-type]
    _fetch(redis_url, runner.claims)
    assert store.get(rid).status is Status.IN_PROGRESS
    assert rid in leases._running  # renewed from the claim on, before any worker takes it
    runner.claims.release_unstarted()  # the consumer shuts down before a worker took it
    record = store.get(rid)
    assert record.status is Status.QUEUED and record.attempt == 2
    assert (record.failures, record.worker_losses, record.infra_failures) == (0, 0, 0)
    assert record.attempts[-1].reason == "consumer shut down"
    assert rid not in leases._running


def test_a_cancel_before_a_worker_takes_a_claimed_attempt_ends_it_unrun(store, redis_url):
    from consumers.leases import LeaseKeeper
    from consumers.runner import Runner
    from scheduler.jobspec import AppRegistry
    from storage.requests import BrokerAck

    rid = _submit(store)
    leases = LeaseKeeper(store, 5.0)
    message: list[str] = []
    runner = Runner(
        AppRegistry("t"),
        store,
        None,  # type: ignore[arg-type]
        leases,
        [],  # no slot: the attempt must end before one is needed
        store.settings,
        "w",
        current_ack=lambda: BrokerAck("b", "jobcord.t.cpu", message[0]),
    )
    _fetch(redis_url, runner.claims)
    message.extend(runner.claims._claims)
    assert store.cancel(rid) is Status.IN_PROGRESS  # claimed: a cancel is a request to stop
    leases._stop(rid, "cancel", leases.cancel_state)  # as the cancel listener hears it
    runner.execute(rid, 1)
    record = store.get(rid)
    assert record.status is Status.CANCELED and record.error.message == "canceled before it started"
    assert rid not in leases._running
