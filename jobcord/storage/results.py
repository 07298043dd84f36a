"""Where results live: the ResultStore protocol, its key naming and the local directory store.

S3 is in ``jobcord.storage.s3`` (imported only when a bucket is configured, so boto3 stays out of
processes that never store results).
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from .errors import ResultStoreError
from .records import RequestRecord, ResultFile
from .settings import Settings

__all__ = [
    "ResultStore",
    "LocalResultStore",
    "result_prefix",
    "input_key",
    "regular_files",
    "open_result_store",
    "guess_type",
    "with_urls",
    "named_keys",
]


def result_prefix(app: str, job: str, request_id: str, attempt: int) -> str:
    """An attempt's objects live under ``{app}/{job}/{request_id}/attempt-{n}/``: attempts never
    share a key, so a late attempt cannot touch what the record names (the winner's)."""
    return f"{app}/{job}/{request_id}/attempt-{int(attempt)}"


def input_key(app: str, job: str, request_id: str) -> str:
    """A large binary input, written once by the producer before any attempt."""
    return f"{app}/{job}/{request_id}/input.msgpack"


@contextmanager
def _opened_regular(name: str, dir_fd: int) -> Iterator[BinaryIO | None]:
    """``name`` in ``dir_fd`` opened without following a symlink; None unless it is a regular
    file (a FIFO or device is opened non-blocking, seen, and refused)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:  # a symlink (ELOOP), gone, or unreadable
        yield None
        return
    with os.fdopen(fd, "rb") as fh:
        yield fh if stat.S_ISREG(os.fstat(fd).st_mode) else None


def regular_files(root: Path) -> Iterator[tuple[str, BinaryIO | None]]:
    """Every entry under ``root`` that is not a directory, as (relative posix path, open file
    or None when refused). Walks by directory descriptors and never follows a symlink, so a
    job cannot make us read outside ``root`` even by swapping entries while we walk."""
    for dirpath, _dirs, names, dir_fd in os.fwalk(root, follow_symlinks=False):
        for name in sorted(names):
            rel = Path(dirpath, name).relative_to(root).as_posix()
            with _opened_regular(name, dir_fd) as fh:
                yield rel, fh


def guess_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class ResultStore(Protocol):
    def put_bytes(self, key: str, data: bytes, content_type: str) -> ResultFile: ...

    def put_file(self, key: str, fh: BinaryIO, content_type: str) -> ResultFile: ...

    def get_bytes(self, key: str) -> bytes: ...

    def delete(self, keys: list[str]) -> None: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def url(self, key: str) -> str: ...

    def local_path(self, key: str) -> Path | None:
        """The object's file when it lives on this machine's disk (a ``file://`` URL means
        nothing to an HTTP caller: the API serves such objects itself); else None."""
        ...


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

    def put_file(self, key: str, fh: BinaryIO, content_type: str) -> ResultFile:
        dest = self._commit(key, lambda out: shutil.copyfileobj(fh, out))
        return ResultFile(
            name=Path(key).name, key=key, size=dest.stat().st_size, content_type=content_type
        )

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ResultStoreError(f"result object {key!r} is missing") from exc

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


def open_result_store(settings: Settings) -> ResultStore:
    """S3 when a bucket is configured, otherwise ``{data_dir}/results``."""
    if settings.s3_bucket:
        from .s3 import S3ResultStore

        return S3ResultStore(settings)
    return LocalResultStore(settings.data_dir / "results")


def named_keys(record: RequestRecord) -> list[str]:
    """The result-store keys a record names (its output object and files)."""
    keys = [f.key for f in record.files]
    if record.result is not None:
        keys.append(record.result.key)
    return keys


def with_urls(record: RequestRecord, store: ResultStore) -> RequestRecord:
    """The record with fresh download URLs (presigned on S3) for its stored objects."""
    if record.result is None and not record.files:
        return record
    result = record.result and record.result.model_copy(
        update={"url": store.url(record.result.key)}
    )
    files = [f.model_copy(update={"url": store.url(f.key)}) for f in record.files]
    return record.model_copy(update={"result": result, "files": files})
