"""Bearer API keys for the gateway; a key scoped to other apps sees 404, never 403."""

from __future__ import annotations

import time

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from jobcord.storage.apikeys import ApiKey, ApiKeyStore

__all__ = ["Authenticator", "DEV_KEY", "SESSION_COOKIE", "DASHBOARD_HEADER"]

#: The dashboard's browser session: the API key, in an HttpOnly, SameSite=Strict cookie that
#: lives as long as the browser session (``jobcord.producers.gateway.dashboard``).
SESSION_COOKIE = "jobcord_key"
#: A change (POST, DELETE) authorised by that cookie must carry this header: a page on
#: another site cannot set it without a CORS preflight, which this API never grants.
DASHBOARD_HEADER = "x-jobcord-dashboard"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: The principal of a gateway started without keys (development only).
DEV_KEY = ApiKey("dev-no-auth", frozenset({"*"}), 0.0)


#: A verified key is trusted this long without asking Redis again (a revocation reaches every
#: API process within it).
VERIFIED_FOR_S = 2.0
#: Keys remembered at most (only keys that verified: a flood of bad ones fills nothing).
_REMEMBERED = 10_000


class Authenticator:
    def __init__(self, keys: ApiKeyStore, *, required: bool) -> None:
        self.keys = keys
        self.required = required
        self._verified: dict[str, tuple[float, ApiKey]] = {}

    async def __call__(self, request: Request) -> ApiKey:
        """The route dependency: a key verified in the last VERIFIED_FOR_S is not asked again."""
        if not self.required:
            return DEV_KEY
        token = _token(request)
        now = time.monotonic()
        known = self._verified.get(token)
        if known is not None and known[0] > now:
            return known[1]
        key = await run_in_threadpool(self.keys.verify, token)
        if key is None:
            raise HTTPException(401, "invalid or revoked API key", {"WWW-Authenticate": "Bearer"})
        if len(self._verified) >= _REMEMBERED:
            self._verified.pop(next(iter(self._verified)))  # the oldest
        self._verified[token] = (now + VERIFIED_FOR_S, key)
        return key

    def verify(self, request: Request) -> ApiKey:
        """The same check from a worker thread (no cache)."""
        if not self.required:
            return DEV_KEY
        key = self.keys.verify(_token(request))
        if key is None:
            raise HTTPException(401, "invalid or revoked API key", {"WWW-Authenticate": "Bearer"})
        return key


def _token(request: Request) -> str:
    """The key of an ``Authorization: Bearer`` header, or else of the dashboard's cookie."""
    header = request.headers.get("authorization")
    if header is None and (cookie := request.cookies.get(SESSION_COOKIE)):
        if request.method not in _SAFE_METHODS and DASHBOARD_HEADER not in request.headers:
            raise HTTPException(403, f"a change from a dashboard session needs {DASHBOARD_HEADER}")
        return cookie
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401,
            "missing or malformed Authorization header: use 'Bearer <api key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token.strip()
