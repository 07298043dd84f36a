"""Webhook bounds against real receivers on loopback: one deadline per attempt, a few KiB of
any reply read, a slow receiver never holds up another, and no delivery can stop the loop."""

from __future__ import annotations

import json
import socket
import threading
import time
import tracemalloc

import pytest

from jobcord.scheduler.webhooks.attempt import MAX_REPLY_BYTES, post_once, webhook_http_client
from jobcord.storage.keys import record_key
from jobcord.storage.statuses import WebhookStatus
from tests.apps import lifecycle as jobs
from tests.conftest import wait_for
from tests.integration import test_webhooks as shared
from tests.integration.test_webhooks import _client, _webhook_ends

# The webhook fixtures of test_webhooks (its receiver and a scheduler with short limits).
webhook_env = shared.webhook_env
scheduler_proc = shared.scheduler_proc
receiver = shared.receiver


class RawReceiver:
    """A loopback HTTP receiver written on bare sockets, to misbehave precisely: ``trickle``
    sends its answer one byte every ``gap_s``; ``huge`` announces 400 MB and sends as fast
    as the client takes it (``sent`` counts what left)."""

    def __init__(self, mode: str, gap_s: float = 0.3) -> None:
        self.mode = mode
        self.gap_s = gap_s
        self.sent = 0
        self.requests = 0
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/hook"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                _read_request(conn)
                self.requests += 1
                if self.mode == "trickle":
                    head = (
                        b"HTTP/1.1 200 OK\r\nx-slow: "
                        + b"z" * 60
                        + b"\r\ncontent-length: 0\r\n\r\n"
                    )
                    for byte in head:
                        if self._stop.wait(self.gap_s):
                            return
                        conn.sendall(bytes([byte]))
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 400000000\r\n\r\n")
                    chunk = b"x" * 65536
                    while not self._stop.is_set() and self.sent < 400_000_000:
                        conn.sendall(chunk)
                        self.sent += len(chunk)
            except OSError:
                return  # the client hung up: what this receiver is here to show

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length")
    )
    while len(body) < length:
        body += conn.recv(65536)


