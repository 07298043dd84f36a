"""Control groups for job processes, where the host hands the consumer a writable subtree.

Detected once per consumer process (:func:`detect`), logged once:

- tree: a cgroup v2 directory of its own per job process (systemd ``Delegate=yes``, a
  container with its own cgroup namespace, or ``JOBCORD_CGROUP_ROOT``). Membership is exact
  whatever a helper does (``setsid``, a cleared environment, a double fork) and
  ``cgroup.kill`` ends them all in one write. Without one, ``jobcord.consumers.trees`` finds the
  tree by descent, session and marker.
- memory: ``memory.max`` (v2, where the memory controller is delegated), else
  ``memory.limit_in_bytes`` (v1, the hybrid layout older hosts have), else ``RLIMIT_DATA``
  on the job process (allocations past it fail: a MemoryError in Python). See
  ``jobcord.consumers.limits`` for what the job process does with it.
- pids: ``pids.max`` where the v2 pids controller is delegated.

A cgroup that cannot be made (permissions, no cgroupfs) is never an error: the consumer
runs with the next mode down and says so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Containment", "ChildCgroup", "MemoryControl", "detect", "cgroup_dirs_of_dead"]

#: Directory names of job-process cgroups: ``jobcord-<owner pid>.<owner start>-<n>``.
PREFIX = "jobcord-"


@dataclass(frozen=True)
class MemoryControl:
    """Where a job process sets its memory limit: ``mode`` cgroup2 | cgroup1 | rlimit, and
    its cgroup directory for the cgroup modes. Picklable: it travels to the child."""

    mode: str
    directory: str = ""


@dataclass(frozen=True)
class Containment:
    tree_root: Path | None  # v2: where job-process cgroups are made (None: no cgroup tree)
    memory_mode: str  # cgroup2 | cgroup1 | rlimit
    memory_root: Path | None  # the v1 memory directory (cgroup2: tree_root)
    pids: bool  # pids.max can be set
    why: str  # what was found, for the one log line

    def describe(self) -> dict[str, str]:
        tree = f"cgroup2 at {self.tree_root}" if self.tree_root else "session + subreaper"
        memory = {
            "cgroup2": "cgroup2 memory.max",
            "cgroup1": f"cgroup1 memory.limit_in_bytes at {self.memory_root}",
            "rlimit": "RLIMIT_DATA (no writable memory cgroup)",
        }[self.memory_mode]
        return {"tree": tree, "memory": memory, "pids": "pids.max" if self.pids else "none"}


def _mounts() -> list[tuple[str, str, str, str]]:
    """(mount root, mount point, fstype, super options) of each cgroup mount."""
    out: list[tuple[str, str, str, str]] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            out.append((fields[3], fields[4], tail[0], tail[2]))
    return out


def _own_paths() -> dict[str, str]:
    """Controller (``""`` for v2) -> this process's cgroup path."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                out[name] = path
    return out


def _join(mount_root: str, mount_point: str, path: str) -> Path:
    if mount_root != "/" and path.startswith(mount_root):
        path = path[len(mount_root) :]
    return Path(mount_point) / path.lstrip("/")


def _writable(directory: Path) -> bool:
    probe = directory / f"{PREFIX}probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    with contextlib.suppress(OSError):
        probe.rmdir()
    return True


