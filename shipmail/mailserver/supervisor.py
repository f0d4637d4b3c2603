"""Keep the processes of ``shipmail serve`` running: the Cyrus master, the login checker, the API.

A :class:`Supervisor` starts its components in order, then watches each from a thread of its own
with a small loop: every ``interval`` seconds it asks the component :meth:`Component.check`. A
component that is gone (a dead process, a dead Cyrus master) is restarted at once; one that is
alive but does not answer its health probe is restarted once it has failed for ``grace`` seconds
in a row. Before each restart the component's :meth:`Component.stop` ends whatever is left of it
(orphaned Cyrus children, the API's orphaned workers), then the watcher waits its
:class:`~.procs.Backoff` delay (exponential, capped, reset after a healthy period) and starts it
again; a failed start is retried the same way. :meth:`Supervisor.stop` (SIGINT/SIGTERM in
``serve``) stops the watchers, then the components in reverse order.

Components:

* :class:`CyrusComponent`: the daemonised Cyrus master (not our child: watched by its pid in
  ``/proc``) and its JMAP, IMAP and LMTP services (probed every ``probe_interval`` seconds).
* :class:`ChildProcess`: a subprocess in a process group of its own (the login checker; the
  inbound gateway, probed with an LMTP greeting, :func:`lmtp_greets`; the API,
  whose uvicorn parent supervises several workers itself), with an optional health probe. Its
  group is ended as a whole, so workers orphaned by a killed uvicorn parent go with it.
* :class:`OneShot`: a step run once, in its place in the start-up order (say, a reconciliation
  once the mail server is up and before the API answers); not watched.

The API's listening socket is bound once by ``serve`` (:func:`bind_listener`) and handed to each
API process generation: a restart never races for the port, and connections arriving meanwhile
wait in the socket's backlog.

Exception tree::

    SupervisorError        a component could not be started (at start-up: ``serve`` stops)
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import procs
from .cyrus import CyrusError, CyrusInstance

logger = logging.getLogger("shipmail.serve")


class SupervisorError(Exception):
    """A supervised component could not be started."""


@dataclass(frozen=True)
class Problem:
    """What :meth:`Component.check` found: ``dead`` (restart now) or not answering."""

    text: str
    dead: bool


class Component(Protocol):
    """One supervised thing. Methods are called from one thread at a time."""

    name: str

    def start(self) -> None:
        """Start it and return once it is ready; raise (anything) when it cannot start."""
        ...

    def check(self) -> Problem | None:
        """None while healthy, else the problem. Quick (bounded by a probe timeout); never raises."""
        ...

    def stop(self) -> None:
        """End every process of it (idempotent); never leaves an orphan behind."""
        ...


class Supervisor:
    """Starts ``components`` in order, restarts them when they fail, stops them in reverse.

    ``interval``: seconds between two checks of a component; ``grace``: seconds a live component
    may fail its health probe before it is restarted; ``backoff``: makes the restart delays of
    each component (:class:`~.procs.Backoff`).
    """

    def __init__(
        self,
        components: Sequence[Component],
        *,
        interval: float = 0.5,
        grace: float = 5.0,
        backoff: Callable[[], procs.Backoff] = procs.Backoff,
    ) -> None:
        self.components = list(components)
        self._stopping = threading.Event()
        for component in self.components:
            if isinstance(getattr(component, "abort", None), threading.Event):
                component.abort = self._stopping  # type: ignore[attr-defined]  # a start gives up at stop
        self.interval = interval
        self.grace = grace
        self._backoff = backoff
        self._threads: list[threading.Thread] = []
        self._started: list[Component] = []
        #: Restarts done per component name (read by tests and the log).
        self.restarts: dict[str, int] = {c.name: 0 for c in self.components}

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        """Start every component in order and begin watching them. If one cannot start, the ones
        already started are stopped and :class:`SupervisorError` is raised (unless a stop was
        requested meanwhile: then it just returns)."""
        for component in self.components:
            if self._stopping.is_set():
                break
            try:
                component.start()
            except Exception as exc:
                self._started.append(component)  # stop() ends what it left running
                self._stop_components()
                if self._stopping.is_set():
                    return  # asked to stop while starting: not a failure
                logger.error("%s did not start: %s", component.name, exc)
                raise SupervisorError(f"{component.name} did not start: {exc}") from exc
            self._started.append(component)
            logger.info("%s is up", component.name)
        for component in self._started:
            if not getattr(component, "watched", True):
                continue
            thread = threading.Thread(target=self._watch, args=(component,), name=f"watch {component.name}")
            thread.start()
            self._threads.append(thread)

    def request_stop(self) -> None:
        """Ask the watchers to end (safe from a signal handler); :meth:`stop` does the rest."""
        self._stopping.set()

    def wait(self) -> None:
        """Block until :meth:`request_stop` is called."""
        while not self._stopping.wait(1.0):
            pass

    def stop(self) -> None:
        """Stop watching, then stop the components in reverse order."""
        self._stopping.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._stop_components()

    def _stop_components(self) -> None:
        for component in reversed(self._started):
            try:
                component.stop()
            except Exception:
                logger.exception("stopping %s failed", component.name)
        self._started.clear()

    # ----------------------------------------------------------------- the watch loop

    def _watch(self, component: Component) -> None:
        backoff = self._backoff()
        backoff.started(time.monotonic())
        failing_since: float | None = None
        while not self._stopping.wait(self.interval):
            problem = component.check()
            now = time.monotonic()
            if problem is None:
                if failing_since is not None:
                    logger.info("%s answers again", component.name)
                failing_since = None
                continue
            if not problem.dead:
                if failing_since is None:
                    failing_since = now
                    logger.warning("%s: %s", component.name, problem.text)
                if now - failing_since < self.grace:
                    continue
                logger.error(
                    "%s has not answered for %.0f s (%s): restarting it", component.name, self.grace, problem.text
                )
            else:
                logger.error("%s: %s: restarting it", component.name, problem.text)
            failing_since = None
            self._restart(component, backoff)

    def _restart(self, component: Component, backoff: procs.Backoff) -> None:
        while not self._stopping.is_set():
            try:
                component.stop()
            except Exception:
                logger.exception("cleaning up %s failed", component.name)
            delay = backoff.next_delay(time.monotonic())
            logger.info("restarting %s in %.1f s", component.name, delay)
            if self._stopping.wait(delay):
                return
            try:
                component.start()
            except Exception as exc:
                logger.error("restarting %s failed: %s", component.name, exc)
                continue
            backoff.started(time.monotonic())
            self.restarts[component.name] += 1
            logger.info("%s restarted", component.name)
            return


# --------------------------------------------------------------------- components


class CyrusComponent:
    """The Cyrus master of ``instance`` and its services.

    :meth:`check`: the master's pid (remembered at start) must be alive (a cheap ``/proc`` read
    every call), and JMAP, IMAP and LMTP must answer (:meth:`CyrusInstance.probe`, each bounded
    by ``probe_timeout`` seconds) every ``probe_interval`` seconds. :meth:`stop` ends the master
    and every child (orphans of a killed master included; SIGKILL for whatever is left after
    ``stop_timeout`` seconds) and removes the stale pid file.
    """

    name = "Cyrus"

    def __init__(
        self,
        instance: CyrusInstance,
        *,
        start_timeout: float = 30.0,
        probe_interval: float = 2.0,
        probe_timeout: float = 1.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.instance = instance
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self._pid: int | None = None
        self._probed_at = 0.0
        self._last: Problem | None = None

    def start(self) -> None:
        if not self.instance.is_running():
            self.instance.stop()  # orphans of a master that died unwatched would hold the ports
        self.instance.start(self.start_timeout)
        self._pid = self.instance.master_pid()
        if self._pid is None:
            raise CyrusError("the Cyrus master exited right after starting")
        self._probed_at = time.monotonic()
        self._last = None

    def check(self) -> Problem | None:
        pid = self._pid
        argv = procs.argv_of(pid) if pid is not None else None
        if pid is None or argv is None or not self.instance.is_master(argv):
            return Problem(f"the master (pid {pid}) is gone", dead=True)
        now = time.monotonic()
        if now - self._probed_at >= self.probe_interval:
            self._probed_at = now
            problems = [p for p in (self.instance.probe(n, self.probe_timeout) for n in ("jmap", "imap", "lmtp")) if p]
            self._last = Problem("not answering: " + "; ".join(problems), dead=False) if problems else None
        return self._last

    def stop(self) -> None:
        self._pid = None
        self.instance.stop(self.stop_timeout)


@dataclass
class ChildProcess:
    """A subprocess running ``argv`` in a process group of its own (``pass_fds`` are inherited).

    ``ready(timeout)`` (optional) must become true within ``start_timeout`` seconds for
    :meth:`start` to succeed (setting ``abort`` gives up sooner: the supervisor sets it when it
    stops); ``probe(timeout)`` (optional) is its health check, run every ``probe_interval``
    seconds with ``probe_timeout``. :meth:`stop` sends SIGTERM (and SIGCONT, so a stopped process
    can act on it) to the whole group, and SIGKILL after ``stop_timeout``.
    """

    name: str
    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    ready: Callable[[float], bool] | None = None
    probe: Callable[[float], bool] | None = None
    start_timeout: float = 30.0
    stop_timeout: float = 10.0
    probe_interval: float = 2.0
    probe_timeout: float = 1.0
    abort: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _probed_at: float = field(default=0.0, init=False)
    _last: Problem | None = field(default=None, init=False)

    @property
    def pid(self) -> int | None:
        """The pid of the current process (also its process group id), or None."""
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, pass_fds=self.pass_fds, process_group=0)
        self._last = None
        deadline = time.monotonic() + self.start_timeout
        while self.ready is not None and not self.ready(min(1.0, self.start_timeout)):
            code = self.process.poll()
            if code is not None:
                raise SupervisorError(f"{self.name} exited with status {code} while starting")
            if self.abort.is_set():
                self.stop()
                raise SupervisorError(f"{self.name}: start abandoned (stopping)")
            if time.monotonic() >= deadline:
                self.stop()
                raise SupervisorError(f"{self.name} was not ready within {self.start_timeout:.0f} s")
            time.sleep(0.1)
        self._probed_at = time.monotonic()
        logger.info("%s runs as pid %d", self.name, self.process.pid)

    def check(self) -> Problem | None:
        if self.process is None:
            return Problem("not started", dead=True)
        code = self.process.poll()
        if code is not None:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
            return Problem(f"pid {self.process.pid} {how}", dead=True)
        now = time.monotonic()
        if self.probe is not None and now - self._probed_at >= self.probe_interval:
            self._probed_at = now
            healthy = self.probe(self.probe_timeout)
            self._last = None if healthy else Problem(f"pid {self.process.pid} does not answer its health probe", False)
        return self._last

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        pgid = process.pid
        # The group outlives its leader: a killed uvicorn parent leaves its workers in it.
        procs.signal_group(pgid, signal.SIGTERM)
        procs.signal_group(pgid, signal.SIGCONT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(self.stop_timeout)
        if not procs.wait_group_gone(pgid, 0.0 if process.poll() is None else self.stop_timeout):
            left = procs.group_members(pgid)
            logger.warning("%s: killing what is left of its process group %d: %s", self.name, pgid, left)
            procs.signal_group(pgid, signal.SIGKILL)
            procs.wait_group_gone(pgid, 5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5.0)
        self.process = None


@dataclass
class OneShot:
    """``run()`` once when the supervisor starts, between the components before and after it; a
    failure (an exception) fails the start. Never watched nor restarted."""

    name: str
    run: Callable[[], None]
    watched = False

    def start(self) -> None:
        self.run()

    def check(self) -> Problem | None:
        return None

    def stop(self) -> None:
        return None


# --------------------------------------------------------------------- the API's socket


def connect_host(host: str) -> str:
    """Where to connect to reach a server bound on ``host`` (wildcards mean loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host.strip("[]"))


def bind_listener(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``SO_REUSEADDR``; IPv6 when ``host`` has a
    colon), inheritable so the API processes can serve it. Raises OSError when the port is taken."""
    bind_host = host.strip("[]")
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind_host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def lmtp_greets(port: int, timeout: float) -> bool:
    """Whether an LMTP server on 127.0.0.1:``port`` greets ``220`` within ``timeout`` seconds
    (then ``QUIT``); never raises."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            line = sock.recv(512)
            with contextlib.suppress(OSError):
                sock.sendall(b"QUIT\r\n")
            return line.startswith(b"220")
    except OSError:
        return False


def http_answers(host: str, port: int, path: str) -> Callable[[float], bool]:
    """A readiness check: ``GET path`` on ``host:port`` answers 200 within the given seconds."""

    def ready(timeout: float) -> bool:
        connection = http.client.HTTPConnection(connect_host(host), port, timeout=timeout)
        try:
            connection.request("GET", path)
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    return ready
