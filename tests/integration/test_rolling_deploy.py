"""A rolling deploy: workers of two builds of one app share its queue. A request is taken only
by a consumer that runs its job's version (a hash of the job's schemas and declared version):
a build-1 worker sets build-2 requests aside instead of failing them, and the other way round;
a job the builds agree on runs on either."""

from __future__ import annotations

import time
from typing import Annotated

import redis
from pydantic import BeforeValidator

from jobcord import App
from jobcord.scheduler.capacity import queue_capacity
from jobcord.storage.registry import ConsumerRegistry
from jobcord.storage.statuses import Status
from tests.apps import deploy_v1 as v1
from tests.apps import deploy_v2 as v2
from tests.conftest import wait_for

V1 = "tests.apps.deploy_v1:app"
V2 = "tests.apps.deploy_v2:app"


def _queue(rds: redis.Redis):
    consumers = ConsumerRegistry(rds).live()
    [queue] = queue_capacity(rds, list(v2.app.jobs.values()), consumers, concurrency_target=1)
    return queue


def _versions(rds: redis.Redis) -> dict[str, dict]:
    return {v["job"]: v for v in _queue(rds).versions}


def _dashboard_queues(rds: redis.Redis) -> str:
    """The dashboard's queue panel, rendered from the same figures as its route does."""
    from pathlib import Path

    import jobcord.producers.gateway.dashboard as dashboard
    from jobcord.producers.gateway.dashboard.render import Renderer

    pages = Renderer(Path(dashboard.__file__).parent / "templates", auth_required=False)
    return pages.render("_queues.html", queues=[_queue(rds).as_dict()], replicas=None)


def test_versions_follow_schemas_not_code():
    assert v1.stable.spec.job_version == v2.stable.spec.job_version
    assert v1.changed.spec.job_version != v2.changed.spec.job_version
    assert len(v2.added.spec.job_version) == 12
    assert v1.app.runs == (
        f"changed={v1.changed.spec.job_version},stable={v1.stable.spec.job_version}"
    )


def test_what_differs_between_processes_of_one_build_is_not_the_version():
    # A default computed from the environment (the API has no GPU, the worker does) or a
    # title is not the job's shape: the API and its workers must agree.
    def versions(device: str, note: str) -> tuple[str, str]:
        app = App(f"envdefault-{device}")

        @app.job(name="infer")
        def infer(x: int, device: str = device) -> int:  # noqa: ARG001
            return x

        @app.job(name="loose")
        def loose(x: Annotated[int, BeforeValidator(lambda v: v)]) -> object:
            return x

        return infer.spec.job_version, loose.spec.job_version

    assert versions("cuda", "on the GPU") == versions("cpu", "anywhere")


def test_two_builds_share_a_queue_and_each_runs_only_its_own(client, rds, start_worker):
    old = start_worker(V1)
    # The API is upgraded first: build 2 submits; build 1 of the same app still submits too.
    unchanged = v2.stable.async_run_remote(5)
    new_input = v2.changed.async_run_remote(3, scale=10)
    new_job = v2.added.async_run_remote("ada")
    old_input = v1.changed.async_run_remote(3)
    assert unchanged.result(timeout=20) == {"x": 5, "build": 1}  # either build may run it
    assert old_input.result(timeout=20) == {"y": 4, "build": 1}
    time.sleep(1.0)  # build 1 has seen build 2's requests by now: they wait, not fail
    for handle in (new_input, new_job):
        record = handle.status()
        assert record.status is Status.QUEUED, (record.status, record.error, old.log)
        assert record.attempts == [] and record.job_version
    seen = _versions(rds)
    assert seen["changed"]["consumer_versions"] == {v1.changed.spec.job_version: 1}
    assert seen["changed"]["waiting_for_version"] == {v2.changed.spec.job_version: 1}
    assert seen["added"]["waiting_for_version"] == {v2.added.spec.job_version: 1}
    assert seen["added"]["consumer_versions"] == {}
    assert _queue(rds).waiting == 2  # still counted as waiting (autoscalers, /v1/queues)
    panel = _dashboard_queues(rds)
    assert "Job versions (a rolling deploy)" in panel
    assert f"<code>{v2.added.spec.job_version}</code>: 1 request" in panel

    start_worker(V2)  # the new workers come up beside the old ones
    assert new_input.result(timeout=20) == {"y": 30, "build": 2}
    assert new_job.result(timeout=20) == {"hello": "ada", "build": 2}
    wait_for(lambda: not _versions(rds)["changed"]["waiting_for_version"], 10, "nothing aside")
    assert _versions(rds)["changed"]["consumer_versions"] == {
        v1.changed.spec.job_version: 1,
        v2.changed.spec.job_version: 1,
    }

    old.stop()  # the old workers go; an old API's request now waits for a build-1 consumer
    late = v1.changed.async_run_remote(1, max_time_in_queue_seconds=2.0)
    assert late.wait(20).status is Status.EXPIRED  # never run by build 2 with the wrong input
    # Maintenance drops its set-aside message: nothing shows as waiting for build 1 any more.
    wait_for(lambda: not _versions(rds)["changed"]["waiting_for_version"], 15, "pruned")
    assert not rds.exists(f"jobcord.dq:{v1.changed.spec.queue}.parked")
    assert v2.stable.async_run_remote(6).result(timeout=20) == {"x": 6, "build": 2}


def test_a_request_of_an_older_producer_runs_anywhere(client, rds, start_worker):
    # Records from before job versions (no job_version field) keep the former behaviour.
    start_worker(V2)
    sub = client.submit(v1.stable.spec, {"x": 2}, _opts())
    rds.hdel(f"jobcord:req:{sub.request_id}", "job_version")
    assert client.wait(sub.request_id, 20).status is Status.SUCCEEDED


def _opts():
    from jobcord.producers import SubmitOptions

    return SubmitOptions()
