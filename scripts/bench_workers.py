"""Worker and rate-limit storage benchmark case (registered with scripts/bench_harness.py).

``workers``: three more API servers next to the stack's ``shipmail serve``, on the same database
and the same Cyrus, each started exactly as ``shipmail serve --workers N`` starts its API
(``uvicorn shipmail.app:create_app --factory --workers N``, access log on, no server header):
one worker with ``memory://`` rate-limit counters (the default), one worker with ``redis://``
(``SHIPMAIL_BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/1``), two workers with
``redis://`` (what several workers need: limits are exact across workers only with a shared
storage). Rounds alternate between them (an idle server costs nothing), so drifting load on the
machine hits all three alike. Each serves an authenticated ``GET /v1/mailboxes/{id}`` on 8
connections and the message list (``limit=50``) on 4. Prints throughput, p50 and CPU per request
of the server's processes (all workers) and of Cyrus; the ratios redis/memory (goal >= 0.90) and
2 workers / 1 worker.

The machine has 2 cores shared by the load generator, the API and Cyrus: a second worker helps
only as far as a core is left over (README, "Performance").
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

from bench_harness import (
    PYTHON,
    Bench,
    Contender,
    Stack,
    Target,
    case,
    free_ports,
    http_json,
    process_tree,
    tree_cpu,
)
from bench_inbox import LIMIT, ensure_seeded

REDIS_URL = os.environ.get("SHIPMAIL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")


class ApiServer:
    """``uvicorn shipmail.app:create_app`` as ``shipmail serve --workers N`` runs it, on a free port."""

    def __init__(self, stack: Stack, workers: int, storage: str, source: str | None = None) -> None:
        """``source``: a directory holding another version's ``shipmail`` package (put first on
        ``PYTHONPATH`` and the working directory: the same virtualenv runs that code), for
        before/after figures."""
        (self.port,) = free_ports(1)
        env = {**stack.env, "SHIPMAIL_RATELIMIT_STORAGE": storage, "SHIPMAIL_PORT": str(self.port)}
        if source is not None:
            env["PYTHONPATH"] = source
        argv = [str(PYTHON), "-m", "uvicorn", "shipmail.app:create_app", "--factory", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--workers", str(workers), "--log-level", "info", "--no-server-header"]
        # ``python -m`` puts the working directory first on sys.path: run another version from its tree.
        self.proc = stack.spawn(argv, env, cwd=source)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API server ({workers} workers, {storage}) exited\n{stack.output()}")
            with contextlib.suppress(OSError, ValueError):
                if http_json("GET", f"http://127.0.0.1:{self.port}/v1/status")[0] == 200:
                    break
            time.sleep(0.2)
        while len(process_tree(self.proc.pid)) < (workers + 1 if workers > 1 else 1):
            time.sleep(0.2)
        time.sleep(1.0 if workers > 1 else 0)  # every worker imports the app on its own
        self.pids = process_tree(self.proc.pid)

    def cpu(self) -> float:
        return tree_cpu(self.pids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@contextlib.contextmanager
def servers(
    stack: Stack, configs: dict[str, tuple[int, str]], sources: dict[str, str | None] | None = None
) -> Iterator[dict[str, ApiServer]]:
    started: dict[str, ApiServer] = {}
    try:
        for label, (workers, storage) in configs.items():
            started[label] = ApiServer(stack, workers, storage, (sources or {}).get(label))
        yield started
    finally:
        for server in started.values():
            server.stop()


@case("workers", "--workers 1 and 2, rate-limit storage memory:// and redis:// (auth read, message list)")
def workers(bench: Bench) -> None:
    stack = bench.stack
    ensure_seeded(stack)
    configs = {
        "1 worker, memory://": (1, "memory://"),
        "1 worker, redis://": (1, REDIS_URL),
        "2 workers, redis://": (2, REDIS_URL),
    }
    paths = {
        "GET /v1/mailboxes/{id}, 8 connections": (f"/v1/mailboxes/{stack.mailbox_id}", 8),
        f"GET .../inbox/messages?limit={LIMIT}, 4 connections": (
            f"/v1/mailboxes/{stack.mailbox_id}/inbox/messages?limit={LIMIT}",
            4,
        ),
    }
    with servers(stack, configs) as running:
        for label, (path, concurrency) in paths.items():
            targets = {}
            for config, server in running.items():
                request = bench.api(path).request.replace(
                    f"127.0.0.1:{stack.app_port}".encode(), f"127.0.0.1:{server.port}".encode()
                )
                targets[config] = Target(request, port=server.port, server_cpu=server.cpu)
            print(f"  {label}:")
            measured: list[Contender] = bench.compare(targets, concurrency=concurrency)
            bench.table(measured)
            one, redis, two = measured
            print(
                f"    redis/memory throughput {redis.median('rps') / one.median('rps'):.2f}x (goal >= 0.90); "
                f"2 workers / 1 worker (both redis) {two.median('rps') / redis.median('rps'):.2f}x"
            )
