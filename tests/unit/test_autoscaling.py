"""The autoscaler's decisions, apart from any process: desired replicas over time, and how
a host's devices are shared among apps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobcord.scheduler.autoscaling import Autoscaling, ScaleDecider, share_devices


def test_wanted_replicas_follow_in_flight_within_min_and_max():
    p = Autoscaling(min_replicas=1, max_replicas=4, concurrency_target=2, target_utilization=0.5)
    assert [p.wanted(n) for n in (0, 1, 2, 3, 7, 100)] == [1, 1, 2, 3, 4, 4]


def test_bad_policies_are_refused_with_the_field():
    with pytest.raises(ValidationError, match="min_replicas"):
        Autoscaling(min_replicas=5, max_replicas=2)
    with pytest.raises(ValidationError, match="target_utilization"):
        Autoscaling(target_utilization=0)


def _run(d: ScaleDecider, demand: dict[int, int], until: int) -> dict[int, int]:
    """Tick once a second (as the scaler does, twice as often); demand holds until changed."""
    out, now_demand = {}, 0
    for t in range(until + 1):
        now_demand = demand.get(t, now_demand)
        out[t] = d.decide(float(t), now_demand).desired
    return out


def test_up_at_once_down_only_after_the_window_and_the_delay():
    policy = Autoscaling(max_replicas=8, target_utilization=1.0, window_s=10, scale_down_delay_s=30)
    desired = _run(ScaleDecider(policy), {0: 0, 1: 5, 2: 1}, 60)
    assert desired[0] == 0 and desired[1] == 5  # a burst: up at once
    assert desired[11] == 5  # the window (10 s) still holds the peak
    # The peak left the window at 12; the 30 s delay runs from there.
    assert desired[41] == 5 and desired[42] == 1
    d = ScaleDecider(policy)
    _run(d, {0: 5, 1: 1}, 42)
    assert d.decide(43.0, 3).desired == 3  # and up again at once


def test_a_busy_spell_within_the_delay_starts_it_again():
    policy = Autoscaling(target_utilization=1.0, window_s=1, scale_down_delay_s=10)
    desired = _run(ScaleDecider(policy), {0: 4, 5: 0, 9: 4, 10: 0}, 30)
    assert desired[15] == 4  # low since 6, but busy again at 9
    assert desired[20] == 4 and desired[22] == 0  # 10 s after the window lost 9's peak


def test_devices_are_shared_by_need_floors_first():
    # capacity 4 GPUs; a needs 4 (1 GPU each), b needs 2 (1 each): by need, 3 / 1.
    assert share_devices(4, {"a": (4, 0, 1), "b": (2, 0, 1)}) == {"a": 3, "b": 1}
    assert share_devices(2, {"a": (4, 0, 1), "b": (4, 0, 1)}) == {"a": 1, "b": 1}
    # b's floor (min replicas) is served before a's need.
    assert share_devices(2, {"a": (4, 0, 1), "b": (1, 1, 1)}) == {"a": 1, "b": 1}
    # a 2-GPU replica fits only where 2 units are left.
    assert share_devices(3, {"a": (2, 0, 2), "b": (3, 0, 1)}) == {"a": 1, "b": 1}
    # nobody needs anything: nothing is given.
    assert share_devices(8, {"a": (0, 0, 1)}) == {"a": 0}


def test_a_device_pool_hands_out_seats_on_distinct_gpus_emptiest_first():
    from jobcord.consumers.devices import Device
    from jobcord.consumers.scaler import DevicePool

    gpus = [
        Device(i, f"GPU-{i}", "NVIDIA H100 80GB HBM3", 80 * 2**30, False, "h100") for i in (0, 1)
    ]
    alone = DevicePool(gpus, 0)
    assert [d.index for d in alone.take(1)] == [0] and alone.take(2) is None
    shared = DevicePool(gpus, 0, per_device=2)
    assert shared.units == 4
    assert [d.index for d in shared.take(1)] == [0]
    assert [d.index for d in shared.take(1)] == [1]  # the emptiest GPU first
    two = shared.take(2)
    assert [d.index for d in two] == [0, 1]  # a 2-GPU replica: two distinct GPUs
    assert shared.take(1) is None and shared.free_units == 0
    shared.give(two, 2)
    assert shared.free_units == 2
    cpu = DevicePool([], 3)
    assert cpu.take(2) == [] and cpu.take(2) is None and cpu.free_units == 1
