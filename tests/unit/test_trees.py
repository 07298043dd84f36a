"""Process trees (real processes, no services), memory sizes, and the limit's wording."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobcord.consumers.cgroups import detect
from jobcord.consumers.limits import format_bytes, out_of_memory_message
from jobcord.consumers.trees import MARKER_ENV, ProcessTree, marker_of, proc_table, reap
from jobcord.scheduler.bounds import memory_size

_TREE = """
import os, subprocess, sys, time
out = sys.argv[1]
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
if os.fork() == 0:           # a daemon: fork, setsid, fork again
    os.setsid()
    if os.fork() == 0:
        open(out, "a").write(f"{os.getpid()}\\n")
        time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    info = proc_table().get(pid)
    return info is not None and info.state != "Z"


def test_a_tree_is_found_by_session_and_marker_and_killed_whole(tmp_path: Path) -> None:
    out = tmp_path / "daemon"
    marker = f"test/{os.getpid()}"
    root = subprocess.Popen(
        [sys.executable, "-c", _TREE, str(out)],
        env={**os.environ, MARKER_ENV: marker},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        daemon = int(out.read_text().split()[0])
        # The daemon left the session and its parent died: only its marker names it, and
        # only an adopter (here: nobody, so it went to init) could see it by descent.
        assert marker_of(daemon) == marker
        tree = ProcessTree(root.pid, marker, adopter=proc_table()[daemon].ppid)
        members = tree.members()
        assert root.pid in members and daemon in members and len(members) >= 3
        killed = tree.kill()
        assert members <= killed
        root.wait(5)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in killed - {root.pid}) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(_alive(p) for p in killed - {root.pid})
        reap(killed)
    finally:
        if root.poll() is None:
            root.kill()
            root.wait()


def test_memory_sizes_are_bytes_with_a_named_error() -> None:
    assert memory_size("memory_limit", "2GiB") == 2 * 2**30
    assert memory_size("memory_limit", "512MiB") == 512 * 2**20
    assert memory_size("memory_limit", "8G") == 8 * 2**30
    assert memory_size("memory_limit", 64 * 2**20) == 64 * 2**20
    assert memory_size("memory_limit", None) is None
    for bad in ("lots", "2XB", "nanGiB", "-1GiB", "1KiB", "100TiB"):
        with pytest.raises(ValueError, match="memory_limit"):
            memory_size("memory_limit", bad)


def test_out_of_memory_names_its_limit() -> None:
    assert out_of_memory_message(2 * 2**30) == "out of memory: limit 2 GiB"
    assert out_of_memory_message(1536 * 2**20) == "out of memory: limit 1.5 GiB"
    assert format_bytes(256 * 2**20) == "256 MiB"


def test_cgroups_can_be_turned_off() -> None:
    off = detect("off")
    assert off.tree_root is None and off.memory_mode == "rlimit"
    assert "RLIMIT_DATA" in off.describe()["memory"]
