"""The dramatiq bridge with real dramatiq workers (``python -m dramatiq``, as teams run it), on a
Redis broker of the test's own and on RabbitMQ: actor -> GPU-class job -> completion actor,
with dramatiq workers SIGKILLed mid-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from dramatiq import Message

from jobcord.scheduler.webhooks.actors import ActorSender
from jobcord.storage.statuses import Status, WebhookStatus
from tests.conftest import (
    ROOT,
    free_port,
    ping_redis,
    service_missing,
    start_private_redis,
    wait_for,
)

KEY = "jobcord:test:bridge"


class DramatiqWorker:
    """``dramatiq tests.apps.bridge`` in a session of its own (so its whole tree can be killed)."""

    def __init__(self, queue: str, module: str = "tests.apps.bridge", out: Any = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dramatiq", module, "--processes", "1"]
            + ["--threads", "2", "--queues", queue],
            cwd=ROOT,
            start_new_session=True,
            stdout=out or subprocess.DEVNULL,
            stderr=out or subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """SIGKILL, parent and forked worker process alike (a machine lost)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def redis_broker(tmp_path) -> Iterator[str]:
    """The team's dramatiq broker: a redis-server of its own, apart from jobcord's."""
    port = free_port()
    (tmp_path / "broker").mkdir()
    start_private_redis(port, tmp_path / "broker")
    yield f"redis://127.0.0.1:{port}/0"
    if ping_redis(port):
        redis.Redis(port=port).shutdown(nosave=True)


RABBIT_DEFAULT = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture
def rabbit_broker() -> str:
    """RabbitMQ: required where ``JOBCORD_TEST_RABBITMQ_URL`` names one (CI sets it); else
    the local default when it answers, and a skip saying so when it does not."""
    import pika

    url = os.environ.get("JOBCORD_TEST_RABBITMQ_URL") or RABBIT_DEFAULT
    try:
        pika.BlockingConnection(pika.URLParameters(url + "?socket_timeout=2")).close()
    except Exception:  # noqa: BLE001 - any failure to connect means no RabbitMQ here
        if "JOBCORD_TEST_RABBITMQ_URL" in os.environ:
            service_missing(f"RabbitMQ at {url}")
        pytest.skip(f"RabbitMQ does not answer at {url}: the bridge's RabbitMQ test did not run")
    return url


