"""Finding and ending processes through ``/proc`` (Linux), by their command line.

Cyrus's master runs daemonised (``-d``), so the service is not its parent: its processes are
found by scanning ``/proc/<pid>/cmdline``. Zombies count as gone (an orphan's parent may be an
init that reaps late). Nothing here matches by name alone: callers pass a predicate on argv.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
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
