"""Results in S3 (moto's server over HTTP): blobs, large JSON, files, presigned URLs, outages."""

from __future__ import annotations

import time

import httpx
import pytest

from jobcord.producers import JobFailed
from jobcord.storage.statuses import Status
from tests.apps import lifecycle as jobs


def test_bytes_output_is_stored_in_s3_with_a_presigned_url(
    s3_env, client, start_worker, s3_client_fixture
):
    start_worker(env=s3_env)
    handle = jobs.blob.async_run_remote(5000)
    data = handle.result(timeout=20)
    assert data == bytes(i % 251 for i in range(5000))
    rec = handle.status()
    key = f"results/lifecycle/blob/{handle.request_id}/attempt-1/output"
    assert rec.result is not None and rec.result.key.endswith(
        f"{handle.request_id}/attempt-1/output"
    )
    stored = s3_client_fixture.get_object(Bucket=s3_env["JOBCORD_S3_BUCKET"], Key=key)
    assert stored["Body"].read() == data
    assert "X-Amz-Signature" in rec.result.url
    assert httpx.get(rec.result.url).content == data


def test_large_json_goes_to_s3_small_json_stays_inline(s3_env, client, start_worker):
    start_worker(env=s3_env)
    small = jobs.big.async_run_remote(10)
    large = jobs.big.async_run_remote(2000)  # > 1024 bytes of JSON
    assert small.result(timeout=20) == list(range(10))
    assert large.result(timeout=20) == list(range(2000))
    assert small.status().output == list(range(10)) and small.status().result is None
    rec = large.status()
    assert rec.output is None and rec.result.name == "output.json"
    assert rec.result.content_type == "application/json"


def test_files_written_by_the_job_are_uploaded(s3_env, client, start_worker):
    start_worker(env=s3_env)
    handle = jobs.write_files.async_run_remote(3)
    assert handle.result(timeout=20) == {"written": 3}
    rec = handle.status()
    assert [f.name for f in rec.files] == [f"nested/part-{i}.txt" for i in range(3)]
    assert all(
        f.key.startswith(f"lifecycle/write_files/{handle.request_id}/attempt-1/files/")
        for f in rec.files
    )
    assert httpx.get(rec.files[2].url).text == "part 2\n"


def test_s3_outage_fails_the_request_never_succeeds(s3_env, client, start_worker, monkeypatch):
    from tests.conftest import free_port

    dead = {
        **s3_env,
        "JOBCORD_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "JOBCORD_UPLOAD_RETRY_S": "1.0",
        "JOBCORD_MAX_INFRA_RETRIES": "1",
    }
    monkeypatch.setenv("JOBCORD_S3_ENDPOINT_URL", dead["JOBCORD_S3_ENDPOINT_URL"])
    start_worker(env=dead)
    handle = jobs.blob.async_run_remote(10)
    with pytest.raises(JobFailed, match="ResultStoreError") as info:
        handle.result(timeout=30)
    rec = info.value.record
    assert rec.status is Status.FAILED and rec.infra_failures == 1 and rec.failures == 0
    assert "S3 upload failed" in rec.error.message
    assert [(a.outcome, a.error) for a in rec.attempts] == [
        ("RETRY", "ResultStoreError"),
        ("FAILED", "ResultStoreError"),
    ]


def test_s3_outage_is_retried_until_the_store_is_back(
    s3_env, client, start_worker, s3_client_fixture
):
    # No bucket yet (as if the store were down): the first attempt cannot store its result;
    # the request waits, retries, and succeeds once the bucket is back.
    bucket = s3_env["JOBCORD_S3_BUCKET"]
    s3_client_fixture.delete_bucket(Bucket=bucket)
    start_worker(env=s3_env)
    handle = jobs.blob.async_run_remote(10)
    deadline = time.monotonic() + 20
    while handle.status().infra_failures < 1:
        assert time.monotonic() < deadline, handle.status()
        time.sleep(0.05)
    s3_client_fixture.create_bucket(Bucket=bucket)
    assert handle.result(timeout=30) == bytes(i % 251 for i in range(10))
    rec = handle.status()
    assert rec.status is Status.SUCCEEDED and rec.failures == 0
    assert rec.attempts[0].outcome == "RETRY" and rec.attempts[-1].outcome == "SUCCEEDED"


def test_missing_bucket_is_a_clear_error(s3_env, client, start_worker):
    env = {**s3_env, "JOBCORD_S3_BUCKET": "no-such-bucket-here", "JOBCORD_MAX_INFRA_RETRIES": "0"}
    start_worker(env=env)
    with pytest.raises(JobFailed, match="no-such-bucket-here"):
        jobs.blob.run_remote(10)


def test_presigned_urls_use_the_public_address(s3_env, client, start_worker, monkeypatch):
    start_worker(env=s3_env)  # workers store through the internal endpoint
    handle = jobs.blob.async_run_remote(100)
    assert handle.result(timeout=20) == bytes(i % 251 for i in range(100))
    from jobcord.producers import RedisClient
    from jobcord.storage.settings import load_settings

    monkeypatch.setenv("JOBCORD_S3_PUBLIC_URL", "https://files.example.test")
    public = RedisClient(load_settings()).get(handle.request_id)
    assert public.result.url.startswith("https://files.example.test/"), public.result.url
    assert "X-Amz-Signature" in public.result.url


def test_s3_deletes_one_attempts_prefix_only(s3_env, s3_client_fixture):
    from jobcord.storage.s3 import S3ResultStore
    from jobcord.storage.settings import load_settings

    store = S3ResultStore(load_settings())
    for key in ("a/j/r/attempt-1/output", "a/j/r/attempt-1/files/x", "a/j/r/attempt-10/output"):
        store.put_bytes(key, b"x", "text/plain")
    store.delete_prefix("a/j/r/attempt-1")
    left = s3_client_fixture.list_objects_v2(Bucket=s3_env["JOBCORD_S3_BUCKET"], Prefix="results/")
    assert [o["Key"] for o in left["Contents"]] == ["results/a/j/r/attempt-10/output"]