@pytest.fixture
def bridge(
    jobcord_env, monkeypatch, start_worker, start_scheduler, client
) -> Iterator[Callable[[str], Bridge]]:
    made: list[Bridge] = []

    def make(broker_url: str) -> Bridge:
        queue = f"bridge-{uuid.uuid4().hex[:8]}"
        env = {
            "BRIDGE_BROKER_URL": broker_url,
            "BRIDGE_QUEUE": queue,
            "JOBCORD_DRAMATIQ_BROKER_URL": broker_url,
            "JOBCORD_WEBHOOK_RETRY_SCHEDULE_S": "0.3,0.3",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        start_worker("tests.apps.bridge:app")
        start_scheduler(**env)
        made.append(Bridge(broker_url, queue, client))
        return made[-1]

    yield make
    for b in made:
        b.close()


class Bridge:
    def __init__(self, url: str, queue: str, client: Any) -> None:
        from tests.apps.bridge import make_broker

        self.url, self.queue, self.client = url, queue, client
        self.broker = make_broker(url)
        self.r = client.redis
        self.workers: list[DramatiqWorker] = []

    def worker(self) -> DramatiqWorker:
        self.workers.append(DramatiqWorker(self.queue))
        return self.workers[-1]

    def send(self, actor: str, *args: Any, **options: Any) -> None:
        """What ``actor.send(*args)`` does in the team's code."""
        self.broker.enqueue(Message(self.queue, actor, args, {}, options))

    def items(self, name: str) -> list[str]:
        return list(self.r.lrange(f"{KEY}:{name}", 0, -1))

    def completions(self) -> list[dict[str, Any]]:
        return [json.loads(c) for c in self.items("completions")]

    def close(self) -> None:
        for w in self.workers:
            w.kill()  # a graceful stop only costs time here
        if self.url.startswith("amqp"):
            channel = self.broker.channel
            for name in (self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"):
                channel.queue_delete(name)
        self.broker.close()


def _one_request(b: Bridge) -> str:
    ids = set(b.items("submitted"))
    assert len(ids) == 1, f"one jobcord request for one actor message, got {ids}"
    return ids.pop()


def _killed_while_waiting(b: Bridge) -> str:
    """``start`` waits on a running job; its dramatiq worker is SIGKILLed; a new one takes the
    redelivered message. Returns the request id."""
    first = b.worker()
    b.send("start", "hello", 2.0)
    wait_for(lambda: b.items("runs"), 30, "the job to start")
    first.kill()
    b.worker()
    wait_for(lambda: b.completions(), 45, "the completion actor to run")
    return _one_request(b)


def _assert_once(b: Bridge, request_id: str) -> None:
    record = wait_for(
        lambda: (r := b.client.get(request_id)).on_complete_processed_at and r, 10, "processed"
    )
    assert record.status is Status.SUCCEEDED
    assert record.webhook_status is WebhookStatus.DELIVERED
    assert record.on_complete["actor"] == "collect"
    time.sleep(1.0)  # a second delivery or run would show by now
    assert b.items("runs") == ["hello"], "the GPU job ran once"
    done = b.completions()
    assert done == [
        {"tag": "tag-hello", "id": request_id, "status": "SUCCEEDED", "output": [5.0, 1.0]}
    ]


def test_redis_broker_worker_killed_midway_one_request_one_completion(redis_broker, bridge):
    b = bridge(redis_broker)
    request_id = _killed_while_waiting(b)
    _assert_once(b, request_id)
    # The redelivered ``start`` found the same request (its key is the message's id).
    assert len(b.items("submitted")) == 2


def test_rabbitmq_broker_worker_killed_midway_one_request_one_completion(rabbit_broker, bridge):
    b = bridge(rabbit_broker)
    request_id = _killed_while_waiting(b)
    _assert_once(b, request_id)


def test_completion_runs_once_however_often_it_arrives(redis_broker, bridge, monkeypatch):
    """Sent twice (a deliverer that died after the broker took it), failing once (dramatiq's
    retry), and its worker killed mid-run (redelivered after the dead claim lapses): the
    actor's logic completes once; asking for the delivery again runs it again."""
    b = bridge(redis_broker)
    b.r.set(f"{KEY}:collect_fail", 1)
    b.r.set(f"{KEY}:collect_hold", 30)
    worker = b.worker()
    b.send("start", "hello")
    wait_for(lambda: len(b.items("collect_started")) == 1, 30, "the completion actor to start")
    request_id = _one_request(b)
    # A duplicate arrives while the first run holds the claim: it is put back, not run.
    sender = ActorSender(redis_broker, "", 2.0)
    assert sender.send(b.client.get(request_id)).ok
    time.sleep(0.5)
    assert len(b.items("collect_started")) == 1
    worker.kill()  # mid-run: its claim lapses after 3 s
    b.r.set(f"{KEY}:collect_hold", 0)
    b.worker()
    wait_for(lambda: b.completions(), 45, "the completion to be processed")
    _assert_once(b, request_id)
    started = b.items("collect_started")
    assert 3 <= len(started) <= 4, started  # killed, failed once, succeeded (+ the duplicate)
    # Another duplicate after success is skipped.
    assert sender.send(b.client.get(request_id)).ok
    time.sleep(1.5)
    assert len(b.completions()) == 1
    # The operator's "deliver again" runs the logic again.
    b.client.store.webhook_again(request_id)
    wait_for(lambda: len(b.completions()) == 2, 20, "the redelivery to run")
    sender.close()


def test_job_as_actor_in_a_dramatiq_pipeline(redis_broker, bridge):
    """``actor(embed)`` sits in a pipeline: its output goes on to the next actor."""
    b = bridge(redis_broker)
    b.worker()
    sink = Message(b.queue, "sink", (), {}, {}).asdict()
    b.send("bridge.embed", "abcd", pipe_target=sink)
    wait_for(lambda: b.items("sunk"), 30, "the pipeline's next step")
    assert [json.loads(x) for x in b.items("sunk")] == [[4.0, 1.0]]
    assert b.items("runs") == ["abcd"]


def test_broker_down_delivery_retried_then_failed_with_reason(bridge, redis_broker, client):
    from tests.apps.bridge import embed

    dead = f"redis://127.0.0.1:{free_port()}/0"
    bridge(dead)
    handle = embed.async_run_remote(
        "x", on_complete={"actor": "collect", "queue": "q", "args": ["t"]}
    )
    record = wait_for(
        lambda: (r := client.get(handle.request_id)).webhook_status is WebhookStatus.FAILED and r,
        30,
        "the delivery to give up",
    )
    assert record.webhook_attempts == 3
    assert "broker refused: ConnectionError" in record.webhook_last_error


def test_the_example_runs_end_to_end(
    redis_broker, jobcord_env, monkeypatch, start_worker, start_scheduler, tmp_path
):
    """examples/dramatiq_team.py as its docstring runs it."""
    from dramatiq.brokers.redis import RedisBroker

    monkeypatch.setenv("DRAMATIQ_URL", redis_broker)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")  # its print, as it happens
    start_worker("examples.dramatiq_team:app")
    start_scheduler(JOBCORD_DRAMATIQ_BROKER_URL=redis_broker)
    out = (tmp_path / "out.txt").open("w")
    worker = DramatiqWorker("default", "examples.dramatiq_team", out)
    broker = RedisBroker(url=redis_broker)
    try:
        broker.enqueue(Message("default", "ingest", ("doc-1", "some text"), {}, {}))
        printed = wait_for(
            lambda: "doc-1:" in (text := (tmp_path / "out.txt").read_text()) and text,
            30,
            "the completion actor's line",
        )
        assert "doc-1: [0.9, " in printed
    finally:
        worker.kill()
        broker.close()
        out.close()
