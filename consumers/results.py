"""Make a successful attempt's result durable: inline JSON, or blobs and files in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scheduler.outputs import JSON_TYPE
from scheduler.payloads import MSGPACK_TYPE
from storage.records import RequestRecord
from storage.results import ResultStore, guess_type, result_prefix

__all__ = ["store_result"]

_NAMES = {JSON_TYPE: "output.json", MSGPACK_TYPE: "output.msgpack"}


def store_result(
    store: ResultStore,
    record: RequestRecord,
    content_type: str,
    data: bytes,
    output_dir: Path | None,
    *,
    upload_files: bool,
    inline_max_bytes: int,
) -> dict[str, Any]:
    """Returns the record fields to write with SUCCEEDED (raises ResultStoreError)."""
    prefix = result_prefix(record.app, record.job, record.request_id)
    fields: dict[str, Any] = {}
    if content_type == JSON_TYPE and len(data) <= inline_max_bytes:
        fields["output"] = data.decode()
    else:
        name = {JSON_TYPE: "output.json", MSGPACK_TYPE: "output.msgpack"}.get(
            content_type, "output"
        )
        fields["result"] = store.put_bytes(f"{prefix}/{name}", data, content_type).model_dump(
            mode="json", exclude={"url"}
        )
    if upload_files and output_dir is not None and output_dir.is_dir():
        files = []
        for path in sorted(p for p in output_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(output_dir).as_posix()
            stored = store.put_file(f"{prefix}/files/{rel}", path, guess_type(rel))
            files.append(stored.model_copy(update={"name": rel}).model_dump(exclude={"url"}))
        fields["files"] = files
    return fields
