"""The Redis key schema: every key jobcord writes, documented in this one place.

``{ns}`` is the namespace (``jobcord``); ``{dq}`` is the queues' namespace (``jobcord.dq``,
named when jobcord's queues were dramatiq's; the lists keep that layout). On a Redis Cluster
(``redis+cluster://``) they are ``{jobcord}`` and ``{jobcord}.dq``: the hash tag puts every
key jobcord writes in one slot, so each script stays single-slot (storage/cluster.py).

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
| ``{ns}:webhooks:wake``          | list   | a token per newly due delivery: wakes a deliverer |
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
| ``{dq}:{queue}.parked:{job@ver}``| list   | messages of job version ``ver`` that a consumer of|
|                                  |        | another version took and set aside (rolling deploy)|
| ``{dq}:{queue}.parked``          | set    | the ``job@ver`` whose parked list is not empty    |
| ``{ns}:parked-queues``           | set    | queues with parked messages (maintenance prunes   |
|                                  |        | those whose request ended meanwhile)              |

A message is ``{request id}.{attempt}.{enqueued at, ms}``: the record is the source of truth,
so a message needs nothing else. The fetch script pops it and starts its attempt in one step
(a lease in ``{ns}:running``), which is what a broker's ack set would otherwise track.

Records and event streams of finished requests expire after ``record_retention_s``.
All multi-key changes happen inside the Lua scripts of ``storage/lua``; they name keys only
through the ``key_*`` functions generated from :data:`TEMPLATES` (``lua_key_functions``).
"""

from __future__ import annotations

__all__ = [
    "PLAIN_NAMESPACES",
    "CLUSTER_NAMESPACES",
    "HASH_TAG",
    "use_cluster_layout",
    "namespaces",
    "cluster_layout",
    "running_key",
    "delayed_key",
    "cancels_channel",
    "cron_key",
    "inflight_key",
    "consumers_key",
    "health_index_key",
    "webhooks_due_key",
    "webhooks_wake_key",
    "record_key",
    "events_key",
    "chunks_key",
    "children_key",
    "input_key",
    "idempotency_key",
    "wake_key",
    "parked_key",
    "parked_index_key",
    "parked_queues_key",
    "child_wake_key",
    "failed_key",
    "rate_key",
    "recent_key",
    "replicas_key",
    "webhook_secrets_key",
    "webhook_secrets_since_key",
    "apikey_key",
    "consumer_key",
    "health_key",
    "queue_key",
    "enqueued_at",
    "TEMPLATES",
    "lua_key_functions",
]

import os
import re

#: The two layouts: one server or Sentinel, and a Redis Cluster (one hash tag for all keys).
PLAIN_NAMESPACES = ("jobcord", "jobcord.dq")
CLUSTER_NAMESPACES = ("{jobcord}", "{jobcord}.dq")
#: The hash tag of the cluster layout: the slot of ``HASH_TAG`` holds every key.
HASH_TAG = "jobcord"


def _from_environment() -> tuple[str, str]:
    # The process's URL decides before anything connects: a key computed early (at import,
    # before the client exists) must already be in the layout the URL implies.
    url = os.environ.get("JOBCORD_REDIS_URL", "")
    return CLUSTER_NAMESPACES if url.split("://", 1)[0].endswith("+cluster") else PLAIN_NAMESPACES


_namespaces = _from_environment()


def use_cluster_layout(on: bool = True) -> None:
    """Name every key in the cluster layout (``on``) or the plain one, for this process:
    connecting to a ``redis+cluster://`` URL turns it on (storage.connection)."""
    global _namespaces
    _namespaces = CLUSTER_NAMESPACES if on else PLAIN_NAMESPACES


def namespaces() -> tuple[str, str]:
    """(the namespace, the queues' namespace) of this process's layout."""
    return _namespaces


def cluster_layout() -> bool:
    return _namespaces == CLUSTER_NAMESPACES


