"""A job process and everything it started, found and ended as one tree.

A job may start helpers (DataLoader workers, an engine, ffmpeg), and they may start their
own, fork twice, call ``setsid`` or ignore SIGTERM. Ending an attempt must end all of them,
or their GPU memory and the slot stay held. A tree is found by three marks, any of which
suffices (a process that erased all three escapes; a cgroup, ``jobcord.consumers.cgroups``, is the
exact answer where one can be had):

- descent: the process's parent chain reaches the job process;
- session: the job process leads a session of its own (``setsid`` at its start) and every
  descendant stays in it unless it calls ``setsid`` itself;
- marker: ``JOBCORD_TREE=<marker>`` in the environment it was started with (inherited by
  every descendant that does not clear its environment).

The consumer is a child subreaper (``PR_SET_CHILD_SUBREAPER``): a helper whose parent died is
adopted by the consumer, not by init, so the consumer still sees it and reaps it.

Ending is freeze-then-kill: SIGSTOP every member found, look again until no new member
appears (a forking member cannot outrun a stopped one), then SIGKILL them all.

Linux only (``/proc``); elsewhere a tree is just the job process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MARKER_ENV",
    "ProcInfo",
    "proc_table",
    "marker_of",
    "set_child_subreaper",
    "ProcessTree",
    "freeze_and_kill",
    "reap",
    "start_time",
    "proc_info",
    "cgroup_procs",
]

MARKER_ENV = "JOBCORD_TREE"
_PROC = Path("/proc")
_PR_SET_CHILD_SUBREAPER = 36
#: Freeze passes before giving up on a tree that keeps changing (a fork bomb outruns no
#: SIGSTOP for long: each pass stops every member it saw).
_FREEZE_PASSES = 50


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    sid: int
    state: str  # R, S, D, Z, T ...
    start: int  # clock ticks after boot: with the pid, names one process for good


def proc_info(pid: int) -> ProcInfo | None:
    """One process's line of :func:`proc_table` (None: no such process)."""
    return _stat(pid)


def _stat(pid: int) -> ProcInfo | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    rest = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcInfo(pid, int(rest[1]), int(rest[3]), rest[0].decode(), int(rest[19]))
    except (IndexError, ValueError):
        return None


def proc_table() -> dict[int, ProcInfo]:
    """Every process on this machine (that this user may see), by pid."""
    out: dict[int, ProcInfo] = {}
    try:
        names = os.listdir(_PROC)
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            info = _stat(int(name))
            if info is not None:
                out[info.pid] = info
    return out


def start_time(pid: int) -> int | None:
    info = _stat(pid)
    return None if info is None else info.start


def marker_of(pid: int) -> str | None:
    """The ``JOBCORD_TREE`` value a process was started with (None: none, or unreadable)."""
    try:
        env = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = MARKER_ENV.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def set_child_subreaper() -> bool:
    """Adopt orphaned descendants (Linux >= 3.4); False where the call is not there."""
    try:  # the C library already loaded in this process (glibc or musl)
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def cgroup_procs(directory: str | Path) -> set[int]:
    """The pids in a cgroup directory and those below it."""
    out: set[int] = set()
    for here, _dirs, _files in os.walk(directory):
        with contextlib.suppress(OSError, ValueError):
            out |= {int(p) for p in Path(here, "cgroup.procs").read_text().split()}
    return out


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def reap(pids: Iterable[int]) -> None:
    """Collect the exit status of those of ``pids`` that are our exited children (orphans
    the subreaper adopted); never a wildcard wait, which would steal the statuses that
    multiprocessing and subprocess wait for."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def freeze_and_kill(find: Callable[[], Iterable[int]], *, also: Iterable[int] = ()) -> set[int]:
    """SIGSTOP every process ``find()`` returns, again until it returns no new one, then
    SIGKILL them all. Returns every pid it killed (for :func:`reap`)."""
    seen: set[int] = set(also)
    _signal(seen, signal.SIGSTOP)
    for _ in range(_FREEZE_PASSES):
        new = set(find()) - seen
        if not new:
            break
        _signal(new, signal.SIGSTOP)
        seen |= new
    _signal(seen, signal.SIGKILL)
    return seen


class ProcessTree:
    """The tree of one job process: ``root`` (its pid), which leads its own session, and
    whatever carries ``marker``. ``adopter``: the subreaper that takes orphans (us)."""

    def __init__(self, root: int, marker: str, adopter: int | None = None) -> None:
        self.root = root
        self.root_start = start_time(root)
        self.marker = marker
        self.adopter = os.getpid() if adopter is None else adopter
        #: Every pid ever found in the tree (orphans to reap after their end).
        self.known: set[int] = set()

    def members(self, table: dict[int, ProcInfo] | None = None) -> set[int]:
        """The live processes of the tree now, the root included while it lives."""
        table = proc_table() if table is None else table
        out: set[int] = set()
        root = table.get(self.root)
        if root is not None and root.start == self.root_start and root.state != "Z":
            out.add(self.root)
        # The root's pid now names another process (it exited and the number came back):
        # a session led by that number is someone else's; only marker and descent count.
        reused = root is not None and root.start != self.root_start
        children: dict[int, list[int]] = {}
        for info in table.values():
            children.setdefault(info.ppid, []).append(info.pid)
        for info in table.values():
            if info.state == "Z" or info.pid == self.adopter:
                continue
            if info.sid == self.root and info.pid != self.root and not reused:
                out.add(info.pid)
            elif (
                info.ppid == self.adopter
                and info.pid != self.root
                and marker_of(info.pid) == self.marker
            ):
                out.add(info.pid)  # an orphan we adopted that carries this tree's marker
        # Descent from any member (a helper that called setsid, started before it did).
        stack = list(out)
        while stack:
            for kid in children.get(stack.pop(), ()):
                if kid not in out and table[kid].state != "Z":
                    out.add(kid)
                    stack.append(kid)
        self.known |= out
        return out

    def terminate(self) -> None:
        """SIGTERM to every member (they may clean up; SIGKILL follows after a grace)."""
        _signal(self.members(), signal.SIGTERM)

    def kill(self) -> set[int]:
        """SIGKILL every member, frozen first so that none forks past us."""
        return freeze_and_kill(self.members)

    def reap_orphans(self) -> None:
        reap(self.known - {self.root})
