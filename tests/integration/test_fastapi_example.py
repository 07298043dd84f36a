"""The README's "Call jobs from your own FastAPI app", as written: its api.py over the tour's
myapp.py, a real worker and real Redis, served in-process by httpx's ASGITransport inside
the app's own lifespan, 16 requests at once on one event loop among them."""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
import time
from typing import Any

import httpx

from tests.conftest import ROOT, WorkerProcess
from tests.integration.test_readme_tour import _tour_app


def _api_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Call jobs from your own FastAPI app") :]
    return re.search(r"```python\n(# api\.py.*?)```", section, re.S).group(1)


async def _exercise(api: Any) -> None:
    body = {"values": [1, 2, 3, 4]}
    want = [0.5, -2.0, 6.0, 1.0]
    transport = httpx.ASGITransport(app=api)
    async with (
        api.router.lifespan_context(api),  # as uvicorn runs it: aclose() at its end
        httpx.AsyncClient(transport=transport, base_url="http://api", timeout=60) as http,
    ):
        assert (await http.post("/embed", json=body)).json() == want

        later = await http.post("/embed/later", params={"order": "42"}, json=body)
        assert later.status_code == 202
        request_id = later.json()["request_id"]
        again = await http.post("/embed/later", params={"order": "42"}, json=body)
        assert again.json()["request_id"] == request_id  # the same order, one request
        deadline = time.monotonic() + 30
        while (got := await http.get(f"/embed/{request_id}")).status_code == 202:
            assert time.monotonic() < deadline, "the queued request did not finish"
            await asyncio.sleep(0.05)  # the test polls; the route itself only looks once
        assert got.status_code == 200 and got.json() == {"output": want}
        assert (await http.get("/embed/no-such-request")).status_code == 404

        started = time.monotonic()
        calls = [http.post("/embed", json={"values": [i, 1, 1, 1]}) for i in range(16)]
        answers = await asyncio.gather(*calls)
        took = time.monotonic() - started
        assert [a.json()[0] for a in answers] == [0.5 * i for i in range(16)]
        assert took < 20, took


def test_the_fastapi_example_calls_jobs_from_its_routes(tmp_path, jobcord_env, client):
    (tmp_path / "myapp.py").write_text(_tour_app())
    (tmp_path / "api.py").write_text(_api_example())
    env = {**jobcord_env, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    worker = WorkerProcess("myapp:app", env, ["--drain", "2"])
    sys.path.insert(0, str(tmp_path))
    try:
        api = importlib.import_module("api").api
        worker.wait_ready()
        asyncio.run(_exercise(api))
    finally:
        worker.stop()
        sys.path.remove(str(tmp_path))
        for name in ("api", "myapp"):
            sys.modules.pop(name, None)
