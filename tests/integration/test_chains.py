"""Composition: jobs that call jobs, on one single-slot class (no deadlock), errors that
bubble up three levels, a retried parent, cancel propagation, the request tree."""

from __future__ import annotations

import pytest

from jobcord.producers import JobFailed
from jobcord.storage.statuses import Status
from tests.apps import chains
from tests.conftest import wait_for

APP = "tests.apps.chains:app"


@pytest.fixture
def one_slot(start_worker):
    """Parents and children share one class served by one single-slot consumer."""
    return start_worker(APP, "--concurrency", "1")


def test_fan_out_of_50_children_on_one_slot(client, one_slot):
    handle = chains.fan_out.async_run_remote(50)
    assert handle.result(timeout=120) == sum(2 * i for i in range(50))
    tree = handle.status().children
    assert len(tree) == 50 and {c["status"] for c in tree} == {"SUCCEEDED"}
    assert [c["job"] for c in tree] == ["leaf"] * 50


def test_async_parent_waits_on_children_concurrently(client, one_slot):
    assert chains.afan_out.run_remote(20) == sum(2 * i for i in range(20))


def test_error_three_levels_deep_keeps_its_class_and_chain(client, one_slot):
    handle = chains.top.async_run_remote("disk full")
    with pytest.raises(chains.StepFailed) as info:
        handle.result(timeout=60)
    err = info.value
    assert isinstance(err, JobFailed) and err.record.request_id == handle.request_id
    text = str(err)
    # The chain reads top -> middle -> bottom, down to the root cause.
    assert text.index("top") < text.index("middle") < text.index("root cause: disk full")
    tree = handle.status().children
    assert tree[0]["job"] == "middle" and tree[0]["status"] == "FAILED"
    assert tree[0]["children"][0]["job"] == "bottom"
    assert tree[0]["children"][0]["error"] == "StepFailed"


def test_retried_parent_does_not_rerun_finished_children(client, rds, start_worker):
    # A 1 s lease (the suite's default) on a loaded 2-core machine can expire under CPU
    # starvation; then a child is legitimately run again (at-least-once on a lost lease, its
    # record says so). This test is about the parent's retry, so its lease is generous.
    start_worker(APP, "--concurrency", "1", env={"JOBCORD_LEASE_TTL_S": "5"})
    handle = chains.flaky_parent.async_run_remote("reuse")
    assert handle.result(timeout=60) == [0, 1, 2]
    assert handle.status().attempt == 2
    kids = handle.status().children
    counts = [rds.get(f"jobcord:test:count:reuse:{i}") for i in range(3)]
    assert counts == ["1", "1", "1"], [client.get(k["request_id"]).attempts for k in kids]
    assert len(kids) == 3  # the same three children, not six


def test_canceling_a_parent_cancels_its_children(client, rds, one_slot):
    handle = chains.waiter.async_run_remote("cxl", 30.0)
    wait_for(lambda: rds.get("jobcord:test:started:cxl-0"), 30, "a child to start")
    handle.cancel()
    assert handle.wait(20).status is Status.CANCELED

    def all_canceled():
        kids = handle.status().children
        return len(kids) == 2 and all(k["status"] == "CANCELED" for k in kids) and kids

    wait_for(all_canceled, 20, "both children canceled")


def test_a_parent_that_times_out_takes_its_children_with_it(client, rds, one_slot):
    handle = chains.impatient.async_run_remote("late")
    assert handle.wait(30).status is Status.TIMED_OUT
    wait_for(lambda: [c["status"] for c in handle.status().children] == ["CANCELED"], 20, "child")
    # (queued or already running when its parent timed out, it ends CANCELED either way)


def test_retries_can_be_set_per_call(client, rds, one_slot):
    handle = chains.retries_per_call.async_run_remote("per-call")
    assert handle.result(timeout=60) == 3  # the child failed twice, retried per the call
    [child] = handle.status().children
    assert child["attempt"] == 3 and child["status"] == "SUCCEEDED"
    assert client.get(child["request_id"]).max_retries == 2
    assert client.get(child["request_id"]).parent_id == handle.request_id
