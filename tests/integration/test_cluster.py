"""Redis Cluster: jobcord on a real local cluster (three primaries, replicas of the one that
serves jobcord's slot; ``tests.topology.ClusterSetup``), every key in that one slot, each
process following a failover the cluster makes by itself."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobcord.producers import set_default_client, verify_webhook
from jobcord.scheduler.cron import CronTicker
from jobcord.storage import keys
from jobcord.storage.apikeys import ApiKeyStore
from jobcord.storage.connection import connect_url
from jobcord.storage.errors import NotAcknowledged
from jobcord.storage.replicas import ReplicaLeases
from jobcord.storage.statuses import Status, WebhookStatus
from tests.apps import lifecycle
from tests.apps import topology as jobs
from tests.conftest import ApiServer, setenv_all, wait_for
from tests.integration.test_webhooks import SECRET, Receiver
from tests.topology import ClusterSetup

APP = "tests.apps.topology:app"


def _use(setup: ClusterSetup, tmp_path: Path, monkeypatch, jobcord_env) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {"JOBCORD_REDIS_URL": setup.url, "JOBCORD_TEST_MARKS": str(marks)}
    setenv_all(monkeypatch, env)
    jobcord_env.update(env)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory) -> Iterator[ClusterSetup]:
    setup = ClusterSetup(tmp_path_factory.mktemp("cluster"))
    yield setup
    setup.close()


@pytest.fixture
def cluster(shared_cluster, tmp_path, monkeypatch, jobcord_env) -> Iterator[ClusterSetup]:
    """The module's cluster, emptied, as this test's Redis."""
    shared_cluster.flush()
    _use(shared_cluster, tmp_path, monkeypatch, jobcord_env)
    yield shared_cluster
    set_default_client(None)
    keys.use_cluster_layout(False)  # this process's next Redis is a plain one again
    shared_cluster.flush()


@pytest.fixture
def own_cluster(tmp_path, monkeypatch, jobcord_env) -> Iterator[ClusterSetup]:
    """A cluster of this test's own, with two replicas of jobcord's primary (it is killed)."""
    setup = ClusterSetup(tmp_path / "cluster", replicas=2)
    _use(setup, tmp_path, monkeypatch, jobcord_env)
    yield setup
    set_default_client(None)
    keys.use_cluster_layout(False)
    setup.close()


def _marks() -> Path:
    return Path(os.environ["JOBCORD_TEST_MARKS"])


def test_a_cluster_url_is_refused_when_malformed():
    from jobcord.storage.cluster import parse_cluster_url
    from jobcord.storage.errors import ConfigurationError

    assert parse_cluster_url("redis://127.0.0.1:6379/0") is None
    target = parse_cluster_url("rediss+cluster://u:p%40ss@a:7000,[::1]:7001?socket_timeout=2")
    assert target is not None
    assert target.nodes == (("a", 7000), ("::1", 7001)) and target.ssl
    assert (target.username, target.password, target.discovery_timeout_s) == ("u", "p@ss", 2.0)
    for bad, field in [
        ("redis+cluster://a:70000", "node address"),
        ("redis+cluster://a:7000/3", "database 0"),
        ("redis+cluster://a:7000?socket_timeout=soon", "socket_timeout"),
        ("redis+cluster://:7000", "node address"),
    ]:
        with pytest.raises(ConfigurationError, match=field):
            parse_cluster_url(bad)


def test_requests_run_retry_cancel_and_deduplicate_on_a_cluster(cluster, start_worker):
    c = jobs.client()
    worker = start_worker(APP, "--concurrency", "2")
    assert jobs.mark.run_remote("plain") == "plain"

    flaky = jobs.flaky.async_run_remote("flaky")
    assert flaky.result(timeout=30) == "flaky"
    assert c.get(flaky.request_id).attempt == 2  # through the delayed set and back

    first = jobs.mark.async_run_remote("once", idempotency_key="same")
    again = jobs.mark.async_run_remote("once", idempotency_key="same")
    assert again.request_id == first.request_id and not again.created
    assert first.result(timeout=30) == "once"
    assert jobs.runs(_marks()).count("once") == 1

    long = jobs.mark.async_run_remote("long", sleep_s=60)
    wait_for(lambda: "long" in jobs.runs(_marks()), 20, "the long job to start")
    long.cancel()
    assert long.wait(15).status is Status.CANCELED

    # Every key jobcord wrote is in its one slot, on the primary that serves it.
    for node in cluster.others:
        assert node.client().dbsize() == 0, node.client().keys()
    written = [k.decode() for k in cluster.owner.client().scan_iter(count=1000)]
    assert written and all(k.startswith(("{jobcord}:", "{jobcord}.dq:")) for k in written)
    assert any("jobcord's slot found" in line for line in worker.lines), worker.log


def test_webhooks_cron_and_replica_claims_on_a_cluster(
    cluster, start_worker, start_scheduler, monkeypatch, jobcord_env
):
    env = {
        "JOBCORD_WEBHOOK_SECRET": SECRET,
        "JOBCORD_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "JOBCORD_WEBHOOK_RETRY_SCHEDULE_S": "0.3,0.3",
    }
    setenv_all(monkeypatch, env)
    c = jobs.client()
    receiver = Receiver(fail_times=1)
    try:
        start_worker(APP, env=env)
        start_scheduler(APP, **env)
        handle = jobs.mark.async_run_remote("hook", webhook_endpoint=receiver.url)
        assert handle.result(timeout=30) == "hook"
        rec = wait_for(
            lambda: (r := handle.status()).webhook_status is WebhookStatus.DELIVERED and r,
            30,
            "the webhook to be delivered",
        )
        assert rec.webhook_attempts == 2  # one failure, then the retry
        event = verify_webhook(*receiver.calls[-1], SECRET)
        assert event["data"]["request_id"] == handle.request_id
    finally:
        receiver.close()

    # Cron: the tick's mark moves in a WATCH/MULTI transaction on the slot's primary.
    ticker = CronTicker([lifecycle.app], c.store, interval_s=1, grace_s=5)
    now = 1_900_000_001.0
    assert ticker.run_once(now) == []
    fired = ticker.run_once(now + 6)
    assert [f.outcome for f in fired] == ["submitted"]
    assert ticker.run_once(now + 6) == []
    assert c.get(fired[0].request_id).status is Status.QUEUED

    # The autoscaler's shared replica count: two hosts, one replica allowed.
    leases = ReplicaLeases(c.store.scripts, ttl_s=5)
    assert leases.acquire("topology", "host1-a", 1)
    assert not leases.acquire("topology", "host2-a", 1)
    assert leases.count("topology") == 1
    leases.release("topology", "host1-a")
    assert leases.acquire("topology", "host2-a", 1)


def test_acknowledged_submit_needs_the_slots_replica(cluster, start_worker):
    jobs.client(redis_min_replicas_ack=1, redis_ack_timeout_ms=300)
    start_worker(APP)
    assert jobs.mark.async_run_remote("acked", idempotency_key="acked").result(30) == "acked"
    pid = cluster.replicas[0].pid()
    assert pid is not None
    os.kill(pid, 19)  # SIGSTOP: the replica takes nothing, so nothing is acknowledged
    try:
        with pytest.raises(NotAcknowledged, match="0 of 1 replicas"):
            jobs.mark.async_run_remote("unconfirmed", idempotency_key="unconfirmed")
    finally:
        os.kill(pid, 18)  # SIGCONT
    wait_for(lambda: cluster._ok(), 20, "the cluster to be ok again")


def test_every_process_follows_a_cluster_failover_and_no_acknowledged_submit_is_lost(
    own_cluster, start_worker, jobcord_env
):
    ack = {"JOBCORD_REDIS_MIN_REPLICAS_ACK": "1", "JOBCORD_REDIS_ACK_TIMEOUT_MS": "500"}
    c = jobs.client(redis_min_replicas_ack=1, redis_ack_timeout_ms=500)
    worker = start_worker(APP, "--concurrency", "2", env=ack)
    api = ApiServer({**jobcord_env, **ack}, [], app_ref=APP)
    try:
        key, _ = ApiKeyStore(connect_url(own_cluster.url, decode_responses=True)).create(
            ["topology"]
        )
        assert jobs.mark.run_remote("before") == "before"
        acknowledged: dict[str, str] = {}

        def submit_all() -> None:
            for i in range(40):
                handle = jobs.submit_retrying(f"k{i}", timeout=30)
                acknowledged[f"k{i}"] = handle.request_id
                time.sleep(0.05)

        submitter = threading.Thread(target=submit_all)
        submitter.start()
        wait_for(lambda: len(acknowledged) >= 10, 30, "some acknowledged submits")
        old = own_cluster.owner.port
        own_cluster.owner.kill()  # a power cut: the cluster promotes a replica by itself
        killed_at = time.monotonic()
        new = own_cluster.wait_failover()
        submitter.join(90)
        assert not submitter.is_alive() and len(acknowledged) == 40

        for k, rid in acknowledged.items():  # each acknowledged id survived, and ran
            assert c.wait(rid, 60).status is Status.SUCCEEDED, k
            replay = jobs.mark.async_run_remote(k, idempotency_key=k)
            assert replay.request_id == rid and not replay.created  # no second request
        recovered_s = time.monotonic() - killed_at
        # A lost finish may run a request again (at least once), never a second request.
        for k in acknowledged:
            assert len({r for key_, r, _ in jobs.executions(_marks()) if key_ == k}) == 1, k

        assert worker.proc.poll() is None and api.proc.poll() is None
        reply = httpx.post(
            f"{api.url}/v1/apps/topology/jobs/mark/run_remote",
            json={"input": {"key": "http"}},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        moved = [line for line in worker.lines if "jobcord's slot moved" in line]
        assert moved and str(new.port) in moved[0] and str(old) in moved[0], worker.log
        print(f"\nfailover followed; all 40 acknowledged done {recovered_s:.1f} s after the kill")
    finally:
        api.stop()
