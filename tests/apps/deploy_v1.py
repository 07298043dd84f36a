"""Build 1 of an app in a rolling deploy (tests/integration/test_rolling_deploy.py); build 2
is tests/apps/deploy_v2.py. ``stable`` is the same in both; ``changed`` takes a new input in
build 2; ``added`` exists only in build 2."""

from __future__ import annotations

from jobcord import App

app = App("deploy")


@app.job()
def stable(x: int) -> dict:
    return {"x": x, "build": BUILD}


@app.job()
def changed(x: int) -> dict:
    return {"y": x + 1, "build": BUILD}


BUILD = 1
