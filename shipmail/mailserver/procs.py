"""Finding and ending processes through ``/proc`` (Linux), by their command line.

Cyrus's master runs daemonised (``-d``), so the service is not its parent: its processes are
found by scanning ``/proc/<pid>/cmdline``. Zombies count as gone (an orphan's parent may be an
init that reaps late). Nothing here matches by name alone: callers pass a predicate on argv, or a
process group of their own (:func:`group_members`). :class:`Backoff` spaces out restarts.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def argv_of(pid: int) -> list[str] | None:
    """The argv of ``pid``, or None if it is gone, a zombie or a kernel thread."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    if not raw or not is_alive(pid):
        return None
    return [part.decode("utf-8", "surrogateescape") for part in raw.rstrip(b"\0").split(b"\0")]


def is_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    # Format: "pid (comm) state ...": comm may hold spaces or parentheses; state follows the last ')'.
    state = stat.rpartition(")")[2].split()[:1]
    return bool(state) and state[0] not in ("Z", "X")


def find(predicate: Callable[[list[str]], bool]) -> list[int]:
    """Pids of the live processes whose argv satisfies ``predicate`` (excluding this process)."""
    found: list[int] = []
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        argv = argv_of(pid)
        if argv is not None and predicate(argv):
            found.append(pid)
    return found


def signal_all(pids: Iterable[int], sig: signal.Signals, predicate: Callable[[list[str]], bool]) -> None:
    """Send ``sig`` to each pid that still satisfies ``predicate`` (guards against pid reuse)."""
    for pid in pids:
        argv = argv_of(pid)
        if argv is None or not predicate(argv):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float, interval: float = 0.05) -> list[int]:
    """Wait up to ``timeout`` seconds for ``pids`` to end; returns those still alive."""
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        remaining = [pid for pid in remaining if is_alive(pid)]
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(interval)


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group has no member left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member we may not signal: the group still exists
    return True


def wait_group_gone(pgid: int, timeout: float, interval: float = 0.05) -> bool:
    """Wait up to ``timeout`` seconds for process group ``pgid`` to have no live member (zombies
    count as gone); True when it is empty."""
    deadline = time.monotonic() + timeout
    while True:
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes of process group ``pgid``."""
    members: list[int] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": the fields after the last ')'.
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def die_with_parent(sig: signal.Signals = signal.SIGTERM, parent: int | None = None) -> None:
    """Have Linux send ``sig`` to this process when its parent ends (``prctl(PR_SET_PDEATHSIG)``),
    so a child of ``shipmail serve`` does not outlive a killed supervisor. ``parent``: the pid the
    parent had; if it is already gone (reparented), ``sig`` is sent at once. No-op off Linux."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return
    if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


_PR_SET_PDEATHSIG = 1


@dataclass
class Backoff:
    """Delays before restarting a process: ``initial`` seconds, doubled after each restart up to
    ``cap``, and back to ``initial`` once the process has run ``reset_after`` seconds since its
    last start (a healthy period). Times are :func:`time.monotonic` seconds."""

    initial: float = 0.5
    cap: float = 30.0
    reset_after: float = 60.0
    _next: float = field(init=False, default=0.0)
    _started_at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._next = self.initial

    def started(self, now: float) -> None:
        """Record a successful (re)start at ``now``."""
        self._started_at = now

    def next_delay(self, now: float) -> float:
        """The wait before the next restart attempt (each call counts as one attempt)."""
        if self._started_at is not None and now - self._started_at >= self.reset_after:
            self._next = self.initial
            self._started_at = None
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay
