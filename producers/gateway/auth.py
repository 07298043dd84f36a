"""Bearer API keys for the gateway; a key scoped to other apps sees 404, never 403."""

from __future__ import annotations

from fastapi import HTTPException, Request

from storage.apikeys import ApiKey, ApiKeyStore

__all__ = ["Authenticator", "DEV_KEY"]

#: The principal of a gateway started without keys (development only).
DEV_KEY = ApiKey("dev-no-auth", frozenset({"*"}), 0.0)


class Authenticator:
    def __init__(self, keys: ApiKeyStore, *, required: bool) -> None:
        self.keys = keys
        self.required = required

    def __call__(self, request: Request) -> ApiKey:
        if not self.required:
            return DEV_KEY
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401,
                "missing or malformed Authorization header: use 'Bearer <api key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = self.keys.verify(token.strip())
        if key is None:
            raise HTTPException(401, "invalid or revoked API key", {"WWW-Authenticate": "Bearer"})
        return key
