"""The Redis key schema: every key jobcord writes, documented in this one place.

``{ns}`` is the namespace (``jobcord``); ``{dq}`` is dramatiq's broker namespace
(``jobcord.dq``), whose layout we write directly so that a submission is one atomic script.

| key                              | type   | what                                              |
|----------------------------------|--------|---------------------------------------------------|
| ``{ns}:req:{id}``                | hash   | the request record (source of truth)              |
| ``{ns}:req:{id}:events``         | stream | status changes of the request, in order           |
| ``{ns}:req:{id}:chunks``         | stream | items a streaming cord produced, in order         |
| ``{ns}:req:{id}:input``         | string | a binary input (msgpack), beside the record       |
| ``{ns}:req:{id}:children``      | zset   | requests this one's job made, by creation time    |
| ``{ns}:idem:{app}:{key}``        | string | ``{request_id}|{input_hash}``, expires (24 h)     |
| ``{ns}:running``                 | zset   | running request ids scored by lease expiry (s)    |
| ``{ns}:delayed``                 | zset   | queued request ids waiting for a retry, by eta (s)|
| ``{ns}:deadlines``               | zset   | queued request ids by queue deadline (s)          |
| ``{ns}:failed:{app}``            | zset   | the dead-letter view: FAILED request ids by time  |
| ``{ns}:webhooks:due``           | zset   | request ids whose webhook is due, by time (s)     |
| ``{ns}:webhook-secrets:{app}``   | list   | the app's active webhook secrets, newest first    |
| ``{ns}:apikey:{id}``             | hash   | an API key: sha256 of its secret, apps, created   |
| ``{ns}:consumer:{worker}``       | string | a live consumer's registration (expires)          |
| ``{ns}:consumers``               | set    | worker ids that registered                        |
| ``{ns}:wake:{queue}``            | list   | wake-up tokens for idle consumers (capped at 64)  |
| ``{ns}:cron``                    | hash   | ``{app}:{job}`` -> last cron tick handled (s)     |
| ``{ns}:inflight``                | hash   | app -> requests queued or running (the app cap)   |
| ``{ns}:rate:{key_id}``           | hash   | a key's submission token bucket (tokens, at)      |
| ``{ns}:msgseq``                  | string | counter for unique broker message ids             |
| ``{ns}:cancels``                 | pubsub | request ids whose cancel was asked while running  |
| ``{dq}:{queue}``                 | list   | dramatiq: message ids waiting on a queue          |
| ``{dq}:{queue}.msgs``            | hash   | dramatiq: message id -> encoded message           |

Records and event streams of finished requests expire after ``record_retention_s``.
All multi-key changes happen inside the Lua scripts of ``storage/lua``.
"""

from __future__ import annotations

__all__ = [
    "NAMESPACE",
    "BROKER_NAMESPACE",
    "ACTOR_NAME",
    "CRON_KEY",
    "INFLIGHT_KEY",
    "record_key",
    "events_key",
    "chunks_key",
    "children_key",
    "input_key",
    "idempotency_key",
    "wake_key",
    "failed_key",
    "RUNNING_KEY",
    "DELAYED_KEY",
    "CANCELS_CHANNEL",
]

NAMESPACE = "jobcord"
#: dramatiq's RedisBroker namespace for our queues (kept apart from other dramatiq users).
BROKER_NAMESPACE = "jobcord.dq"
#: The one dramatiq actor every message is addressed to; its args are (request_id, attempt).
ACTOR_NAME = "jobcord_execute"

RUNNING_KEY = f"{NAMESPACE}:running"
DELAYED_KEY = f"{NAMESPACE}:delayed"
CANCELS_CHANNEL = f"{NAMESPACE}:cancels"
CRON_KEY = f"{NAMESPACE}:cron"
INFLIGHT_KEY = f"{NAMESPACE}:inflight"


def record_key(request_id: str) -> str:
    return f"{NAMESPACE}:req:{request_id}"


def events_key(request_id: str) -> str:
    return f"{NAMESPACE}:req:{request_id}:events"


def chunks_key(request_id: str) -> str:
    return f"{NAMESPACE}:req:{request_id}:chunks"


def input_key(request_id: str) -> str:
    return f"{NAMESPACE}:req:{request_id}:input"


def children_key(request_id: str) -> str:
    return f"{NAMESPACE}:req:{request_id}:children"


def idempotency_key(app: str, key: str) -> str:
    return f"{NAMESPACE}:idem:{app}:{key}"


def failed_key(app: str) -> str:
    return f"{NAMESPACE}:failed:{app}"


def wake_key(queue: str) -> str:
    return f"{NAMESPACE}:wake:{queue}"
