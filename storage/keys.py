"""The Redis key schema: every key jobcord writes, documented in this one place.

``{ns}`` is the namespace (``jobcord``); ``{dq}`` is the queues' namespace (``jobcord.dq``,
named when jobcord's queues were dramatiq's; the lists keep that layout).

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
| ``{ns}:recent:{app}``            | zset   | the app's newest request ids by creation (capped) |
| ``{ns}:webhooks:due``           | zset   | request ids whose webhook is due, by time (s)     |
| ``{ns}:webhook-secrets:{app}``   | list   | the app's active webhook secrets, newest first    |
| ``{ns}:webhook-secrets-since:{app}``| string | when its first own secret came (s); the default |
|                                  |        | secret signs beside it for an overlap period      |
| ``{ns}:apikey:{id}``             | hash   | an API key: sha256 of its secret, apps, created   |
| ``{ns}:consumer:{worker}``       | string | a live consumer's registration (expires)          |
| ``{ns}:consumers``               | set    | worker ids that registered                        |
| ``{ns}:health:{process}``        | string | a process's loop health report, JSON (expires)    |
| ``{ns}:health``                  | set    | process ids that published a health report        |
| ``{ns}:wake:{queue}``            | list   | wake-up tokens for idle consumers (capped at 64)  |
| ``{ns}:wake-child:{child}``      | list   | wakes one idle child process for its parent       |
| ``{ns}:cron``                    | hash   | ``{app}:{job}`` -> last cron tick handled (s)     |
| ``{ns}:inflight``                | hash   | app -> requests queued or running (the app cap)   |
| ``{ns}:rate:{key_id}``           | hash   | a key's submission token bucket (tokens, at)      |
| ``{ns}:cancels``                 | pubsub | request ids whose cancel was asked while running  |
| ``{ns}:replicas:{app}``          | zset   | the app's warm replicas on every host, by lease   |
|                                  |        | expiry (s): the autoscaler's shared count         |
| ``{dq}:{queue}``                 | list   | messages waiting on a queue at priority 1         |
| ``{dq}:{queue}.p0`` / ``.p2``    | list   | messages waiting at priority 0 / 2                |
| ``{dq}:{queue}.msgs``            | hash   | before 0.2 only: dramatiq's encoded messages      |

A message is ``{request id}.{attempt}.{enqueued at, ms}``: the record is the source of truth,
so a message needs nothing else. The fetch script pops it and starts its attempt in one step
(a lease in ``{ns}:running``), which is what a broker's ack set would otherwise track.

Records and event streams of finished requests expire after ``record_retention_s``.
All multi-key changes happen inside the Lua scripts of ``storage/lua``; they name keys only
through the ``key_*`` functions generated from :data:`TEMPLATES` (``lua_key_functions``).
"""

from __future__ import annotations

__all__ = [
    "NAMESPACE",
    "BROKER_NAMESPACE",
    "CRON_KEY",
    "INFLIGHT_KEY",
    "record_key",
    "events_key",
    "chunks_key",
    "children_key",
    "input_key",
    "idempotency_key",
    "wake_key",
    "child_wake_key",
    "failed_key",
    "rate_key",
    "recent_key",
    "replicas_key",
    "webhook_secrets_key",
    "webhook_secrets_since_key",
    "apikey_key",
    "consumer_key",
    "CONSUMERS_KEY",
    "health_key",
    "HEALTH_KEY",
    "WEBHOOKS_DUE_KEY",
    "queue_key",
    "enqueued_at",
    "RUNNING_KEY",
    "DELAYED_KEY",
    "CANCELS_CHANNEL",
    "TEMPLATES",
    "lua_key_functions",
]

NAMESPACE = "jobcord"
#: The queues' namespace (named when they were dramatiq's; the lists keep that layout).
BROKER_NAMESPACE = "jobcord.dq"

