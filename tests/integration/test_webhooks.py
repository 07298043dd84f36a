"""Signed webhooks to a real HTTP receiver on loopback, delivered by `jobcord scheduler`."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import standardwebhooks

from jobcord.producers import WebhookVerificationError, verify_webhook
from jobcord.scheduler.webhooks import new_secret, sign
from jobcord.storage.statuses import Status, WebhookStatus
from tests.apps import lifecycle as jobs
from tests.conftest import setenv_all, wait_for

SECRET = new_secret()


class Receiver:
    """Answers `fail_times` failures (status `fail_code`), then 204; or never answers."""

    def __init__(self, fail_times: int = 0, fail_code: int = 500, hang: bool = False) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if hang:
                    time.sleep(3)
                    return
                if len(outer.calls) <= fail_times:
                    self.send_response(fail_code)
                    self.send_header("location", "http://127.0.0.1:1/elsewhere")
                    self.end_headers()
                    self.wfile.write(b"RECEIVER-SECRET-BODY")
                    return
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_env(jobcord_env, monkeypatch):
    env = {
        "JOBCORD_WEBHOOK_SECRET": SECRET,
        "JOBCORD_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "JOBCORD_WEBHOOK_RETRY_SCHEDULE_S": "0.3,0.3,0.3",
        "JOBCORD_WEBHOOK_TIMEOUT_S": "0.5",
    }
    setenv_all(monkeypatch, env)
    return {**jobcord_env, **env}


@pytest.fixture
def scheduler_proc(webhook_env, start_scheduler):
    return lambda **extra: start_scheduler(**{**webhook_env, **extra})


@pytest.fixture
def receiver():
    made = []

    def make(**kw) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _client():
    from jobcord.producers import RedisClient, set_default_client
    from jobcord.storage.settings import load_settings

    c = RedisClient(load_settings())
    set_default_client(c)
    return c


def _webhook_ends(handle, status: WebhookStatus, timeout: float = 30):
    return wait_for(
        lambda: (r := handle.status()).webhook_status is status and r,
        timeout,
        f"webhook_status {status.value}",
    )


def test_failing_receiver_gets_retries_then_one_delivery(
    webhook_env, start_worker, scheduler_proc, receiver
):
    _client()
    rx = receiver(fail_times=2)
    start_worker(env=webhook_env)
    scheduler_proc()
    handle = jobs.echo.async_run_remote(3, webhook_endpoint=rx.url)
    assert handle.result(timeout=20)["x"] == 3
    rec = _webhook_ends(handle, WebhookStatus.DELIVERED, 20)
    assert len(rx.calls) == 3 and rec.webhook_attempts == 3
    assert rec.webhook_last_status_code == 204 and rec.webhook_last_error is None
    assert len({h["webhook-id"] for h, _ in rx.calls}) == 1  # stable across retries
    headers, body = rx.calls[-1]
    event = verify_webhook(headers, body, SECRET)
    assert event["type"] == "request.completed"
    assert event["data"]["request_id"] == handle.request_id
    assert event["data"]["status"] == "SUCCEEDED" and event["data"]["output"]["x"] == 3
    # Any Standard Webhooks verifier accepts it unchanged.
    assert standardwebhooks.Webhook(SECRET).verify(body, headers)["data"]["output"]["x"] == 3


def test_receiver_that_never_answers_ends_failed_result_kept(
    webhook_env, start_worker, scheduler_proc, receiver
):
    _client()
    rx = receiver(hang=True)
    start_worker(env=webhook_env)
    scheduler_proc()
    handle = jobs.echo.async_run_remote(8, webhook_endpoint=rx.url)
    assert handle.result(timeout=20)["x"] == 8
    rec = _webhook_ends(handle, WebhookStatus.FAILED, 30)
    assert rec.webhook_attempts == 4 and "no answer within 0.5 s" in rec.webhook_last_error
    assert handle.result(timeout=5)["x"] == 8  # the result never depended on the webhook


def test_receiver_body_is_never_echoed_and_redirects_are_not_followed(
    webhook_env, start_worker, scheduler_proc, receiver
):
    _client()
    rx = receiver(fail_times=99, fail_code=302)
    start_worker(env=webhook_env)
    scheduler_proc()
    handle = jobs.echo.async_run_remote(1, webhook_endpoint=rx.url)
    rec = _webhook_ends(handle, WebhookStatus.FAILED, 30)
    assert rec.webhook_last_error.startswith("HTTP 302")
    assert "RECEIVER-SECRET-BODY" not in json.dumps(rec.public())
    assert len(rx.calls) == 4  # the redirect target was never called


def test_rotation_signs_with_every_active_secret(
    webhook_env, start_worker, scheduler_proc, receiver, rds
):
    from jobcord.storage.webhook_secrets import WebhookSecrets

    _client()
    old, new = new_secret(), new_secret()
    secrets = WebhookSecrets(rds, None)
    secrets.add("lifecycle", old)
    secrets.add("lifecycle", new)
    rx = receiver()
    start_worker(env=webhook_env)
    scheduler_proc(JOBCORD_WEBHOOK_DEFAULT_SECRET_OVERLAP_S="0")  # the default: no overlap
    handle = jobs.echo.async_run_remote(2, webhook_endpoint=rx.url)
    wait_for(lambda: rx.calls, 20, "delivery")
    headers, body = rx.calls[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify_webhook(headers, body, old) and verify_webhook(headers, body, new)
    assert standardwebhooks.Webhook(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body, SECRET)  # the default is not used once the app has its own
    secrets.retire_oldest("lifecycle")
    assert secrets.active("lifecycle") == [new]
    assert handle.status().status is Status.SUCCEEDED


def test_default_secret_keeps_signing_beside_an_apps_first_own_secret_until_retired(
    webhook_env, start_worker, scheduler_proc, receiver, rds
):
    from jobcord.storage.webhook_secrets import WebhookSecrets

    client = _client()
    own = new_secret()
    secrets = WebhookSecrets(rds, SECRET, default_overlap_s=3600)
    secrets.add("lifecycle", own)
    rx = receiver()
    start_worker(env=webhook_env)
    scheduler_proc(JOBCORD_WEBHOOK_DEFAULT_SECRET_OVERLAP_S="3600")
    handle = jobs.echo.async_run_remote(2, webhook_endpoint=rx.url)
    _webhook_ends(handle, WebhookStatus.DELIVERED, 20)
    headers, body = rx.calls[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    # A receiver still on the default and one already on the app's own both accept it.
    assert verify_webhook(headers, body, SECRET) and verify_webhook(headers, body, own)
    assert standardwebhooks.Webhook(SECRET).verify(body, headers)
    # Ending the overlap: the default stops at once, the app's own secret stays.
    assert secrets.retire_oldest("lifecycle") == "default"
    assert secrets.active("lifecycle") == [own]
    secrets.add("lifecycle", new_secret())  # a later rotation does not bring it back
    assert SECRET not in secrets.active("lifecycle")
    client.store.webhook_again(handle.request_id)
    wait_for(lambda: len(rx.calls) == 2, 20, "second delivery")
    headers, body = rx.calls[1]
    assert len(headers["webhook-signature"].split(" ")) == 2  # the two own secrets
    assert verify_webhook(headers, body, own)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body, SECRET)


def test_tampered_or_stale_deliveries_are_refused():
    body = json.dumps({"type": "request.completed", "data": {"x": 1}}).encode()
    now = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign("msg_1", now, body, [SECRET]),
    }
    assert verify_webhook(headers, body, SECRET)["data"] == {"x": 1}
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify_webhook(headers, body.replace(b"1", b"2"), SECRET)
    stale = {
        **headers,
        "webhook-timestamp": str(now - 3600),
        "webhook-signature": sign("msg_1", now - 3600, body, [SECRET]),
    }
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_webhook(stale, body, SECRET)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(body.replace(b"1", b"2"), headers)
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook({}, body, SECRET)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]/hook", "loopback"),
        ("ftp://example.com/x", "http or https"),
        ("http://user:pw@127.0.0.1/", "credentials"),
        ("http:///nohost", "no host"),
    ],
)
def test_private_and_odd_webhook_urls_are_refused_at_submit(
    jobcord_env, monkeypatch, url, needle, rds
):
    from jobcord.scheduler.webhooks import WebhookTargetRefused

    monkeypatch.setenv("JOBCORD_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("JOBCORD_WEBHOOK_ALLOWED_NETWORKS", "")
    _client()
    with pytest.raises(
        WebhookTargetRefused, match="private|loopback|link-local|http or https|credentials|no host"
    ) as info:
        jobs.echo.async_run_remote(1, webhook_endpoint=url)
    assert needle in str(info.value) or "private, loopback, link-local" in str(info.value)
    assert list(rds.scan_iter("jobcord:req:*")) == []


def test_private_url_over_http_is_a_422(api_server, api_key, monkeypatch, rds):
    import httpx

    r = httpx.post(
        f"{api_server.url}/v1/apps/lifecycle/jobs/echo/async_run_remote",
        json={"input": {"x": 1}, "webhook_endpoint": "http://192.168.1.1/x"},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert r.status_code == 422 and "resolves to 192.168.1.1" in r.json()["detail"]
    assert list(rds.scan_iter("jobcord:req:*")) == []


def test_delivery_time_check_refuses_what_is_no_longer_allowed(
    webhook_env, start_worker, scheduler_proc, receiver
):
    _client()
    rx = receiver()
    start_worker(env=webhook_env)
    scheduler_proc(JOBCORD_WEBHOOK_ALLOWED_NETWORKS="")  # the deliverer does not allow loopback
    handle = jobs.echo.async_run_remote(1, webhook_endpoint=rx.url)
    rec = wait_for(
        lambda: (r := handle.status()).webhook_status is WebhookStatus.FAILED and r, 20, "refusal"
    )
    assert "loopback" in rec.webhook_last_error and rx.calls == []


def test_redelivery_route_sends_it_again(webhook_env, start_worker, scheduler_proc, receiver, http):
    _client()
    rx = receiver()
    start_worker(env=webhook_env)
    scheduler_proc()
    handle = jobs.echo.async_run_remote(4, webhook_endpoint=rx.url)
    _webhook_ends(handle, WebhookStatus.DELIVERED, 20)
    r = http.post(f"/v1/requests/{handle.request_id}/webhook")
    assert r.status_code == 202 and r.json()["webhook_status"] == "PENDING"
    wait_for(lambda: len(rx.calls) == 2, 20, "second delivery")
    assert rx.calls[0][0]["webhook-id"] == rx.calls[1][0]["webhook-id"]
    plain = jobs.echo.async_run_remote(5)
    plain.result(timeout=20)
    assert http.post(f"/v1/requests/{plain.request_id}/webhook").status_code == 409
