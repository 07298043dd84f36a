"""Fencing: (request_id, attempt) guards every write, so a late attempt never changes what a
caller reads, and uploads never leave the job's output directory."""

from __future__ import annotations

import httpx

from tests.apps import lifecycle as jobs
from tests.conftest import wait_for


def test_a_paused_attempt_cannot_touch_the_winners_result(
    s3_env, s3_client_fixture, client, start_worker
):
    bucket = s3_env["JOBCORD_S3_BUCKET"]
    first = start_worker(env=s3_env)
    handle = jobs.attempt_blob.async_run_remote(seconds=1.5)
    wait_for(lambda: handle.status().status.value == "IN_PROGRESS", 10, "attempt 1 to start")
    first.freeze()  # the whole consumer stops, its job mid-way, past its lease
    try:
        start_worker(env=s3_env)  # recovery gives attempt 2 to this one
        assert handle.result(timeout=30) == b"attempt 2"
    finally:
        first.thaw()  # the zombie's job ends attempt 1 and tries to record it
    won = handle.status()
    assert won.attempt == 2 and "/attempt-2/" in won.result.key
    # The zombie wakes with a finished attempt 1 in hand: whatever it does, nothing it wrote
    # stays, and what callers read does not move.
    prefix = f"results/lifecycle/attempt_blob/{handle.request_id}/"

    def stored() -> list[str]:
        reply = s3_client_fixture.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"].removeprefix(prefix) for o in reply.get("Contents", []))

    wait_for(
        lambda: "outcome refused" in first.log or "lease lost" in first.log,
        15,
        "the paused consumer to give up its attempt",
    )
    # It logs the refused finish, then removes what it uploaded: wait for that, not the log.
    wanted = ["attempt-2/files/who.txt", "attempt-2/output"]
    wait_for(lambda: stored() == wanted, 10, "only the winner's objects to stay")
    after = handle.status()
    assert after.attempt == 2 and after.result.key == won.result.key
    assert httpx.get(after.files[0].url).text == "attempt 2"
    assert handle.result(timeout=1) == b"attempt 2"


def test_uploads_refuse_symlinks_and_special_files(client, start_worker):
    start_worker()
    handle = jobs.tricky_files.async_run_remote()
    assert handle.result(timeout=20) == "done"
    assert [f.name for f in handle.status().files] == ["ok.txt"]