#: Names from before the cluster layout (module constants then), read in the current layout:
#: ``keys.RUNNING_KEY`` still works; an import-time copy (``from keys import ...``) would not
#: follow a layout change, hence functions.
_FORMER_CONSTANTS = {
    "NAMESPACE": lambda: _namespaces[0],
    "BROKER_NAMESPACE": lambda: _namespaces[1],
    "RUNNING_KEY": lambda: _fill("running"),
    "DELAYED_KEY": lambda: _fill("delayed"),
    "CANCELS_CHANNEL": lambda: _fill("cancels"),
    "CRON_KEY": lambda: _fill("cron"),
    "INFLIGHT_KEY": lambda: _fill("inflight"),
    "CONSUMERS_KEY": lambda: _fill("consumers"),
    "HEALTH_KEY": lambda: _fill("health_index"),
    "WEBHOOKS_DUE_KEY": lambda: _fill("webhooks_due"),
}


def __getattr__(name: str) -> str:
    if name in _FORMER_CONSTANTS:
        return _FORMER_CONSTANTS[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "webhooks_wake": "{ns}:webhooks:wake",
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
    # Rolling deploys: messages a consumer could not run (another version of their job),
    # set aside per job version for the consumers that run it, and the index of those sets.
    "queue_parked": "{dq}:{}.parked:{}",
    "queue_parked_index": "{dq}:{}.parked",
    "parked_queues": "{ns}:parked-queues",
}


def _fill(name: str, *parts: str) -> str:
    ns, dq = _namespaces
    template = TEMPLATES[name].replace("{ns}", ns).replace("{dq}", dq)
    pieces = template.split("{}")
    if len(parts) != len(pieces) - 1:
        raise ValueError(f"key {name!r} takes {len(pieces) - 1} part(s), got {len(parts)}")
    out = pieces[0]
    for part, piece in zip(parts, pieces[1:], strict=True):
        out += part + piece
    return out


def lua_key_functions() -> str:
    """Lua for the scripts' prelude: ``key_NAME(part, ...)`` for every template, rendered from
    :data:`TEMPLATES` (the scripts never write a key name themselves). The namespaces are the
    upvalues ``ns`` and ``dq``, set from ARGV[1] and ARGV[2] on every call, so one library
    serves both layouts."""
    lines = [
        "-- Generated from jobcord/storage/keys.py TEMPLATES: the only source of key names.",
        "local ns, dq",
    ]
    for name in TEMPLATES:
        # "{ns}:req:{}:events" -> ns .. ':req:' .. p0 .. ':events'
        params = [f"p{i}" for i in range(TEMPLATES[name].count("{}"))]
        slots = iter(params)
        terms = []
        for part in re.split(r"(\{ns\}|\{dq\}|\{\})", TEMPLATES[name]):
            if part in ("{ns}", "{dq}"):
                terms.append(part[1:-1])
            elif part == "{}":
                terms.append(next(slots))
            elif part:
                terms.append(repr(part))
        body = " .. ".join(terms)
        lines.append(f"local function key_{name}({', '.join(params)}) return {body} end")
    return "\n".join(lines) + "\n"


def running_key() -> str:
    return _fill("running")


def delayed_key() -> str:
    return _fill("delayed")


def cancels_channel() -> str:
    return _fill("cancels")


def cron_key() -> str:
    return _fill("cron")


def inflight_key() -> str:
    return _fill("inflight")


def consumers_key() -> str:
    return _fill("consumers")


def health_index_key() -> str:
    return _fill("health_index")


def webhooks_due_key() -> str:
    return _fill("webhooks_due")


def webhooks_wake_key() -> str:
    return _fill("webhooks_wake")


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


def parked_key(queue: str, job_version: str) -> str:
    """``job_version`` is ``{job}@{version}``."""
    return _fill("queue_parked", queue, job_version)


def parked_index_key(queue: str) -> str:
    return _fill("queue_parked_index", queue)


def parked_queues_key() -> str:
    return _fill("parked_queues")


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
