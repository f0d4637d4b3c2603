"""Foundation benchmark case (registered with scripts/bench_harness.py).

``auth``: what authentication and one row cost. In alternating rounds, on 1 and then 8
connections: an authenticated ``GET /v1/mailboxes/{id}`` (Bearer key: HMAC digest, key lookup,
scope check, rate-limit count, the mailbox row) and the cheapest real route,
``GET /v1/openapi.json`` (no auth, no database: a prebuilt document; same server, same access
log, same headers sent). Prints throughput, p50 and the API's CPU per request of each.

Goal (issue 10): at 8 connections the authenticated read reaches at least half the trivial
route's throughput, at most 0.3 ms of API CPU per request.
"""

from __future__ import annotations

from bench_harness import Bench, case


@case("auth", "authenticated GET /v1/mailboxes/{id} vs the cheapest real route GET /v1/openapi.json")
def auth_overhead(bench: Bench) -> None:
    targets = {
        "auth    GET /v1/mailboxes/{id}": bench.api(f"/v1/mailboxes/{bench.stack.mailbox_id}"),
        "trivial GET /v1/openapi.json": bench.api("/v1/openapi.json"),
    }
    for concurrency in (1, 8):
        print(f"  {concurrency} connection(s):")
        auth, trivial = bench.compare(targets, concurrency=concurrency)
        bench.table([auth, trivial])
        print(
            f"    ratio auth/trivial (medians): throughput {auth.median('rps') / trivial.median('rps'):.2f}x; "
            f"API CPU per request {auth.median('api_ms'):.3f} ms vs {trivial.median('api_ms'):.3f} ms"
        )
