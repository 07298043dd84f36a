from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobcord.scheduler import (
    NodeSelector,
    RetryPolicy,
    classify_gpu_name,
    placement_class,
    queue_name,
)


def test_cpu_when_no_selector_or_zero_gpus():
    assert placement_class(None) == "cpu"
    assert NodeSelector(gpu_count=0).gpu_classes() == ["cpu"]


def test_vram_filter_and_cheapest_first():
    classes = NodeSelector(min_vram_gb_per_gpu=40).gpu_classes()
    assert classes[:3] == ["a6000", "l40s", "a100-40gb"]
    assert "l4" not in classes and "t4" not in classes
    assert classes.index("a100") < classes.index("h100") < classes.index("h200")


def test_include_and_exclude():
    assert NodeSelector(include=["h100", "h200"]).gpu_classes() == ["h100", "h200"]
    assert "h100" not in NodeSelector(min_vram_gb_per_gpu=80, exclude=["h100"]).gpu_classes()


def test_unknown_class_and_unsatisfiable_selectors_are_refused():
    with pytest.raises(ValidationError, match="unknown GPU class"):
        NodeSelector(include=["h1000"])
    with pytest.raises(ValidationError, match="no GPU class satisfies"):
        NodeSelector(min_vram_gb_per_gpu=500)
    with pytest.raises(ValidationError):
        NodeSelector(gpu_count=9)


@pytest.mark.parametrize(
    ("name", "memory_gb", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", 80, "h100"),
        ("NVIDIA H200", 141, "h200"),
        ("NVIDIA A100-SXM4-80GB", 80, "a100"),
        ("NVIDIA A100-SXM4-40GB", 40, "a100-40gb"),
        ("NVIDIA A100-PCIE-40GB", 40, "a100-40gb"),
        ("NVIDIA A10G", 24, "a10g"),
        ("NVIDIA A10", 24, "a10"),
        ("NVIDIA L4", 24, "l4"),
        ("NVIDIA L40S", 48, "l40s"),
        ("Tesla T4", 16, "t4"),
        ("NVIDIA GeForce RTX 4090", 24, "4090"),
        ("NVIDIA RTX A6000", 48, "a6000"),
        ("Matrox G200", 1, None),
    ],
)
def test_nvml_names_map_to_classes(name, memory_gb, expected):
    assert classify_gpu_name(name, memory_gb * 2**30) == expected


def test_queue_names():
    assert queue_name("demo", "cpu") == "jobcord.demo.cpu"
    assert queue_name("demo", "h100", 2) == "jobcord.demo.h100x2"


def test_retry_policy_bounds():
    policy = RetryPolicy(retries=3, initial_delay_s=1.0, max_delay_s=5.0)
    assert policy.should_retry(3) and not policy.should_retry(4)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 5.0)]:
        delays = [policy.delay_s(failures) for _ in range(200)]
        assert min(delays) >= ceiling / 2 and max(delays) <= ceiling


def test_default_concurrency_is_one_per_gpu_group_or_one_per_usable_core():
    import os

    from jobcord.consumers.devices import _fake_devices
    from jobcord.consumers.worker import default_concurrency

    assert default_concurrency([]) == len(os.sched_getaffinity(0))
    assert default_concurrency(_fake_devices('[{"uuid": "GPU-a"}, {"uuid": "GPU-b"}]')) == 1
