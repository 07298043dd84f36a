"""When a healthy child is replaced anyway, and which CUDA errors poison a process."""

from __future__ import annotations

from jobcord.consumers.cuda_errors import poisons_cuda_context
from jobcord.consumers.recycling import Recycling


def test_recycling_is_off_by_default():
    assert Recycling().reason(10_000, 1) is None


def test_recycle_after_n_jobs():
    policy = Recycling(max_jobs=3)
    assert policy.reason(2, 1) is None
    assert policy.reason(3, 1) == "ran 3 jobs"


def test_recycle_on_memory_held_after_a_job():
    held = {7: 0.95, 8: 0.2}
    policy = Recycling(memory_fraction=0.9, probe=lambda pid: held.get(pid))
    assert policy.reason(1, 7) == "holds 95% of a GPU's memory after a job"
    assert policy.reason(1, 8) is None
    assert policy.reason(1, 9) is None  # unknown: keep the child


def test_sticky_cuda_errors_are_recognised():
    assert poisons_cuda_context(
        RuntimeError("CUDA error: an illegal memory access was encountered")
    )
    assert poisons_cuda_context(RuntimeError("CUDA error: device-side assert triggered"))
    try:
        try:
            raise RuntimeError("CUDA error: unspecified launch failure")
        except RuntimeError as inner:
            raise ValueError("step 3 failed") from inner
    except ValueError as outer:
        assert poisons_cuda_context(outer)
    assert not poisons_cuda_context(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not poisons_cuda_context(ValueError("bad input"))
