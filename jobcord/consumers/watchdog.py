"""The small reaper that outlives a consumer killed with SIGKILL, and ends what it left.

A job process dies with its consumer (``PR_SET_PDEATHSIG``), but its helpers do not: they
are re-parented to init (or the next subreaper up) and hold their GPU memory on. So each
consumer process starts one watchdog (``python consumers/watchdog.py``, standard library
only, in a session of its own so a signal to the consumer's group does not reach it) and
keeps a pipe to it open, telling it what its trees are as they change:

    {"trees": [[root pid, root start, marker], ...], "cgroups": [dir, ...]}

When the pipe closes without a last ``bye`` line the consumer died: the watchdog ends every
process of those trees (by marker, session, or cgroup), then exits. A consumer starting on
a host also ends what consumers that died earlier left (:func:`sweep_leftovers`), for the
case where the watchdog went down with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

try:
    from .trees import MARKER_ENV, cgroup_procs, freeze_and_kill, marker_of, proc_table, reap
except ImportError:  # run as a script: this directory is on sys.path, nothing else needed
    from trees import (  # type: ignore[no-redef]
        MARKER_ENV,
        cgroup_procs,
        freeze_and_kill,
        marker_of,
        proc_table,
        reap,
    )

__all__ = ["end_trees", "sweep_leftovers", "main"]


def end_trees(
    markers: Iterable[str] = (),
    marker_prefix: str | None = None,
    roots: Iterable[tuple[int, int]] = (),
    cgroups: Iterable[str] = (),
) -> set[int]:
    """End every process that carries one of ``markers`` (or a marker starting with
    ``marker_prefix``), leads or sits in the session of one of ``roots`` (pid, start time),
    or is in one of ``cgroups``. Returns the pids killed."""
    markers, roots, cgroups = set(markers), list(roots), list(cgroups)
    me = os.getpid()

    def ours(marker: str | None) -> bool:
        if marker is None:
            return False
        return marker in markers or bool(marker_prefix and marker.startswith(marker_prefix))

    def find() -> set[int]:
        table = proc_table()
        found: set[int] = set()
        for directory in cgroups:
            found |= cgroup_procs(directory)
        # A root whose pid now names another process: that number's session is not ours.
        sessions = {
            root for root, start in roots if root not in table or table[root].start == start
        }
        for info in table.values():
            if info.pid == me or info.state == "Z":
                continue
            if info.sid in sessions:
                found.add(info.pid)
            if ours(marker_of(info.pid)):
                found.add(info.pid)
        found.discard(me)
        return found

    for directory in cgroups:
        with contextlib.suppress(OSError):
            Path(directory, "cgroup.kill").write_text("1")
    killed = freeze_and_kill(find)
    reap(killed)
    for directory in cgroups:
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    return killed


def sweep_leftovers(cgroup_dirs: Iterable[str] = ()) -> set[int]:
    """What consumers that died on this host left: processes whose marker names an owner
    that no longer runs, and the given cgroups of dead owners. Returns the pids killed."""
    from .cgroups import owner_alive

    dead: set[str] = set()
    for info in proc_table().values():
        marker = marker_of(info.pid)
        if marker and "/" in marker and not owner_alive(marker.split("/", 1)[0]):
            dead.add(marker)
    if not dead and not cgroup_dirs:
        return set()
    return end_trees(markers=dead, cgroups=cgroup_dirs)


def main() -> None:
    """Read snapshots until the consumer says bye or dies; if it died, end its trees."""
    # Not ours to stop: a Ctrl-C or SIGTERM to the consumer's group must not end us first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.pop(MARKER_ENV, None)
    owner = sys.argv[1]
    snapshot: dict = {"trees": [], "cgroups": []}
    for line in sys.stdin:
        if line.strip() == "bye":
            return
        with contextlib.suppress(ValueError):
            snapshot = json.loads(line)
    end_trees(
        markers=[t[2] for t in snapshot.get("trees", [])],
        marker_prefix=f"{owner}/",
        roots=[(int(t[0]), int(t[1])) for t in snapshot.get("trees", [])],
        cgroups=snapshot.get("cgroups", []),
    )


if __name__ == "__main__":
    main()
