"""jobcord's Lua scripts called from an event loop (redis.asyncio): the async twin of
:class:`jobcord.storage.scripts.Scripts`, with the same texts, names and fallbacks.

FCALL of the function library where the server has functions (loaded on first need: a new
server, or one restarted without its data), EVALSHA of the cached script otherwise (a Redis
before 7, or an ACL that refuses FUNCTION): nothing here runs on a thread.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

import redis
import redis.asyncio as aioredis

from . import keys
from .scripts import _missing_function, _no_functions, function_library, lua_script

__all__ = ["AsyncScripts"]


@cache
def _sha(name: str) -> str:
    return hashlib.sha1(lua_script(name).encode()).hexdigest()


class AsyncScripts:
    """``await scripts("cancel", *args)``; ``functions`` False always uses EVALSHA."""

    def __init__(self, client: aioredis.Redis, *, functions: bool = True) -> None:
        self.client = client
        self._functions = functions
        self._prefix = function_library()[1]

    async def __call__(self, name: str, *args: Any) -> Any:
        return (await self.call_then(name, None, *args))[0]

    async def call_then(
        self, name: str, then: tuple[Any, ...] | None, *args: Any
    ) -> tuple[Any, Any]:
        """Run script ``name`` and, in the same write on the same connection, the command
        ``then`` (a WAIT confirms the very writes before it); both replies."""
        full = (*keys.namespaces(), *args)
        if self._functions:
            fcall = ("FCALL", self._prefix + name, 0, *full)
            try:
                return await self._send(fcall, then)
            except redis.ResponseError as exc:
                if not (_missing_function(exc) or _no_functions(exc)):
                    raise
                if _missing_function(exc) and await self._load():
                    return await self._send(fcall, then)
                self._functions = False
        evalsha = ("EVALSHA", _sha(name), 0, *full)
        try:
            return await self._send(evalsha, then)
        except redis.exceptions.NoScriptError:  # a server restarted without its script cache
            await self.client.execute_command("SCRIPT", "LOAD", lua_script(name))
            return await self._send(evalsha, then)

    async def _send(
        self, command: tuple[Any, ...], then: tuple[Any, ...] | None
    ) -> tuple[Any, Any]:
        if then is None:
            return await self.client.execute_command(*command), None
        pipe = self.client.pipeline(transaction=False)  # one write, one connection
        pipe.execute_command(*command)
        pipe.execute_command(*then)
        first, second = await pipe.execute(raise_on_error=False)
        if isinstance(first, Exception):
            raise first
        return first, second  # an error of ``then`` is the caller's to read

    async def _load(self) -> bool:
        """Load the library; False (EVALSHA from now on) where functions are refused."""
        try:
            await self.client.execute_command("FUNCTION", "LOAD", "REPLACE", function_library()[0])
        except redis.ResponseError as exc:
            if not _no_functions(exc):
                raise
            return False
        return True