#: Every key name, as a template: ``{ns}`` / ``{dq}`` are the namespaces above and ``{}`` a
#: part known only at run time (a request id, an app, a queue). The Python helpers below and
#: the Lua scripts' key functions (generated by :func:`lua_key_functions`) both come from
#: this table, so no script spells a key name of its own.
TEMPLATES: dict[str, str] = {
    "record": "{ns}:req:{}",
    "events": "{ns}:req:{}:events",
    "chunks": "{ns}:req:{}:chunks",
    "input": "{ns}:req:{}:input",
    "children": "{ns}:req:{}:children",
    "idempotency": "{ns}:idem:{}:{}",
    "running": "{ns}:running",
    "delayed": "{ns}:delayed",
    "deadlines": "{ns}:deadlines",
    "failed": "{ns}:failed:{}",
    "recent": "{ns}:recent:{}",
    "webhooks_due": "{ns}:webhooks:due",
    "webhook_secrets": "{ns}:webhook-secrets:{}",
    "webhook_secrets_since": "{ns}:webhook-secrets-since:{}",
    "cron": "{ns}:cron",
    "inflight": "{ns}:inflight",
    "rate": "{ns}:rate:{}",
    "apikey": "{ns}:apikey:{}",
    "consumer": "{ns}:consumer:{}",
    "consumers": "{ns}:consumers",
    "health": "{ns}:health:{}",
    "health_index": "{ns}:health",
    "wake": "{ns}:wake:{}",
    "cancels": "{ns}:cancels",
    "wake_child": "{ns}:wake-child:{}",
    "replicas": "{ns}:replicas:{}",
    # The queues, one list per priority level:
    "queue_list": "{dq}:{}",  # priority 1
    "queue_p0": "{dq}:{}.p0",
    "queue_p2": "{dq}:{}.p2",
    # Before 0.2 a message also lived in dramatiq's hash: fetch removes what is left there.
    "queue_msgs": "{dq}:{}.msgs",
}


def _fill(name: str, *parts: str) -> str:
    template = TEMPLATES[name].replace("{ns}", NAMESPACE).replace("{dq}", BROKER_NAMESPACE)
    pieces = template.split("{}")
    if len(parts) != len(pieces) - 1:
        raise ValueError(f"key {name!r} takes {len(pieces) - 1} part(s), got {len(parts)}")
    out = pieces[0]
    for part, piece in zip(parts, pieces[1:], strict=True):
        out += part + piece
    return out


def lua_key_functions() -> str:
    """Lua for the scripts' prelude: ``key_NAME(part, ...)`` for every template, its literal
    text rendered from :data:`TEMPLATES` (the scripts never write a key name themselves)."""
    lines = ["-- Generated from storage/keys.py TEMPLATES: the only source of key names."]
    for name in TEMPLATES:
        template = TEMPLATES[name].replace("{ns}", NAMESPACE).replace("{dq}", BROKER_NAMESPACE)
        pieces = template.split("{}")
        params = [f"p{i}" for i in range(len(pieces) - 1)]
        expr = repr(pieces[0]) if pieces[0] else ""
        for param, piece in zip(params, pieces[1:], strict=True):
            expr = f"{expr} .. {param}" if expr else param
            if piece:
                expr += f" .. {piece!r}"
        lines.append(f"local function key_{name}({', '.join(params)}) return {expr} end")
    return "\n".join(lines) + "\n"


RUNNING_KEY = _fill("running")
DELAYED_KEY = _fill("delayed")
CANCELS_CHANNEL = _fill("cancels")
CRON_KEY = _fill("cron")
INFLIGHT_KEY = _fill("inflight")


def record_key(request_id: str) -> str:
    return _fill("record", request_id)


def events_key(request_id: str) -> str:
    return _fill("events", request_id)


def chunks_key(request_id: str) -> str:
    return _fill("chunks", request_id)


def input_key(request_id: str) -> str:
    return _fill("input", request_id)


def children_key(request_id: str) -> str:
    return _fill("children", request_id)


def idempotency_key(app: str, key: str) -> str:
    return _fill("idempotency", app, key)


def failed_key(app: str) -> str:
    return _fill("failed", app)


def recent_key(app: str) -> str:
    return _fill("recent", app)


def wake_key(queue: str) -> str:
    return _fill("wake", queue)


def child_wake_key(child: str) -> str:
    return _fill("wake_child", child)


def replicas_key(app: str) -> str:
    return _fill("replicas", app)


def rate_key(key_id: str) -> str:
    return _fill("rate", key_id)


def webhook_secrets_key(app: str) -> str:
    return _fill("webhook_secrets", app)


def webhook_secrets_since_key(app: str) -> str:
    return _fill("webhook_secrets_since", app)


def apikey_key(key_id: str) -> str:
    return _fill("apikey", key_id)


def consumer_key(worker_id: str) -> str:
    return _fill("consumer", worker_id)


CONSUMERS_KEY = _fill("consumers")
HEALTH_KEY = _fill("health_index")
WEBHOOKS_DUE_KEY = _fill("webhooks_due")


def health_key(process_id: str) -> str:
    return _fill("health", process_id)


def queue_key(queue: str, priority: int = 1) -> str:
    """The list a request of this priority waits on."""
    return _fill({0: "queue_p0", 2: "queue_p2"}.get(priority, "queue_list"), queue)


def enqueued_at(message_id: str) -> float | None:
    """When a message was put on its queue (epoch seconds), from its id; None for a message
    from before 0.2 (its third part was a sequence number)."""
    parts = message_id.rsplit(".", 1)
    if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) < 1_000_000_000_000:
        return None
    return int(parts[1]) / 1000
