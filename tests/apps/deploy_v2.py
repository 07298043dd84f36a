"""Build 2 of tests/apps/deploy_v1.py's app: ``changed`` has a new input, ``added`` is new,
``stable`` is as it was (its code may differ: its schemas do not)."""

from __future__ import annotations

from jobcord import App

app = App("deploy")


@app.job()
def stable(x: int) -> dict:
    return {"x": x, "build": BUILD}  # same schemas as build 1: either build runs it


@app.job()
def changed(x: int, scale: int = 2) -> dict:
    return {"y": x * scale, "build": BUILD}


@app.job()
def added(name: str) -> dict:
    return {"hello": name, "build": BUILD}


BUILD = 2
