"""The dashboard over HTTP (login, filters, the live stream, cookie rules) and in a real
browser: Debian's chromium, driven by Playwright through ``executable_path``."""

from __future__ import annotations

import contextlib
import html
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs
from tests.conftest import service_missing

APP = "tests.apps.lifecycle:app"


@contextlib.contextmanager
def _signed_in(api_server, api_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=30) as browser:
        r = browser.post("/dashboard/login", data={"key": api_key, "next": "/dashboard"})
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "max-age" not in cookie
        yield browser


def test_pages_need_a_key_and_a_wrong_one_is_told(api_server, api_key):
    with httpx.Client(base_url=api_server.url, timeout=30) as anon:
        assert anon.get("/dashboard").status_code == 401  # an API client: the API's answer
        wrong = anon.get("/dashboard", headers={"Authorization": "Bearer jc_nope"})
        assert wrong.status_code == 401
        keyed = anon.get("/dashboard", headers={"Authorization": f"Bearer {api_key}"})
        assert keyed.status_code == 200 and "Queues" in keyed.text  # the API's own auth
        browser = {"Accept": "text/html,application/xhtml+xml"}
        r = anon.get("/dashboard/failures?app=lifecycle", headers=browser)
        assert r.status_code == 303
        assert (
            r.headers["location"]
            == "/dashboard/login?next=%2Fdashboard%2Ffailures%3Fapp%3Dlifecycle"
        )
        forged = anon.post(
            "/dashboard/login",
            data={"key": api_key, "next": "/dashboard"},
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert forged.status_code == 403  # no other site signs a browser in (login CSRF)
        r = anon.post("/dashboard/login", data={"key": "jc_nope", "next": "https://evil.example/"})
        assert r.status_code == 401 and "not valid" in r.text
        assert 'value="/dashboard"' in r.text  # a login never sends the browser off-site
        assert anon.get("/dashboard/stream?view=overview").status_code == 401


def test_overview_lists_requests_and_bad_filters_get_a_message(
    client, api_server, api_key, start_worker
):
    start_worker(APP)
    done = jobs.echo.async_run_remote(7)
    done.result(timeout=20)
    with _signed_in(api_server, api_key) as browser:
        page = browser.get("/dashboard")
        assert page.status_code == 200
        assert done.request_id in page.text and "SUCCEEDED" in page.text
        assert "jobcord.lifecycle.cpu" in page.text  # the queue table
        assert "heartbeat" in page.text  # the live consumer
        only_failed = browser.get("/dashboard", params={"status": "FAILED", "job": "echo"})
        assert only_failed.status_code == 200 and done.request_id not in only_failed.text
        for query, field in (
            ({"status": "DONE"}, "status: 'DONE' is not one of"),
            ({"since": "yesterday"}, "since: a number and a unit"),
            ({"job": "<script>"}, "job: letters, digits"),
            ({"limit": "100000"}, "limit: a whole number"),
            ({"app": "someone-elses"}, "app: no app named 'someone-elses'"),
        ):
            bad = browser.get("/dashboard", params=query)
            assert bad.status_code == 400, query
            assert field in html.unescape(bad.text), query
            assert "<script>" not in bad.text.split("<main>")[1]  # escaped, never markup
            assert "jobcord.lifecycle.cpu" in bad.text  # the rest of the page still shows
        r = browser.get("/dashboard/requests/nope")
        assert r.status_code == 404 and "no request with id" in r.text


def test_a_cookie_change_needs_the_dashboard_header(client, api_server, api_key, start_worker):
    handle = jobs.always_fails.async_run_remote("x")
    start_worker(APP)
    assert handle.wait(20).status is Status.FAILED
    with _signed_in(api_server, api_key) as browser:
        url = f"/v1/requests/{handle.request_id}/retry"
        refused = browser.post(url)  # what a form on another site could send
        assert refused.status_code == 403 and "x-jobcord-dashboard" in refused.text
        assert browser.post(url, headers={"X-Jobcord-Dashboard": "1"}).status_code == 202


def test_a_key_sees_only_its_apps_consumers(client, rds, api_server, start_worker):
    from jobcord.storage.apikeys import ApiKeyStore

    start_worker()  # a consumer of app lifecycle
    other, _ = ApiKeyStore(rds).create(["some-other-app"])
    headers = {"Authorization": f"Bearer {other}"}
    with httpx.Client(base_url=api_server.url, timeout=30, headers=headers) as c:
        page = c.get("/dashboard", params={"app": "some-other-app"})
        assert page.status_code == 200
        assert "jobcord.lifecycle" not in page.text and "heartbeat" not in page.text


def test_a_revoked_key_ends_its_live_stream(client, rds, api_server, start_worker):
    from jobcord.storage.apikeys import ApiKeyStore

    store = ApiKeyStore(rds)
    key, record = store.create(["lifecycle"])
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=api_server.url, timeout=30, headers=headers) as c,
        c.stream("GET", "/dashboard/stream", params={"view": "overview"}) as s,
    ):
        lines = s.iter_lines()
        assert next(line for line in lines if line.startswith("event: ")) == "event: queues"
        store.revoke(record.key_id)
        started = time.monotonic()
        assert any(line == "event: gone" for line in lines)  # then the stream ends
        assert time.monotonic() - started < 10


