"""Make a successful attempt's result durable: inline JSON, or blobs and files in the store.

Objects go under the attempt's own prefix (``jobcord.storage.results.result_prefix``), so only the
attempt whose finish wins is ever named by the record; a losing attempt's objects are removed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog

from jobcord.scheduler.outputs import JSON_TYPE
from jobcord.scheduler.payloads import MSGPACK_TYPE
from jobcord.storage.results import ResultStore, guess_type, regular_files, result_prefix

__all__ = ["AttemptId", "store_result", "stored_keys", "stays_inline"]

log = structlog.get_logger("jobcord.results")

_NAMES = {JSON_TYPE: "output.json", MSGPACK_TYPE: "output.msgpack"}


class AttemptId(Protocol):
    """Which attempt of which request: what names its objects in the result store."""

    @property
    def request_id(self) -> str: ...
    @property
    def app(self) -> str: ...
    @property
    def job(self) -> str: ...
    @property
    def attempt(self) -> int: ...


def stays_inline(content_type: str, data: bytes, inline_max_bytes: int) -> bool:
    """Whether an output is kept on the record itself rather than in the result store."""
    return content_type == JSON_TYPE and len(data) <= inline_max_bytes


def store_result(
    store: Callable[[], ResultStore],
    record: AttemptId,
    content_type: str,
    data: bytes,
    output_dir: Path | None,
    *,
    upload_files: bool,
    inline_max_bytes: int,
) -> dict[str, Any]:
    """Returns the record fields to write with SUCCEEDED (raises ResultStoreError).
    ``store`` opens the result store: only an output that does not stay inline needs it."""
    prefix = result_prefix(record.app, record.job, record.request_id, record.attempt)
    fields: dict[str, Any] = {}
    if stays_inline(content_type, data, inline_max_bytes):
        fields["output"] = data.decode()
    else:
        name = _NAMES.get(content_type, "output")
        fields["result"] = (
            store()
            .put_bytes(f"{prefix}/{name}", data, content_type)
            .model_dump(mode="json", exclude={"url"})
        )
    if upload_files and output_dir is not None and output_dir.is_dir():
        files = []
        for rel, fh in regular_files(output_dir):
            if fh is None:  # a symlink, FIFO, device or socket: never followed or read
                log.warning(
                    "output entry refused: not a regular file",
                    request_id=record.request_id,
                    path=rel,
                )
                continue
            stored = store().put_file(f"{prefix}/files/{rel}", fh, guess_type(rel))
            files.append(stored.model_copy(update={"name": rel}).model_dump(exclude={"url"}))
        fields["files"] = files
    return fields


def stored_keys(fields: dict[str, Any]) -> list[str]:
    """The result-store keys that ``store_result``'s fields name."""
    out = [f["key"] for f in fields.get("files", [])]
    if fields.get("result"):
        out.append(fields["result"]["key"])
    return out
