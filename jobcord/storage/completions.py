"""Claims on a request's completion message, taken by the dramatiq actor that runs it.

A completion message may reach the team's dramatiq workers more than once: the deliverer
sends it again when it died between the broker's accept and its own record of it, and a
broker redelivers what a dead worker held. The actor's logic runs once per finished attempt
all the same: a run claims the request's record (``on_complete_claim``, leased and renewed
while it runs), a success marks the attempt done, a failure gives the claim back for the
retry. A claim whose holder died lapses after its lease. (``storage/lua/completion.lua``.)
"""

from __future__ import annotations

from enum import StrEnum

import redis

from .scripts import Scripts

__all__ = ["Claim", "CompletionClaims"]


class Claim(StrEnum):
    RUN = "run"  # claimed: run the actor's logic
    DONE = "done"  # it already ran for this attempt: skip the message
    BUSY = "busy"  # a live run holds it: try again later
    MISSING = "missing"  # no such request (expired): run, nothing to guard


class CompletionClaims:
    def __init__(self, client: redis.Redis, *, functions: bool = True) -> None:
        self.scripts = Scripts(client, functions=functions)

    def claim(self, request_id: str, attempt: int, token: str, lease_s: float) -> Claim:
        return Claim(self.scripts("completion", "claim", request_id, attempt, token, lease_s))

    def renew(self, request_id: str, token: str, lease_s: float) -> bool:
        return bool(self.scripts("completion", "renew", request_id, token, lease_s))

    def done(self, request_id: str, attempt: int, token: str) -> None:
        self.scripts("completion", "done", request_id, attempt, token)

    def release(self, request_id: str, token: str) -> None:
        self.scripts("completion", "release", request_id, token)
