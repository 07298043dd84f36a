"""The dramatiq bridge: GPU jobs called from dramatiq actors, completions as dramatiq messages.

``broker.add_middleware(JobcordMiddleware())`` on the team's broker does two things:

- inside an actor, ``job.async_run_remote(...)`` gets an idempotency key made of the
  message id and the call's position (``jobcord.producers.message_calls``): a message redelivered
  after its worker died, or retried, finds the request it made instead of starting a second
  GPU job (a request that ended unsuccessfully is run again, same id, for a retry);
- a completion message (``on_complete=actor``, sent by ``jobcord scheduler``) runs the actor's
  logic once per finished attempt, however often it arrives: the run claims the request's
  record (leased, renewed while it runs), a success marks it done, a failure hands it back to
  dramatiq's retries (``jobcord.storage.completions``).

``actor(job)`` makes a jobcord job a dramatiq actor (``.send()``, ``.message()``, pipelines,
groups): it submits the request and waits for its output, which it returns as JSON.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import SkipMessage
from pydantic_core import to_jsonable_python

from jobcord.scheduler.webhooks.actors import COMPLETION_OPTION
from jobcord.storage.completions import Claim, CompletionClaims

from .client import Client, RedisClient, default_client
from .errors import RemoteError
from .functions import RemoteFunction
from .message_calls import MessageCalls, current_message

__all__ = ["JobcordMiddleware", "actor"]

log = structlog.get_logger("jobcord.dramatiq")


class _Renewer:
    """Keeps the leases of the completion claims this process holds (one daemon thread)."""

    def __init__(self, claims: CompletionClaims, lease_s: float) -> None:
        self.claims = claims
        self.lease_s = lease_s
        self._held: dict[str, str] = {}  # token -> request id
        self._lock = threading.Lock()
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="jobcord-claims", daemon=True).start()

    def hold(self, token: str, request_id: str) -> None:
        with self._lock:
            self._held[token] = request_id

    def drop(self, token: str) -> None:
        with self._lock:
            self._held.pop(token, None)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.lease_s / 3)
            with self._lock:
                held = list(self._held.items())
            for token, request_id in held:
                try:  # a Redis outage must not end the loop: the lease is the safety net
                    if not self.claims.renew(request_id, token, self.lease_s):
                        log.warning("completion claim lost", request_id=request_id)
                except Exception as exc:  # noqa: BLE001
                    log.warning("completion claim not renewed", request_id=request_id, error=exc)


class JobcordMiddleware(dramatiq.Middleware):
    """Add to the team's broker, in every process that runs actors calling jobcord jobs or
    receiving jobcord completions. ``client``: jobcord's client (default: the SDK's, from
    ``JOBCORD_REDIS_URL``); ``claim_lease_s``: how long a dead worker's claim on a completion
    blocks its redelivery."""

    def __init__(self, *, client: Client | None = None, claim_lease_s: float = 30.0) -> None:
        self._client = client
        self.claim_lease_s = claim_lease_s
        self._renewer: _Renewer | None = None
        self._lock = threading.Lock()
        self._local = threading.local()  # the claim this worker thread holds, if any

    def _claims(self) -> _Renewer | None:
        """The claims store on jobcord's Redis; None for a client without one (HTTP): then
        a completion may run twice (at least once, as any dramatiq message)."""
        with self._lock:
            if self._renewer is None:
                client = self._client or default_client()
                if not isinstance(client, RedisClient):
                    log.warning("completions unguarded: jobcord's client has no Redis")
                    return None
                store = CompletionClaims(client.redis, functions=client.settings.redis_functions)
                self._renewer = _Renewer(store, self.claim_lease_s)
            return self._renewer

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        current_message().set(MessageCalls(message.message_id))
        self._local.claim = None
        completion = message.options.get(COMPLETION_OPTION)
        if not isinstance(completion, dict):
            return
        renewer = self._claims()
        if renewer is None:
            return
        request_id, attempt = str(completion.get("request_id")), int(completion.get("attempt", 0))
        token = uuid.uuid4().hex
        claim = renewer.claims.claim(request_id, attempt, token, self.claim_lease_s)
        if claim is Claim.DONE:
            log.info("completion already processed: skipped", request_id=request_id)
            raise SkipMessage(f"jobcord completion of {request_id} already processed")
        if claim is Claim.BUSY:
            # A live run holds it (a duplicate): look again once that run's lease could lapse,
            # without spending one of the message's retries.
            broker.enqueue(message.copy(), delay=int(self.claim_lease_s * 1000))
            raise SkipMessage(f"jobcord completion of {request_id} is being processed")
        if claim is Claim.RUN:
            renewer.hold(token, request_id)
            self._local.claim = (renewer, request_id, attempt, token)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        current_message().set(None)
        held, self._local.claim = getattr(self._local, "claim", None), None
        if held is None:
            return
        renewer, request_id, attempt, token = held
        renewer.drop(token)
        if exception is None:
            renewer.claims.done(request_id, attempt, token)
        else:
            renewer.claims.release(request_id, token)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        current_message().set(None)


def actor(
    job: RemoteFunction,
    *,
    actor_name: str | None = None,
    queue_name: str = "default",
    broker: dramatiq.Broker | None = None,
    result_timeout_s: float | None = None,
    **options: Any,
) -> dramatiq.Actor:
    """``job`` as a dramatiq actor: ``embed_actor.send(text)``, ``.message(text)`` in a
    ``pipeline`` or ``group``. It submits the request (keyed by the message: a redelivery
    waits for the same request) and returns the job's output as JSON. A job that ended
    FAILED, TIMED_OUT, CANCELED or EXPIRED is not retried by dramatiq (jobcord's own
    retries have run); anything else (an outage) is, up to dramatiq's ``max_retries``."""
    broker = broker or dramatiq.get_broker()
    spec = job.spec

    def run(*args: Any, **kwargs: Any) -> Any:
        handle = job.async_run_remote(*args, **kwargs)
        return to_jsonable_python(handle.result(timeout=result_timeout_s))

    name = actor_name or f"{spec.app}.{spec.name}"
    run.__name__ = run.__qualname__ = name
    known = broker.actor_options
    if "time_limit" in known and "time_limit" not in options:
        # Long enough for every attempt the job may make, plus an hour in its queue.
        per_attempt = spec.timeout_s or 3600.0
        options["time_limit"] = int((per_attempt * (spec.retry.retries + 1) + 3600) * 1000)
    if "retry_when" in known and "retry_when" not in options:
        limit = options.get("max_retries", 20)
        options["retry_when"] = lambda n, exc: not isinstance(exc, RemoteError) and n < limit
    made: dramatiq.Actor = dramatiq.actor(
        actor_name=name, queue_name=queue_name, broker=broker, **options
    )(run)
    return made
