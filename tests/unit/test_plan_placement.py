"""Which queues a consumer serves: its own class's, and others' as a fallback."""

from __future__ import annotations

import pytest

from jobcord.producers import App, NodeSelector
from jobcord.scheduler.placement import plan_placement


def _app() -> App:
    app = App("placement")

    @app.job(node_selector=NodeSelector(min_vram_gb_per_gpu=40))  # a6000 is cheapest
    def big_model() -> None: ...

    @app.job(node_selector=NodeSelector(include=["h100"]))
    def h100_only() -> None: ...

    @app.job(node_selector=NodeSelector(min_vram_gb_per_gpu=40, exclude=["h100"]))
    def never_h100() -> None: ...

    @app.job(node_selector=NodeSelector(gpu_count=2, include=["h100"]))
    def two_gpus() -> None: ...

    @app.job()
    def cpu_work() -> None: ...

    return app


def test_own_queues_and_fallbacks_of_an_h100_consumer():
    app = App("fallback")

    @app.job(node_selector=NodeSelector(min_vram_gb_per_gpu=40))  # a6000 is cheapest
    def big_model() -> None: ...

    plan = plan_placement(app, "h100", device_count=1)
    assert (plan.own, plan.fallback) == ([], ["jobcord.fallback.a6000"])
    assert plan_placement(app, "a6000", device_count=1).own == ["jobcord.fallback.a6000"]
    assert plan_placement(app, "l4", device_count=1).fallback == []  # 24 GB < 40 GB


def test_exclude_is_never_bent():
    # big_model and never_h100 share the a6000 queue; never_h100 excludes h100, so an h100
    # consumer does not fall back onto that queue at all.
    app = _app()
    assert app.jobs["big_model"].queue == app.jobs["never_h100"].queue
    plan = plan_placement(app, "h100", device_count=1)
    assert plan.own == ["jobcord.placement.h100"] and plan.fallback == []
    assert plan.too_big == ["two_gpus"]


def test_children_get_as_many_gpus_as_the_largest_job_needs():
    plan = plan_placement(_app(), "h100", device_count=8)
    assert plan.gpus_per_child == 2
    assert plan.own == ["jobcord.placement.h100", "jobcord.placement.h100x2"]
    assert plan.too_big == []
    assert plan_placement(_app(), "h100", 8, gpus_per_child=1).too_big == ["two_gpus"]
    with pytest.raises(ValueError, match="gpus-per-child"):
        plan_placement(_app(), "h100", 1, gpus_per_child=2)


def test_cpu_consumer_serves_cpu_jobs_only():
    plan = plan_placement(_app(), "cpu", device_count=0)
    assert (plan.own, plan.fallback, plan.gpus_per_child) == (["jobcord.placement.cpu"], [], 0)
