"""The supervisor of ``shipmail serve`` with real child processes (no Cyrus needed): restarts after a
death or a failed health probe, back-off, process groups, start-up failures, ordered stop."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from shipmail.mailserver import procs
from shipmail.mailserver.procs import Backoff
from shipmail.mailserver.supervisor import ChildProcess, OneShot, Problem, Supervisor, SupervisorError

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
# Starts a grandchild in the same process group, then sleeps: like uvicorn's parent and a worker.
PARENT_OF_ONE = [
    sys.executable,
    "-c",
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "time.sleep(600)\n",
]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, cap=0.2, reset_after=60.0)


@pytest.fixture
def running() -> Iterator[list[Supervisor]]:
    """Supervisors to stop at the end of the test, whatever happens."""
    started: list[Supervisor] = []
    yield started
    for supervisor in started:
        supervisor.stop()


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_healthy_period() -> None:
    backoff = Backoff(initial=0.5, cap=4.0, reset_after=60.0)
    backoff.started(0.0)
    assert [backoff.next_delay(1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.started(10.0)
    assert backoff.next_delay(30.0) == 4.0  # 20 s is not a healthy period yet
    backoff.started(40.0)
    assert backoff.next_delay(100.0) == 0.5  # 60 s up: back to the start
    assert backoff.next_delay(100.5) == 1.0


def test_a_killed_child_is_restarted(running: list[Supervisor]) -> None:
    child = ChildProcess("sleeper", SLEEPER, stop_timeout=5)
    supervisor = Supervisor([child], interval=0.05, backoff=fast_backoff)
    running.append(supervisor)
    supervisor.start()
    first = child.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: child.pid not in (None, first) and supervisor.restarts["sleeper"] == 1, "a restart")
    assert procs.is_alive(child.pid or 0)
    supervisor.stop()
    assert child.process is None and not procs.is_alive(first)


def test_a_killed_group_leader_takes_its_orphans_along() -> None:
    child = ChildProcess("parent", PARENT_OF_ONE, stop_timeout=5)
    child.start()
    leader = child.pid or 0
    wait_for(lambda: len(procs.group_members(leader)) == 2, "the grandchild starting")
    (orphan,) = set(procs.group_members(leader)) - {leader}
    os.kill(leader, signal.SIGKILL)
    problem = None

    def dead() -> bool:
        nonlocal problem
        problem = child.check()
        return problem is not None

    wait_for(dead, "the death being noticed")
    assert problem == Problem(f"pid {leader} killed by SIGKILL", dead=True)
    assert procs.is_alive(orphan)  # the worker outlived its parent ...
    child.stop()
    assert not procs.is_alive(orphan)  # ... until the group was ended
    assert procs.group_members(leader) == []


def test_a_child_that_stops_answering_is_restarted_after_the_grace(running: list[Supervisor]) -> None:
    answering = threading.Event()
    answering.set()
    child = ChildProcess(
        "prober", SLEEPER, probe=lambda _timeout: answering.is_set(), probe_interval=0.05, stop_timeout=5
    )
    supervisor = Supervisor([child], interval=0.05, grace=0.5, backoff=fast_backoff)
    running.append(supervisor)
    supervisor.start()
    first = child.pid
    answering.clear()
    wait_for(lambda: supervisor.restarts["prober"] >= 1, "a restart of the silent child")
    answering.set()
    assert child.pid != first and not procs.is_alive(first or 0)


class Flaky:
    """A component whose start fails ``failures`` times after its first start; records calls."""

    def __init__(self, name: str, log: list[str], failures: int = 0) -> None:
        self.name = name
        self.log = log
        self.failures = failures
        self.started = 0
        self.broken = False

    def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.started and self.failures:
            self.failures -= 1
            raise RuntimeError("port in use")
        self.started += 1
        self.broken = False

    def check(self) -> Problem | None:
        return Problem("crashed", dead=True) if self.broken else None

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def test_failed_restarts_are_retried_with_growing_delays(running: list[Supervisor]) -> None:
    log: list[str] = []
    flaky = Flaky("flaky", log, failures=2)
    delays: list[float] = []

    class Recording(Backoff):
        def next_delay(self, now: float) -> float:
            delays.append(super().next_delay(now))
            return delays[-1]

    supervisor = Supervisor([flaky], interval=0.02, backoff=lambda: Recording(initial=0.01, cap=1.0))
    running.append(supervisor)
    supervisor.start()
    flaky.broken = True
    wait_for(lambda: supervisor.restarts["flaky"] == 1, "the restart")
    assert delays == [0.01, 0.02, 0.04]
    assert log == ["start flaky", "stop flaky", "start flaky", "stop flaky", "start flaky", "stop flaky", "start flaky"]


def test_start_up_failure_stops_what_was_started_and_raises() -> None:
    log: list[str] = []
    first = Flaky("first", log)

    class Broken(Flaky):
        def start(self) -> None:
            self.log.append(f"start {self.name}")
            raise RuntimeError("cannot bind")

    supervisor = Supervisor([first, Broken("second", log), Flaky("third", log)])
    with pytest.raises(SupervisorError, match="second did not start: cannot bind"):
        supervisor.start()
    assert log == ["start first", "start second", "stop second", "stop first"]


def test_stop_ends_the_components_in_reverse_order() -> None:
    log: list[str] = []
    supervisor = Supervisor([Flaky("a", log), Flaky("b", log), Flaky("c", log)], interval=0.02)
    supervisor.start()
    supervisor.request_stop()
    supervisor.wait()
    supervisor.stop()
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


def test_a_one_shot_step_runs_once_in_its_place() -> None:
    log: list[str] = []
    step = OneShot("reconcile", lambda: log.append("run reconcile"))
    supervisor = Supervisor([Flaky("cyrus", log), step, Flaky("api", log)], interval=0.02)
    supervisor.start()
    assert [t.name for t in supervisor._threads] == ["watch cyrus", "watch api"]
    supervisor.stop()
    assert log == ["start cyrus", "run reconcile", "start api", "stop api", "stop cyrus"]


def test_a_child_that_exits_while_starting_fails_its_start() -> None:
    child = ChildProcess("quitter", [sys.executable, "-c", "raise SystemExit(3)"], ready=lambda _t: False)
    with pytest.raises(SupervisorError, match="quitter exited with status 3 while starting"):
        child.start()
    child.stop()
    assert child.process is None


def test_a_stop_during_a_start_abandons_the_start() -> None:
    child = ChildProcess("never ready", SLEEPER, ready=lambda _t: False, start_timeout=600, stop_timeout=5)
    supervisor = Supervisor([child])
    timer = threading.Timer(0.3, supervisor.request_stop)
    timer.start()
    supervisor.start()  # returns (no SupervisorError): the stop was asked for
    timer.join()
    assert child.process is None
    supervisor.stop()
