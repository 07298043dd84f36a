"""The client for a remote gateway: only a URL and an API key, over HTTP (httpx).

Same interface as RedisClient, so ``App("demo", client=HttpClient(url, key))`` or
``set_default_client(HttpClient(...))`` makes ``fn.async_run_remote`` go over HTTP. Every
submission carries an Idempotency-Key (a fresh one when the caller gives none), which makes
retrying it after a network error safe.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from jobcord.scheduler.bounds import RESERVED_KEY_PREFIX
from jobcord.scheduler.jobspec import JobSpec
from jobcord.scheduler.payloads import MSGPACK_TYPE, is_binary, pack
from jobcord.storage.errors import JobcordError, RequestNotFound
from jobcord.storage.ids import is_request_id
from jobcord.storage.records import RequestRecord
from jobcord.storage.requests import Submission
from jobcord.storage.statuses import Status

from .client import CANCEL_WAIT_S, SubmitOptions
from .errors import ResultTimeout

__all__ = ["HttpClient", "GatewayError"]


class GatewayError(JobcordError):
    """The gateway refused a call; ``http_status`` and ``detail`` say why."""

    def __init__(self, status: int, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"gateway answered {status}: {detail}")
        self.http_status = status
        self.detail = detail
        #: The gateway's Retry-After (429, 503), in seconds.
        self.retry_after_s = retry_after_s


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, GatewayError) and exc.http_status in (502, 503, 504)


class HttpClient:
    def __init__(
        self, base_url: str, api_key: str | None, *, timeout_s: float = 30.0, attempts: int = 4
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)
        self._attempts = attempts

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                response = self.http.request(method, path, **kwargs)
                if response.status_code >= 400:
                    try:
                        detail = response.json().get("detail", response.text)
                    except ValueError:
                        detail = response.text
                    if response.status_code == 404 and path.startswith("/v1/requests/"):
                        raise RequestNotFound(path.split("/")[3])
                    raise GatewayError(
                        response.status_code,
                        json.dumps(detail) if not isinstance(detail, str) else detail,
                        _retry_after(response),
                    )
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    def submit(self, spec: JobSpec, input_json: dict[str, Any], opts: SubmitOptions) -> Submission:
        body = {"input": input_json, **opts.request_options()}
        key = opts.idempotency_key or f"auto-{uuid.uuid4().hex}"
        if key.startswith(RESERVED_KEY_PREFIX):  # ours (a child call): HTTP refuses those
            key = f"sdk-{key}"
        headers = {"Idempotency-Key": key}
        if is_binary(input_json):  # bytes and arrays go raw, as msgpack
            sent: dict[str, Any] = {"content": pack(body)}
            headers["Content-Type"] = MSGPACK_TYPE
        else:
            sent = {"json": body}
        reply = self._call(
            "POST",
            f"/v1/apps/{spec.app}/jobs/{spec.name}/async_run_remote",
            headers=headers,
            **sent,
        ).json()
        return Submission(request_id=reply["request_id"], created=reply.get("created", True))

    def get(self, request_id: str) -> RequestRecord:
        return RequestRecord.model_validate(self._call("GET", _path(request_id)).json())

    def rerun_unless_succeeded(self, request_id: str) -> None:
        status = self.get(request_id).status
        if status.is_terminal and status is not Status.SUCCEEDED:
            self._call("POST", f"{_path(request_id)}/retry")

    def cancel(self, request_id: str, wait_s: float = CANCEL_WAIT_S) -> Status:
        try:
            reply = self._call(  # the server waits up to wait_s for a running request to stop
                "DELETE", _path(request_id), params={"wait": wait_s}, timeout=wait_s + 30
            ).json()
        except GatewayError as exc:
            if exc.http_status == 409:  # already ended: report how
                return self.get(request_id).status
            raise
        return Status(reply["status"])

    def wait(self, request_id: str, timeout_s: float | None) -> RequestRecord:
        """Follow the request's server-sent events (no polling) until it ends."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise ResultTimeout(request_id, timeout_s, self.get(request_id).status)
            try:
                if self._follow(request_id, remaining):
                    return self.get(request_id)
            except httpx.ReadTimeout:
                continue
            except GatewayError as exc:
                if exc.http_status != 429:
                    raise
                # The gateway holds as many open streams as it may: look, then follow later.
                record = self.get(request_id)
                if record.status.is_terminal:
                    return record
                pause = exc.retry_after_s or 1.0
                time.sleep(max(0.0, min(pause, remaining if remaining is not None else pause)))
            except httpx.TransportError:
                time.sleep(0.5)  # the gateway restarts: follow again

    def _follow(self, request_id: str, remaining: float | None) -> bool:
        timeout = httpx.Timeout(5.0, read=remaining if remaining is not None else None)
        with self.http.stream("GET", f"{_path(request_id)}/events", timeout=timeout) as r:
            if r.status_code == 404:
                raise RequestNotFound(request_id)
            if r.status_code >= 400:
                r.read()
                raise GatewayError(r.status_code, r.text, _retry_after(r))
            for line in r.iter_lines():
                if line.startswith("data:"):
                    status = Status(json.loads(line[5:])["status"])
                    if status.is_terminal:
                        return True
        return False

    def fetch(self, record: RequestRecord) -> bytes:
        return self._call("GET", f"{_path(record.request_id)}/output").content


def _path(request_id: str) -> str:
    """The request's URL path; an id that is not one is not found (and never a path)."""
    if not is_request_id(request_id):
        raise RequestNotFound(request_id)
    return f"/v1/requests/{request_id}"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
