"""The async client on Sentinel and on Redis Cluster: the same submit (with its WAIT for
replicas, in the same write, when submits must be acknowledged) and the same wait."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

import jobcord
from jobcord.storage.errors import NotAcknowledged
from tests.apps import topology as jobs
from tests.integration import test_cluster, test_sentinel

APP = "tests.apps.topology:app"

# Their fixtures: a Sentinel-watched primary with replicas; the module's cluster, emptied.
sentinels = test_sentinel.sentinels
shared_cluster = test_cluster.shared_cluster
cluster = test_cluster.cluster


async def _acked_then_refused(replica_pid: int) -> None:
    try:
        handle = await jobs.mark.asubmit("acked", idempotency_key="acked")
        assert await handle.aresult(timeout=30) == "acked"
        assert await jobs.mark.arun_remote("plain", timeout=30) == "plain"
        os.kill(replica_pid, signal.SIGSTOP)  # the replica takes nothing: no acknowledgement
        try:
            with pytest.raises(NotAcknowledged, match="0 of 1 replicas"):
                await jobs.mark.asubmit("unconfirmed", idempotency_key="unconfirmed")
        finally:
            os.kill(replica_pid, signal.SIGCONT)
    finally:
        await jobcord.aclose()


def test_async_submit_and_wait_through_sentinel(sentinels, start_worker):
    jobs.client(redis_min_replicas_ack=1, redis_ack_timeout_ms=300)
    start_worker(APP)
    pid = sentinels.replicas[0].pid()
    assert pid is not None
    asyncio.run(_acked_then_refused(pid))


def test_async_submit_and_wait_on_a_cluster(cluster, start_worker):
    jobs.client(redis_min_replicas_ack=1, redis_ack_timeout_ms=300)
    start_worker(APP)
    pid = cluster.replicas[0].pid()
    assert pid is not None
    asyncio.run(_acked_then_refused(pid))