def _enable(base: Path, wanted: list[str]) -> set[str]:
    """Turn on ``wanted`` controllers for base's children; returns those on. A cgroup with
    processes of its own cannot (the v2 no-internal-process rule): when those are only this
    process, it moves into a leaf first, as systemd's delegation docs ask."""
    try:
        offered = set((base / "cgroup.controllers").read_text().split())
    except OSError:
        return set()
    wanted = [c for c in wanted if c in offered]

    def on() -> set[str]:
        with contextlib.suppress(OSError):
            return set((base / "cgroup.subtree_control").read_text().split())
        return set()

    if not wanted or set(wanted) <= on():
        return on() & set(wanted)
    try:
        (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            return on() & set(wanted)
        procs = set((base / "cgroup.procs").read_text().split())
        if procs - {str(os.getpid())}:
            return on() & set(wanted)  # others live here: not ours to rearrange
        leaf = base / f"{PREFIX}supervisor"
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        with contextlib.suppress(OSError):
            (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
    return on() & set(wanted)


def detect(cgroup_root: str | None = None) -> Containment:
    """What this host lets a consumer do. ``cgroup_root``: a delegated v2 directory to use
    (``off``: no cgroups at all); None: this process's own v2 cgroup. Never raises: a
    cgroupfs that answers oddly means the next mode down."""
    try:
        return _detect(cgroup_root)
    except OSError as exc:
        return Containment(None, "rlimit", None, False, f"cgroups unusable: {exc}")


def _detect(cgroup_root: str | None) -> Containment:
    if cgroup_root == "off":
        return Containment(None, "rlimit", None, False, "cgroups turned off")
    mounts = _mounts()
    own = _own_paths()
    tree_root: Path | None = None
    enabled: set[str] = set()
    v2 = [m for m in mounts if m[2] == "cgroup2"]
    if cgroup_root:
        candidate: Path | None = Path(cgroup_root)
    elif v2 and "" in own:
        candidate = _join(v2[0][0], v2[0][1], own[""])
    else:
        candidate = None
    if candidate is not None and candidate.is_dir() and _writable(candidate):
        tree_root = candidate
        enabled = _enable(candidate, ["memory", "pids"])
    if tree_root is not None and "memory" in enabled:
        return Containment(tree_root, "cgroup2", tree_root, "pids" in enabled, "cgroup2")
    for root, point, fstype, options in mounts:
        if fstype == "cgroup" and "memory" in options.split(",") and "memory" in own:
            directory = _join(root, point, own["memory"])
            if directory.is_dir() and _writable(directory):
                return Containment(tree_root, "cgroup1", directory, "pids" in enabled, "v1")
    return Containment(tree_root, "rlimit", None, "pids" in enabled, "no memory cgroup")


def owner_tag() -> str:
    """This process as cgroup names and markers carry it: pid and start time."""
    from .trees import start_time

    return f"{os.getpid()}.{start_time(os.getpid()) or 0}"


def owner_alive(tag: str) -> bool:
    """Whether the process a tag names (``pid.start``) still runs."""
    from .trees import start_time

    pid, _, start = tag.partition(".")
    try:
        return start_time(int(pid)) == int(start)
    except ValueError:
        return True  # not one of ours: never touched


class ChildCgroup:
    """The cgroup(s) of one job process: a v2 directory (the tree) and, on a v1 host, a
    memory directory. Made by the consumer before the process starts; the process joins
    them itself, first thing, before any code of the app can start a helper."""

    def __init__(self, containment: Containment, name: str, pids_max: int = 0) -> None:
        self.containment = containment
        self.name = name
        self.tree = containment.tree_root / name if containment.tree_root else None
        mode = containment.memory_mode
        if mode == "cgroup1" and containment.memory_root is not None:
            self.memory_dir: Path | None = containment.memory_root / name
        else:
            self.memory_dir = self.tree if mode == "cgroup2" else None
        self.pids_max = pids_max

    def create(self) -> None:
        for directory in self._dirs():
            directory.mkdir(exist_ok=True)
        if self.tree is not None and self.containment.pids and self.pids_max:
            with contextlib.suppress(OSError):
                (self.tree / "pids.max").write_text(str(self.pids_max))

    def _dirs(self) -> list[Path]:
        return [d for d in dict.fromkeys([self.tree, self.memory_dir]) if d is not None]

    def join_files(self) -> tuple[str, ...]:
        """The ``cgroup.procs`` files the job process writes its pid to."""
        return tuple(str(d / "cgroup.procs") for d in self._dirs())

    def memory_control(self) -> MemoryControl:
        mode = self.containment.memory_mode
        return MemoryControl(mode, str(self.memory_dir) if self.memory_dir else "")

    def procs(self) -> set[int]:
        from .trees import cgroup_procs

        return set().union(*(cgroup_procs(d) for d in self._dirs()))

    def kill(self) -> bool:
        """``cgroup.kill`` (v2, Linux >= 5.14): every member SIGKILLed by the kernel, none
        can fork past it. False where it is not there (the caller kills by pid)."""
        if self.tree is None:
            return False
        try:
            (self.tree / "cgroup.kill").write_text("1")
        except OSError:
            return False
        return True

    def remove(self, wait_s: float = 0.0) -> bool:
        """Remove the directories once empty (an exiting member may linger a moment)."""
        deadline = time.monotonic() + wait_s
        while True:
            left = []
            for directory in reversed(self._dirs()):
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(directory)
            if not left or time.monotonic() >= deadline:
                return not left
            time.sleep(0.02)


def cgroup_dirs_of_dead(containment: Containment) -> list[Path]:
    """Job-process cgroups whose consumer is gone (killed before it could remove them)."""
    out = []
    for root in {containment.tree_root, containment.memory_root} - {None}:
        assert root is not None
        with contextlib.suppress(OSError):
            for entry in root.iterdir():
                name = entry.name
                if name.startswith(PREFIX) and entry.is_dir() and name.count("-") >= 2:
                    owner = name[len(PREFIX) :].split("-", 1)[0]
                    if not owner_alive(owner):
                        out.append(entry)
    return out
