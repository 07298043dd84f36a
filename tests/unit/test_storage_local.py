from __future__ import annotations

import pytest

from jobcord.consumers.devices import _fake_devices, pinning_env, select_devices
from jobcord.storage import LocalResultStore, RequestRecord, ResultStoreError, Status, load_settings
from jobcord.storage.keys import events_key, idempotency_key, record_key, wake_key


def test_local_store_writes_atomically_and_refuses_escapes(tmp_path):
    store = LocalResultStore(tmp_path)
    stored = store.put_bytes("app/job/r1/output", b"abc", "application/octet-stream")
    assert stored.size == 3 and store.get_bytes("app/job/r1/output") == b"abc"
    assert store.url("app/job/r1/output").startswith("file://")
    assert not list(tmp_path.rglob(".partial-*"))
    src = tmp_path / "src.txt"
    src.write_text("hello")
    with src.open("rb") as fh:
        assert store.put_file("app/job/r1/files/a.txt", fh, "text/plain").size == 5
    store.delete(["app/job/r1/files/a.txt", "app/job/r1/never-written"])
    assert not (tmp_path / "app/job/r1/files/a.txt").exists()
    with pytest.raises(ResultStoreError, match="escapes"):
        store.put_bytes("../../etc/passwd", b"x", "text/plain")
    with pytest.raises(ResultStoreError, match="missing"):
        store.get_bytes("app/job/r2/output")


def test_record_parses_the_redis_hash():
    rec = RequestRecord.from_hash(
        {
            "id": "r1",
            "app": "a",
            "job": "j",
            "queue": "q",
            "status": "FAILED",
            "created_at": "1.5",
            "attempt": "2",
            "input": '{"x": 1}',
            "output": "",
            "error": '{"type": "ValueError", "message": "m"}',
            "cancel_requested": "1",
            "lease": "secret-token",
            "input_hash": "h",
        }
    )
    assert rec.status is Status.FAILED and rec.attempt == 2 and rec.cancel_requested
    public = rec.public()
    assert "input" not in public and "lease" not in public
    assert public["error"]["type"] == "ValueError"


def test_keys_and_settings_defaults(monkeypatch):
    assert record_key("r") == "jobcord:req:r" and events_key("r") == "jobcord:req:r:events"
    assert idempotency_key("app", "k") == "jobcord:idem:app:k"
    assert wake_key("jobcord.demo.cpu") == "jobcord:wake:jobcord.demo.cpu"
    monkeypatch.delenv("JOBCORD_REDIS_URL", raising=False)
    monkeypatch.setenv("JOBCORD_LEASE_TTL_S", "2.5")
    settings = load_settings()
    assert settings.redis_url is None and settings.lease_ttl_s == 2.5
    assert settings.idempotency_retention_s == 24 * 3600


def test_device_selection_and_pinning_by_uuid():
    devices = _fake_devices(
        '[{"name": "NVIDIA H100 80GB HBM3"}, {"name": "NVIDIA L4", '
        '"memory_gb": 24, "uuid": "GPU-abc"}]'
    )
    assert [d.gpu_class for d in devices] == ["h100", "l4"]
    assert select_devices("none", devices) == []
    assert select_devices("all", devices) == devices
    assert select_devices("1", devices) == [devices[1]]
    with pytest.raises(ValueError, match="no GPU with index"):
        select_devices("7", devices)
    env = pinning_env([devices[1]])
    assert env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "GPU-abc"}
    assert pinning_env([]) == {"CUDA_VISIBLE_DEVICES": ""}
