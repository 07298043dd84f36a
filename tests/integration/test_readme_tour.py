"""The README's five-minute tour, as written, on a CPU machine: its app, a worker, the CLI
submit and the Python calls (the README stays true)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT, WorkerProcess


def _tour_app() -> str:
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## Five-minute tour") :]
    return re.search(r"```python\n(# myapp\.py\n.*?)```", tour, re.S).group(1)


def test_the_tour_runs_on_a_cpu_machine(tmp_path, jobcord_env):
    (tmp_path / "myapp.py").write_text(_tour_app())
    env = {**jobcord_env, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    worker = WorkerProcess("myapp:app", env, ["--drain", "2"])
    try:
        worker.wait_ready()
        done = subprocess.run(
            [sys.executable, "-m", "jobcord.cli", "submit", "myapp:app", "embed", "--input",
             '{"values": [1, 2, 3, 4]}', "--wait"],
            cwd=tmp_path, env={**os.environ, **env}, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "SUCCEEDED" in done.stdout and "[0.5, -2.0, 6.0, 1.0]" in done.stdout, done.stdout
        assert "log.txt" in done.stdout  # the uploaded file
    finally:
        worker.stop()