def test_the_stream_sends_sections_as_they_change(client, api_server, api_key, start_worker):
    handle = jobs.echo.async_run_remote(1)
    with (
        _signed_in(api_server, api_key) as browser,
        browser.stream(
            "GET", "/dashboard/stream", params={"view": "request", "id": handle.request_id}
        ) as s,
    ):
        assert s.headers["content-type"].startswith("text/event-stream")
        start_worker(APP)
        seen = ""
        for line in s.iter_lines():
            seen += line + "\n"
            if 'id="request-status">SUCCEEDED' in seen:
                break
        assert "event: request" in seen


# -- in a real browser -----------------------------------------------------------------------
def _chromium() -> str:
    path = os.environ.get("JOBCORD_TEST_CHROMIUM") or shutil.which("chromium")
    if not path:
        service_missing("Debian's chromium (apt install chromium)")
    return str(path)


@pytest.fixture
def page(api_server):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1360, "height": 900})
        finally:
            browser.close()


def test_in_a_browser_requests_go_live_to_succeeded_and_retry_reruns(
    client, rds, api_server, api_key, start_worker, page, tmp_path
):
    from playwright.sync_api import expect

    start_worker(APP)
    start_worker(APP, "--gpus", "all", env={"JOBCORD_FAKE_GPUS": _FAKE_H100})  # its GPU shows
    page.goto(f"{api_server.url}/dashboard")
    page.fill("input[name=key]", api_key)
    page.click("button[type=submit]")
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)

    # Submitted after the page loaded: rows appear and turn SUCCEEDED without a reload.
    handles = [jobs.echo.async_run_remote(i) for i in range(3)]
    for h in handles:
        row = page.locator(f'tr[data-request="{h.request_id}"]')
        expect(row).to_have_attribute("data-status", "SUCCEEDED", timeout=20_000)
    gpu = page.locator("article.consumer", has_text="GPU-h100-dash")
    expect(gpu).to_contain_text("21.5 GiB / 80.0 GiB")
    expect(gpu).to_contain_text("37 %")

    # A failed request: the failures view groups it; Retry runs it again (and now it works).
    failed = jobs.picky.async_run_remote("dash-retry", "value")
    assert failed.wait(20).status is Status.FAILED
    page.goto(f"{api_server.url}/dashboard/failures")
    group = page.locator('details[data-error-type="ValueError"]')
    expect(group).to_contain_text(failed.request_id, timeout=10_000)
    page.locator(f'tr[data-request="{failed.request_id}"] button').click()
    expect(page.locator("#flash")).to_contain_text("done", timeout=10_000)
    assert failed.wait(20).status is Status.SUCCEEDED
    assert int(rds.get("jobcord:test:count:dash-retry")) == 2

    page.goto(f"{api_server.url}/dashboard/requests/{failed.request_id}")
    expect(page.locator("#request-status")).to_have_text("SUCCEEDED")
    expect(page.locator("table").first).to_contain_text("ValueError")  # attempt 1's error
    shots = Path(os.environ.get("JOBCORD_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "dashboard-request.png"), full_page=True)
    page.goto(f"{api_server.url}/dashboard")
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
    assert (shots / "dashboard.png").stat().st_size > 10_000
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")  # the system's dark mode: the page follows
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light == "rgb(255, 255, 255)" and dark != light, (light, dark)
    page.screenshot(path=str(shots / "dashboard-dark.png"), full_page=True)


_FAKE_H100 = (
    '[{"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80, "uuid": "GPU-h100-dash",'
    ' "used_gb": 21.5, "utilization": 0.37}]'
)