@pytest.fixture
def raw_receiver():
    made: list[RawReceiver] = []

    def make(mode: str, **kw: float) -> RawReceiver:
        made.append(RawReceiver(mode, **kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _post(url: str, deadline_s: float):  # type: ignore[no-untyped-def]
    with webhook_http_client(deadline_s) as http:
        return post_once(
            http,
            url,
            content=b"{}",
            headers={"content-type": "application/json"},
            extensions={},
            deadline_s=deadline_s,
        )


def test_a_trickling_receiver_gets_one_deadline_not_one_per_read(raw_receiver):
    rx = raw_receiver("trickle", gap_s=0.2)  # each byte well within httpx's per-read timeout
    started = time.monotonic()
    attempt = _post(rx.url, 0.6)
    took = time.monotonic() - started
    assert attempt.error == "no answer within 0.6 s" and attempt.status_code is None
    assert 0.5 < took < 1.2, took  # its ~90 bytes would take ~18 s one by one


def test_a_huge_reply_is_cut_after_a_few_kib(raw_receiver):
    rx = raw_receiver("huge")
    tracemalloc.start()
    try:
        attempt = _post(rx.url, 5.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert attempt.ok and attempt.status_code == 200 and attempt.elapsed_s < 2
    assert peak < 2 * 2**20, peak  # MAX_REPLY_BYTES read, not 400 MB
    wait_for(lambda: rx.sent > 0, 5, "the receiver to send")
    time.sleep(0.3)
    assert rx.sent < 64 * 2**20, rx.sent  # the client hung up; only socket buffers filled
    assert MAX_REPLY_BYTES == 4096


def test_trickling_receiver_fails_within_its_deadlines(
    webhook_env, start_worker, scheduler_proc, raw_receiver
):
    _client()
    rx = raw_receiver("trickle", gap_s=0.2)
    start_worker(env=webhook_env)
    scheduler_proc()  # deadline 0.5 s, retries after 0.3 s x 3
    handle = jobs.echo.async_run_remote(6, webhook_endpoint=rx.url)
    finished = handle.wait(20).finished_at
    rec = _webhook_ends(handle, WebhookStatus.FAILED, 30)
    assert rec.webhook_attempts == 4 and rec.webhook_last_error == "no answer within 0.5 s"
    assert time.time() - finished < 10  # 4 attempts of 0.5 s and 3 pauses (~18 s each before)
    assert rec.webhook_last_status_code is None


def test_a_slow_receiver_never_holds_up_another(
    webhook_env, start_worker, scheduler_proc, receiver
):
    _client()
    slow, fast = receiver(hang=True), receiver()  # the slow one answers after 3 s: never
    start_worker(env=webhook_env)
    scheduler_proc(JOBCORD_WEBHOOK_CONCURRENCY="4", JOBCORD_WEBHOOK_TIMEOUT_S="2")
    for i in range(6):
        jobs.echo.async_run_remote(100 + i, webhook_endpoint=slow.url)
    wait_for(lambda: len(slow.calls) >= 2, 20, "the slow receiver to hold deliveries")
    time.sleep(0.3)
    assert len(slow.calls) == 2  # half the workers at most for one receiver
    handle = jobs.echo.async_run_remote(7, webhook_endpoint=fast.url)
    finished = handle.wait(20).finished_at
    wait_for(lambda: fast.calls, 5, "the fast receiver's delivery")
    assert time.time() - finished < 1.0  # not after the slow ones' 2 s deadline
    assert _webhook_ends(handle, WebhookStatus.DELIVERED, 5).webhook_last_status_code == 204


def test_an_unexpected_exception_fails_that_delivery_and_the_loop_goes_on(
    webhook_env, start_worker, scheduler_proc, receiver, rds
):
    _client()
    rx = receiver()
    start_worker(env=webhook_env)
    scheduler_proc(JOBCORD_HEALTH_INTERVAL_S="0.2")
    # A host in fullwidth digits resolves to loopback and goes out as plain ASCII.
    wide = rx.url.replace("127.0.0.1", "１２７.0.0.1")
    first = jobs.echo.async_run_remote(1, webhook_endpoint=wide)
    assert _webhook_ends(first, WebhookStatus.DELIVERED, 20).webhook_last_status_code == 204
    assert rx.calls[0][0]["host"] == rx.url.split("/")[2]
    # A poisoned record: its id is not ASCII, so it cannot go into the webhook-id header.
    poisoned = "ünicode-poison"
    raw = rds.hgetall(record_key(first.request_id))
    rds.hset(record_key(poisoned), mapping={**raw, "id": poisoned, "webhook_status": "PENDING"})
    rds.zadd("jobcord:webhooks:due", {poisoned: time.time()})
    wait_for(lambda: rds.hget(record_key(poisoned), "webhook_status") == "FAILED", 20, "FAILED")
    reason = rds.hget(record_key(poisoned), "webhook_last_error")
    assert reason.startswith("delivery failed unexpectedly: UnicodeEncodeError"), reason
    # The loop goes on, and the scheduler's health report counted the error.
    after = jobs.echo.async_run_remote(2, webhook_endpoint=rx.url)
    _webhook_ends(after, WebhookStatus.DELIVERED, 20)

    def webhooks_loop() -> dict | None:
        for key in rds.scan_iter("jobcord:health:*"):
            for loop in json.loads(rds.get(key))["loops"]:
                if loop["name"] == "webhooks" and loop["errors_total"]:
                    return loop
        return None

    loop = wait_for(webhooks_loop, 10, "the error in the health report")
    assert loop["errors_total"] == 1 and loop["consecutive_errors"] == 0
    assert "UnicodeEncodeError" in loop["last_error"]
    rds.delete(record_key(poisoned))


def test_non_2xx_answers_keep_their_status_code(
    webhook_env, start_worker, scheduler_proc, receiver
):
    _client()
    rx = receiver(fail_times=99, fail_code=503)
    start_worker(env=webhook_env)
    scheduler_proc()
    handle = jobs.echo.async_run_remote(3, webhook_endpoint=rx.url)
    rec = _webhook_ends(handle, WebhookStatus.FAILED, 30)
    assert rec.webhook_last_status_code == 503 and rec.webhook_last_error.startswith("HTTP 503")
    assert rec.webhook_last_ms is not None and rec.webhook_attempts == 4
