"""The S3 result store (boto3), for AWS S3, MinIO, moto and other S3-compatible stores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

from .errors import ResultStoreError
from .records import ResultFile
from .settings import Settings

__all__ = ["S3ResultStore", "s3_client"]

# Codes that mean "the request itself is wrong": retrying cannot help.
_PERMANENT_CODES = {
    "NoSuchBucket",
    "NoSuchKey",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidBucketName",
    "404",
    "403",
    "400",
}


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "") not in _PERMANENT_CODES
    return isinstance(exc, BotoCoreError)


def s3_client(settings: Settings, *, endpoint_url: str | None = None) -> Any:
    # boto3 >= 1.36 sends checksums that several S3-compatible stores reject.
    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
        signature_version="s3v4",
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=config,
    )


class S3ResultStore:
    def __init__(self, settings: Settings) -> None:
        if not settings.s3_bucket:
            raise ResultStoreError("JOBCORD_S3_BUCKET is not set")
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix.strip("/")
        self.presign_expiry_s = settings.presign_expiry_s
        self.client = s3_client(settings)
        # Presigned URLs are for callers: signed for the address they reach (signing is
        # offline, so this client never connects anywhere).
        self._presigner = (
            s3_client(settings, endpoint_url=settings.s3_public_url)
            if settings.s3_public_url
            else self.client
        )
        self._transfer = TransferConfig(multipart_threshold=64 * 1024 * 1024)
        self._retrying = retry(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_delay(settings.upload_retry_s),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
            reraise=True,
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:  # type: ignore[no-untyped-def]
        try:
            return self._retrying(fn)(*args, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise ResultStoreError(f"S3 {what} failed for bucket {self.bucket!r}: {exc}") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str) -> ResultFile:
        self._call(
            "upload",
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
        )
        return ResultFile(name=Path(key).name, key=key, size=len(data), content_type=content_type)

    def put_file(self, key: str, fh: BinaryIO, content_type: str) -> ResultFile:
        start = fh.tell()
        size = os.fstat(fh.fileno()).st_size - start

        def upload() -> None:
            # s3transfer closes what it is given: each try gets its own descriptor, and
            # starts from the beginning again.
            with os.fdopen(os.dup(fh.fileno()), "rb") as own:
                own.seek(start)
                self.client.upload_fileobj(
                    own,
                    self.bucket,
                    self._key(key),
                    ExtraArgs={"ContentType": content_type},
                    Config=self._transfer,
                )

        self._call("upload", upload)
        return ResultFile(name=Path(key).name, key=key, size=size, content_type=content_type)

    def delete_prefix(self, prefix: str) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/") + "/")
        )
        try:
            found = [o["Key"] for page in pages for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise ResultStoreError(f"S3 list failed for bucket {self.bucket!r}: {exc}") from exc
        own = len(self._key(""))
        self.delete([k[own:] for k in found])

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000
            objects = [{"Key": self._key(k)} for k in keys[i : i + 1000]]
            self._call(
                "delete",
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": objects, "Quiet": True},
            )

    def get_bytes(self, key: str) -> bytes:
        reply = self._call(
            "download", self.client.get_object, Bucket=self.bucket, Key=self._key(key)
        )
        return reply["Body"].read()

    def local_path(self, key: str) -> None:
        return None  # presigned URLs work from anywhere

    def url(self, key: str) -> str:
        return self._presigner.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=int(self.presign_expiry_s),
        )
