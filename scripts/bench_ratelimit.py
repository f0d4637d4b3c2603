"""Rate-limit storage benchmark case (registered with scripts/bench_harness.py).

``ratelimit``: what a network rate-limit storage costs. Two more bench apps (one uvicorn worker
each, same data directory and key as the stack's) are started, one with
``SHIPMAIL_RATELIMIT_STORAGE=memory://`` and one with ``redis://`` (``SHIPMAIL_BENCH_REDIS_URL``,
default ``redis://127.0.0.1:6379/0``); alternating rounds load one at a time with an authenticated
``GET /v1/domains`` (key lookup, scope check, one rate-limit hit, one small database query, no mail
server). Prints each throughput and the ratio redis/memory; the goal is a ratio of at least 0.90
(run with ``--concurrency 8``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

from bench_harness import (
    PYTHON,
    REPO,
    SCRIPTS,
    Bench,
    Sample,
    _load,
    case,
    cpu_seconds,
    free_ports,
    http_json,
    summarize,
)

REDIS_URL = os.environ.get("SHIPMAIL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def _start(bench: Bench, storage: str) -> tuple[subprocess.Popen[bytes], int]:
    """A bench app on a free port with ``storage`` as the rate-limit storage, answering."""
    (port,) = free_ports(1)
    env = {**bench.stack.env, "SHIPMAIL_RATELIMIT_STORAGE": storage}
    with bench.stack.log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                str(PYTHON),
                "-m",
                "uvicorn",
                "bench_app:create_bench_app",
                "--factory",
                "--app-dir",
                str(SCRIPTS),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
                "--no-server-header",
            ],
            env=env,
            cwd=str(REPO),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bench app ({storage}) exited with {proc.returncode}\n{bench.stack.output()}")
        try:
            status, body = http_json("GET", f"http://127.0.0.1:{port}/v1/domains", bench.stack.key)
        except OSError:
            time.sleep(0.1)
            continue
        if status != 200:
            raise RuntimeError(f"bench app ({storage}): GET /v1/domains answered {status}: {body}")
        return proc, port
    raise RuntimeError(f"bench app ({storage}) did not answer within 30 s\n{bench.stack.output()}")


def _measure(bench: Bench, label: str, proc: subprocess.Popen[bytes], port: int, seconds: float) -> Sample:
    latencies: list[float] = []
    request = bench.request_bytes("/v1/domains")
    cpu0, client0 = cpu_seconds(proc.pid), time.process_time()
    began = time.perf_counter()
    done, errors = asyncio.run(_load("127.0.0.1", port, request, bench.concurrency, seconds, latencies))
    took = time.perf_counter() - began
    sample = Sample(label, done, errors, took, cpu_seconds(proc.pid) - cpu0, time.process_time() - client0, latencies)
    if errors:
        raise RuntimeError(f"{label}: {errors} of {done} responses were not 200")
    return sample


def _row(label: str, s: dict[str, float]) -> str:
    return (
        f"  {label:28} {s['rps']:8.0f} req/s  (rounds {s['min_rps']:.0f}..{s['max_rps']:.0f}, "
        f"median {s['median_rps']:.0f})  p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  "
        f"server CPU {s['cpu_us']:.0f} us/req (busy {100 * s['server_busy']:.0f}% of a core)  "
        f"n={s['requests']:.0f}"
    )


@case("ratelimit", "authenticated GET /v1/domains: rate-limit storage memory:// vs redis:// (one worker each)")
def ratelimit_storage(bench: Bench) -> None:
    apps = {label: _start(bench, storage) for label, storage in (("memory://", "memory://"), ("redis", REDIS_URL))}
    try:
        for label, (proc, port) in apps.items():
            _measure(bench, label, proc, port, min(1.0, bench.seconds))  # warm-up
        samples: dict[str, list[Sample]] = {label: [] for label in apps}
        for n in range(bench.rounds):
            order = list(apps.items()) if n % 2 == 0 else list(reversed(apps.items()))
            for label, (proc, port) in order:
                samples[label].append(_measure(bench, label, proc, port, bench.seconds))
    finally:
        for proc, _port in apps.values():
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    memory, redis = summarize(samples["memory://"]), summarize(samples["redis"])
    print(_row("memory://", memory))
    print(_row(f"redis ({REDIS_URL})", redis))
    print(
        f"  ratio redis/memory throughput: {redis['rps'] / memory['rps']:.3f} "
        f"(median rounds {redis['median_rps'] / memory['median_rps']:.3f}; goal >= 0.90)"
    )
