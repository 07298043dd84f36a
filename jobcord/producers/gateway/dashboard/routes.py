"""``/dashboard``: server-rendered pages of the API's app, kept live by server-sent events.

Auth is the API's: a key typed once on the login page rides in an HttpOnly, SameSite=Strict
session cookie; the buttons (cancel, retry, re-deliver a webhook) call the API's own routes
with it (``jobcord.producers.gateway.auth``). A live page holds one event stream, which re-renders
its sections every second and sends those that changed; it holds one of the key's wait
places (``JOBCORD_API_MAX_WAITS_PER_KEY``) and ends after ``_STREAM_FOR_S`` (the browser
reconnects by itself), so no tab left open holds anything for ever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from jobcord.storage.apikeys import ApiKey
from jobcord.storage.statuses import Status

from ..auth import DEV_KEY, SESSION_COOKIE
from ..context import Gateway
from ..holds import HeldStream
from ..requests import served_here, sse
from .filters import SINCE_CHOICES, FilterError, RequestFilter
from .render import Renderer
from .views import (
    apps_view,
    consumers_view,
    failures_view,
    queues_view,
    request_view,
    requests_view,
)

__all__ = ["dashboard_router", "mount_dashboard_static"]

HERE = Path(__file__).parent
#: A live page's stream is re-rendered this often.
_TICK_S = 1.0
#: A stream ends after this long; EventSource reconnects (and re-authenticates) by itself.
_STREAM_FOR_S = 600.0
#: The login form's body, at most (a key and a path).
_LOGIN_MAX_BYTES = 4096


def mount_dashboard_static(api: Any) -> None:
    api.mount("/dashboard/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")


def dashboard_router(gw: Gateway) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    pages = Renderer(HERE / "templates", auth_required=gw.auth.required)

    async def key_of(request: Request) -> ApiKey | None:
        """The session's key; None when there is none or it no longer verifies."""
        if not gw.auth.required:
            return DEV_KEY
        if SESSION_COOKIE not in request.cookies and "authorization" not in request.headers:
            return None
        try:
            return await gw.auth(request)
        except HTTPException:
            return None

    def to_login(request: Request) -> Response:
        """A browser goes to the login page; any other client gets the API's own 401."""
        if "text/html" not in request.headers.get("accept", ""):
            raise HTTPException(
                401,
                "an API key is needed: 'Authorization: Bearer <key>', or sign in at "
                "/dashboard/login",
                {"WWW-Authenticate": "Bearer"},
            )
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/dashboard/login?{urlencode({'next': here})}", 303)

    def sections(view: str, query: dict[str, str], key: ApiKey) -> dict[str, str]:
        """The live sections of a page, rendered (run in a worker thread: Redis reads)."""
        if view == "overview":
            f = RequestFilter.parse(query, gw.app.name)
            _check_app(gw, f.app, key)
            # Only what the key may see: this API's app's queues, the consumers of its apps.
            live = [c for c in gw.consumers.live() if key.allows(c.get("app", ""))]
            hidden: dict[str, Any] = {"queues": [], "replicas": None}
            queues = queues_view(gw, live) if key.allows(gw.app.name) else hidden
            consumers = consumers_view(gw, live)
            return {
                "queues": pages.render("_queues.html", **queues),
                "consumers": pages.render("_consumers.html", consumers=consumers),
                "requests": pages.render("_requests.html", rows=requests_view(gw, f), f=f),
            }
        if view == "failures":
            app = RequestFilter.parse({"app": query.get("app", "")}, gw.app.name).app
            _check_app(gw, app, key)
            here = app == gw.app.name
            return {"failures": pages.render("_failures.html", **failures_view(gw, app), here=here)}
        if view == "request":
            record = gw.record_for(query.get("id", ""), key, urls=True)
            record = served_here(record, gw.client.results, "")
            return {"request": pages.render("_request.html", **request_view(gw, record))}
        raise FilterError(f"view: {view[:40]!r} is not one of overview, failures, request")

    def page(
        key: ApiKey,
        template: str,
        view: str,
        query: dict[str, str],
        error: str | None = None,
        **extra: Any,
    ) -> Response:
        """A page with its live sections; ``error`` (a filter the page could not use) is
        shown above them with status 400, and those sections show the unfiltered view."""
        stream = "/dashboard/stream?" + urlencode({"view": view, **query})
        status = 400 if error else 200
        try:
            parts = sections(view, query, key)
        except FilterError as exc:
            parts, status, error, stream = {}, 400, str(exc), ""
        except HTTPException as exc:  # a request this key cannot see, or none by that id
            parts, status, error, stream = {}, exc.status_code, str(exc.detail), ""
        if error and view == "overview":
            parts.pop("requests", None)  # a list under a filter it did not apply would lie
        html = pages.render(template, parts=parts, error=error, stream=stream or None, **extra)
        return HTMLResponse(html, status)

    @router.get("/dashboard")
    async def overview(request: Request) -> Response:
        key = await key_of(request)
        if key is None:
            return to_login(request)
        query, error = dict(request.query_params), None
        apps = await run_in_threadpool(apps_view, gw, key.allows)
        try:
            f = RequestFilter.parse(query, gw.app.name)
            _check_app(gw, f.app, key)
        except FilterError as exc:
            f, query, error = RequestFilter(gw.app.name), {}, str(exc)
        extra = {"apps": apps, "f": f, "since_choices": SINCE_CHOICES, "statuses": _STATUSES}
        return await run_in_threadpool(
            page, key, "overview.html", "overview", query, error, **extra
        )

    @router.get("/dashboard/failures")
    async def failures(request: Request) -> Response:
        key = await key_of(request)
        if key is None:
            return to_login(request)
        query = {"app": request.query_params.get("app", gw.app.name)}
        apps = await run_in_threadpool(apps_view, gw, key.allows)
        return await run_in_threadpool(
            page, key, "failures.html", "failures", query, apps=apps, app=query["app"]
        )

    @router.get("/dashboard/requests/{request_id}")
    async def request_page(request_id: str, request: Request) -> Response:
        key = await key_of(request)
        if key is None:
            return to_login(request)
        return await run_in_threadpool(
            page, key, "request.html", "request", {"id": request_id}, rid=request_id
        )

    @router.get("/dashboard/stream")
    async def stream(request: Request) -> Response:
        key = await key_of(request)
        if key is None:
            raise HTTPException(401, "sign in at /dashboard/login")
        query = dict(request.query_params)
        view = query.pop("view", "")
        try:
            first = await run_in_threadpool(sections, view, query, key)
        except FilterError as exc:
            raise HTTPException(422, str(exc)) from None

        async def events() -> AsyncIterator[str]:
            # Everything once at the start: what changed between the page and this stream
            # (or during a reconnect) shows at once.
            sent: dict[str, str] = {}
            now = first
            until = time.monotonic() + _STREAM_FOR_S
            while True:
                for name, html in now.items():
                    if sent.get(name) != html:
                        sent[name] = html
                        yield sse(html, name)
                yield sse("", "fine")
                if time.monotonic() >= until or await request.is_disconnected():
                    return
                await asyncio.sleep(_TICK_S)
                if await key_of(request) is None:  # revoked: cached at most VERIFIED_FOR_S
                    yield sse("signed out: the API key is no longer valid", "gone")
                    return
                try:
                    now = await run_in_threadpool(sections, view, query, key)
                except HTTPException as exc:  # the request expired, the key was revoked
                    yield sse(str(exc.detail), "gone")
                    return
                except Exception as exc:  # noqa: BLE001 - Redis away: say so, try again
                    yield sse(f"{type(exc).__name__}: {exc}"[:300], "trouble")
                    now = {}

        release = gw.waits.acquire(key.key_id)
        return HeldStream(events(), release, media_type="text/event-stream")

    @router.get("/dashboard/login")
    def login_page(next: str = "/dashboard") -> Response:
        return HTMLResponse(pages.render("login.html", next=_local(next), error=None))

    @router.post("/dashboard/login")
    async def login(request: Request) -> Response:
        _same_site_only(request)  # no page elsewhere signs a browser in with its own key
        body = await request.body()
        if len(body) > _LOGIN_MAX_BYTES:
            raise HTTPException(413, f"login form over {_LOGIN_MAX_BYTES} bytes")
        form = parse_qs(body.decode("utf-8", "replace"))
        token = (form.get("key") or [""])[0].strip()
        goto = _local((form.get("next") or ["/dashboard"])[0])
        key = await run_in_threadpool(gw.auth.keys.verify, token) if token else None
        if key is None:
            error = "That API key is not valid (or was revoked)." if token else "Type a key."
            html = pages.render("login.html", next=goto, error=error)
            return HTMLResponse(html, 401)
        response = RedirectResponse(goto, 303)
        secure = request.url.scheme == "https" or _forwarded_https(request)
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/"
        )
        return response

    @router.post("/dashboard/logout")
    def logout(request: Request) -> Response:
        _same_site_only(request)
        response = RedirectResponse("/dashboard/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router


_STATUSES = tuple(s.value for s in Status)


def _check_app(gw: Gateway, app: str, key: ApiKey) -> None:
    """An app the key may not see reads as one with no requests: a filter message, not a 404."""
    if not key.allows(app):
        raise FilterError(f"app: no app named {app!r} for this key")


def _local(path: str) -> str:
    """Where a login may send the browser: a dashboard path of this site, nothing else."""
    ok = path.startswith("/dashboard") and not path.startswith("//") and "\\" not in path
    return path if ok and len(path) < 2000 else "/dashboard"


def _same_site_only(request: Request) -> None:
    """A form posted from another site is refused (login CSRF): browsers say where a
    request comes from in Sec-Fetch-Site (and Origin); a client that sends neither is no
    browser on another site."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:  # modern browsers: their word (a proxy may rewrite Host)
        if fetch_site not in ("same-origin", "none"):
            raise HTTPException(403, "sign in from this site's own login page")
        return
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise HTTPException(403, "sign in from this site's own login page")


def _forwarded_https(request: Request) -> bool:
    return request.headers.get("x-forwarded-proto", "").lower() == "https"
