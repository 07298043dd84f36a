"""Where results live: the ResultStore protocol, its key naming and the local directory store.

S3 is in ``storage.s3`` (imported only when a bucket is configured, so boto3 stays out of
processes that never store results).
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from .errors import ResultStoreError
from .records import RequestRecord, ResultFile
from .settings import Settings

__all__ = [
    "ResultStore",
    "LocalResultStore",
    "result_prefix",
    "open_result_store",
    "guess_type",
    "with_urls",
]


def result_prefix(app: str, job: str, request_id: str) -> str:
    """Every object of one request lives under ``{app}/{job}/{request_id}/``."""
    return f"{app}/{job}/{request_id}"


def guess_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class ResultStore(Protocol):
    def put_bytes(self, key: str, data: bytes, content_type: str) -> ResultFile: ...

    def put_file(self, key: str, path: Path, content_type: str) -> ResultFile: ...

    def get_bytes(self, key: str) -> bytes: ...

    def url(self, key: str) -> str: ...


class LocalResultStore:
    """A directory on disk: the embedded default. Writes are atomic and fsynced."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ResultStoreError(f"result key {key!r} escapes the result directory")
        return path

    def _commit(self, key: str, write) -> Path:  # type: ignore[no-untyped-def]
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    def put_bytes(self, key: str, data: bytes, content_type: str) -> ResultFile:
        self._commit(key, lambda fh: fh.write(data))
        return ResultFile(name=Path(key).name, key=key, size=len(data), content_type=content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> ResultFile:
        def copy(fh) -> None:  # type: ignore[no-untyped-def]
            with path.open("rb") as src:
                shutil.copyfileobj(src, fh)

        dest = self._commit(key, copy)
        return ResultFile(
            name=Path(key).name, key=key, size=dest.stat().st_size, content_type=content_type
        )

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ResultStoreError(f"result object {key!r} is missing") from exc

    def url(self, key: str) -> str:
        return self._path(key).as_uri()


def open_result_store(settings: Settings) -> ResultStore:
    """S3 when a bucket is configured, otherwise ``{data_dir}/results``."""
    if settings.s3_bucket:
        from .s3 import S3ResultStore

        return S3ResultStore(settings)
    return LocalResultStore(settings.data_dir / "results")


def with_urls(record: RequestRecord, store: ResultStore) -> RequestRecord:
    """The record with fresh download URLs (presigned on S3) for its stored objects."""
    if record.result is None and not record.files:
        return record
    result = record.result and record.result.model_copy(
        update={"url": store.url(record.result.key)}
    )
    files = [f.model_copy(update={"url": store.url(f.key)}) for f in record.files]
    return record.model_copy(update={"result": result, "files": files})
