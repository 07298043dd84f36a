"""What one consumer process does once to contain its job processes' trees.

The first consumer of a process (a worker, or a host of several) makes it a child subreaper,
detects the cgroup modes (``jobcord.consumers.cgroups``) and logs them once, ends what consumers
that died on this host left behind, and starts the watchdog (``jobcord.consumers.watchdog``) that
will end its trees if it is killed. Each job process then gets a marker and, where the host
allows, a cgroup of its own (:meth:`Keeper.new_tree`).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from .cgroups import ChildCgroup, Containment, cgroup_dirs_of_dead, detect, owner_tag
from .trees import MARKER_ENV, ProcessTree, reap, set_child_subreaper

__all__ = ["Keeper"]

log = structlog.get_logger("jobcord.containment")

#: Adopted orphans are looked for (and reaped once exited) at most this often.
_REAP_EVERY_S = 1.0
#: Sessions of ended job processes whose orphans are still ours to reap (bounded).
_PAST_ROOTS = 4096


class Keeper:
    _instance: Keeper | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls, settings: Any) -> Keeper:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls(settings)
            cls._instance._users += 1
            return cls._instance

    def __init__(self, settings: Any) -> None:
        self._users = 0
        self.owner = owner_tag()
        self.subreaper = set_child_subreaper()
        self.containment: Containment = detect(settings.cgroup_root)
        self.pids_max = int(settings.job_pids_limit)
        self._count = itertools.count(1)
        self._lock = threading.Lock()
        self._trees: dict[str, tuple[ProcessTree, ChildCgroup | None]] = {}
        self._past_roots: collections.deque[int] = collections.deque(maxlen=_PAST_ROOTS)
        self._past_known: collections.deque[int] = collections.deque(maxlen=_PAST_ROOTS)
        self._reaped_at = 0.0
        self._changed = threading.Condition(self._lock)
        self._closing = False
        self._sweep_dead()
        self._watchdog = self._start_watchdog()
        self._writer = threading.Thread(target=self._tell_loop, name="jobcord-watchdog-pipe")
        self._writer.daemon = True
        self._writer.start()
        log.info(
            "job processes contained",
            subreaper=self.subreaper,
            watchdog=self._watchdog.pid if self._watchdog else None,
            **self.containment.describe(),
        )

    # -- trees -------------------------------------------------------------------------------
    def new_tree(self) -> tuple[str, ChildCgroup | None]:
        """A marker (and cgroup, made now, if the host allows) for a job process to start."""
        n = next(self._count)
        marker = f"{self.owner}/{n}"
        c = self.containment
        if c.tree_root is None and c.memory_mode == "rlimit":
            return marker, None
        cgroup = ChildCgroup(c, f"jobcord-{self.owner}-{n}", self.pids_max)
        try:
            cgroup.create()
        except OSError as exc:
            log.warning("no cgroup for a job process", error=str(exc))
            return marker, None
        return marker, cgroup

    def started(self, tree: ProcessTree, cgroup: ChildCgroup | None) -> None:
        with self._lock:
            self._trees[tree.marker] = (tree, cgroup)
            self._changed.notify()

    def ended(self, tree: ProcessTree) -> None:
        with self._lock:
            self._trees.pop(tree.marker, None)
            self._past_roots.append(tree.root)
            self._past_known.extend(tree.known - {tree.root})
            self._changed.notify()

    def live_pids(self) -> set[int]:
        """Every member of the live trees (a device shared with them is not ours to clear)."""
        with self._lock:
            trees = [t for t, _ in self._trees.values()]
        out: set[int] = set()
        for tree in trees:
            out |= tree.members()
        return out

    def reap_adopted(self) -> None:
        """Collect orphans of job trees that exited (the subreaper adopted them): at most
        once a second, and only those known to be of a job process's tree (by its session
        or as a member seen), never a child someone else waits for."""
        now = time.monotonic()
        if now - self._reaped_at < _REAP_EVERY_S:
            return
        self._reaped_at = now
        from .trees import proc_table

        me = os.getpid()
        with self._lock:
            trees = [t for t, _ in self._trees.values()]
            sessions = set(self._past_roots) | {t.root for t in trees}
            known = set(self._past_known).union(*(t.known for t in trees))
            roots = {t.root for t in trees}  # multiprocessing reaps those itself
        zombies = [
            i.pid
            for i in proc_table().values()
            if i.ppid == me
            and i.state == "Z"
            and i.pid not in roots
            and (i.sid in sessions or i.pid in known)
        ]
        reap(zombies)

    # -- the watchdog --------------------------------------------------------------------------
    def _start_watchdog(self) -> subprocess.Popen | None:
        env = {k: v for k, v in os.environ.items() if k != MARKER_ENV}
        script = Path(__file__).with_name("watchdog.py")
        try:
            return subprocess.Popen(
                [sys.executable, "-s", str(script), self.owner],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # a signal to our group must not reach it
                text=True,
            )
        except OSError as exc:
            log.warning("no watchdog: a SIGKILLed worker's helpers live on", error=str(exc))
            return None

    def _snapshot(self) -> str:
        trees = [[t.root, t.root_start or 0, t.marker] for t, _ in self._trees.values()]
        cgroups = [str(c.tree or c.memory_dir) for _, c in self._trees.values() if c]
        return json.dumps({"trees": trees, "cgroups": cgroups})

    def _tell_loop(self) -> None:
        """Send the latest snapshot whenever the trees change (a thread of its own: a stalled
        watchdog must never hold up the supervisor)."""
        sent = None
        while True:
            with self._lock:
                while not self._closing and self._snapshot() == sent:
                    self._changed.wait(1.0)
                if self._closing:
                    return
                line = self._snapshot()
            if self._watchdog is None or self._watchdog.stdin is None:
                return
            try:
                self._watchdog.stdin.write(line + "\n")
                self._watchdog.stdin.flush()
            except (OSError, ValueError) as exc:
                log.error("watchdog gone: a SIGKILL of this worker would leave helpers",
                          error=str(exc))  # fmt: skip
                return
            sent = line

    def _sweep_dead(self) -> None:
        dead = [str(d) for d in cgroup_dirs_of_dead(self.containment)]
        from .watchdog import sweep_leftovers

        killed = sweep_leftovers(dead)
        if killed or dead:
            log.warning(
                "ended what a dead worker left on this host", processes=len(killed),
                cgroups=len(dead),
            )  # fmt: skip

    def release(self) -> None:
        """One consumer of this process stopped; the last one says bye to the watchdog."""
        with self._instance_lock:
            self._users -= 1
            if self._users > 0:
                return
            Keeper._instance = None
        with self._lock:
            self._closing = True
            self._changed.notify_all()
        self._writer.join(2)
        if self._watchdog is not None and self._watchdog.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self._watchdog.stdin.write("bye\n")
                self._watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(5)
