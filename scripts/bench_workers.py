"""Worker and rate-limit storage benchmark case (registered with scripts/bench_harness.py).

``workers``: ``shipmail serve`` restarted three times on the same data (mail, keys and mailboxes
stay): one worker with ``memory://`` rate-limit counters (the default), one worker with
``redis://`` (``SHIPMAIL_BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/1``), two workers
with ``redis://`` (the configuration several workers need: limits are exact across workers only
with a shared storage). Each serves an authenticated ``GET /v1/mailboxes/{id}`` on 8 connections
and the message list (``limit=50``) on 4, ``rounds`` rounds each; then the stack goes back to one
worker on ``memory://``. Prints throughput, p50 and CPU per request of the API processes (all
workers) and of Cyrus; the ratios redis/memory (goal >= 0.90) and 2 workers / 1 worker.

The machine has 2 cores shared by the load generator, the API and Cyrus: a second worker helps
only as far as a core is left over (see README, "Workers").
"""

from __future__ import annotations

import os

from bench_harness import Bench, Contender, case
from bench_inbox import LIMIT, ensure_seeded

REDIS_URL = os.environ.get("SHIPMAIL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")


@case("workers", "serve --workers 1 and 2, rate-limit storage memory:// and redis:// (auth read, message list)")
def workers(bench: Bench) -> None:
    stack = bench.stack
    ensure_seeded(stack)
    configs = (
        ("1 worker, memory://", 1, "memory://"),
        ("1 worker, redis://", 1, REDIS_URL),
        ("2 workers, redis://", 2, REDIS_URL),
    )
    paths = {
        "GET /v1/mailboxes/{id}, 8 conn": (f"/v1/mailboxes/{stack.mailbox_id}", 8),
        f"GET .../inbox/messages?limit={LIMIT}, 4 conn": (
            f"/v1/mailboxes/{stack.mailbox_id}/inbox/messages?limit={LIMIT}",
            4,
        ),
    }
    results: dict[str, dict[str, Contender]] = {label: {} for label in paths}
    try:
        for config, n, storage in configs:
            stack.restart(n, SHIPMAIL_RATELIMIT_STORAGE=storage)
            for label, (path, concurrency) in paths.items():
                (measured,) = bench.compare({config: bench.api(path)}, concurrency=concurrency)
                results[label][config] = measured
    finally:
        stack.restart(1)
    for label, by_config in results.items():
        print(f"  {label}:")
        bench.table(list(by_config.values()))
        one, redis, two = (by_config[c[0]] for c in configs)
        print(
            f"    redis/memory throughput {redis.median('rps') / one.median('rps'):.2f}x (goal >= 0.90); "
            f"2 workers / 1 worker (redis) {two.median('rps') / redis.median('rps'):.2f}x"
        )
