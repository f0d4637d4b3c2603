"""Foundation benchmark cases (registered with scripts/bench_harness.py).

``auth``: what authentication costs. The same server and concurrency serve, in alternating rounds,
an authenticated ``GET /v1/mailboxes/{id}`` (Bearer key: HMAC digest, key lookup in the database,
scope check, rate limiter, then the mailbox row) and the bench-only trivial ``GET /bench/noop``
(same middleware, nothing else; the request carries the same headers). Prints each throughput and
their ratio auth/trivial.
"""

from __future__ import annotations

from bench_harness import Bench, case, summarize


def _row(label: str, s: dict[str, float]) -> str:
    return (
        f"  {label:34} {s['rps']:8.0f} req/s  (rounds {s['min_rps']:.0f}..{s['max_rps']:.0f}, "
        f"median {s['median_rps']:.0f})  p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  "
        f"n={s['requests']:.0f}\n  {'':34} server CPU {s['cpu_us']:.0f} us/req (server busy "
        f"{100 * s['server_busy']:.0f}% of a core), client CPU {s['client_cpu_us']:.0f} us/req"
    )


@case("auth", "authenticated GET /v1/mailboxes/{id} vs the trivial unauthenticated GET /bench/noop")
def auth_overhead(bench: Bench) -> None:
    paths = {
        "auth: GET /v1/mailboxes/{id}": f"/v1/mailboxes/{bench.stack.mailbox_id}",
        "trivial: GET /bench/noop": "/bench/noop",
    }
    samples = bench.compare(paths)
    (auth_label, auth), (trivial_label, trivial) = ((k, summarize(v)) for k, v in samples.items())
    print(_row(auth_label, auth))
    print(_row(trivial_label, trivial))
    print(
        f"  ratio auth/trivial throughput: {auth['rps'] / trivial['rps']:.3f} "
        f"(median rounds {auth['median_rps'] / trivial['median_rps']:.3f}); "
        f"server CPU per request auth/trivial: {auth['cpu_us'] / trivial['cpu_us']:.1f}x"
    )
    if trivial["server_busy"] < 0.8:
        print(
            "  note: the trivial route did not saturate the server (client or other load on the machine was "
            "the limit), so the throughput ratio understates the cost of auth; the CPU ratio does not."
        )
