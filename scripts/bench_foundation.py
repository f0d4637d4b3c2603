"""Foundation benchmark case (registered with scripts/bench_harness.py).

``auth``: what authentication and one row cost. In alternating rounds, on 1 and then 8
connections: an authenticated ``GET /v1/mailboxes/{id}`` (Bearer key: HMAC digest, key lookup,
scope check, rate-limit count, the mailbox row) and the cheapest real route,
``GET /v1/openapi.json`` (no auth, no database: a prebuilt document; same server, same access
log, same headers sent). Prints throughput, p50 and the API's CPU per request of each.

Goal (issue 10): at 8 connections the authenticated read reaches at least half the trivial
route's throughput, at most 0.3 ms of API CPU per request.

A third contender reads a mailbox holding the largest rule set (50 rules x 10 conditions of 256
characters, as in the ``rules`` case): the ORM loads the whole row, rules column included, on
every request scoped to a mailbox.
"""

from __future__ import annotations

from bench_harness import Bench, Stack, case, http_json
from bench_rules import _rules


def _mailbox_with_rules(stack: Stack) -> str:
    """A new mailbox with 50 rules x 10 conditions saved; its id."""
    mailbox_id, _ = stack.create_mailbox("ruled")
    base = f"{stack.app_url}/v1/mailboxes/{mailbox_id}"
    status, folder = http_json("POST", base + "/folders", stack.key, {"name": "Ruled", "parent_id": None})
    assert status == 201, folder
    status, saved = http_json("PUT", base + "/rules", stack.key, {"rules": _rules(str(folder["id"]), 50, 10)})  # type: ignore[index]
    assert status == 200, saved
    return mailbox_id


@case("auth", "authenticated GET /v1/mailboxes/{id} vs the cheapest real route GET /v1/openapi.json")
def auth_overhead(bench: Bench) -> None:
    ruled = _mailbox_with_rules(bench.stack)
    targets = {
        "auth    GET /v1/mailboxes/{id}": bench.api(f"/v1/mailboxes/{bench.stack.mailbox_id}"),
        "trivial GET /v1/openapi.json": bench.api("/v1/openapi.json"),
        "auth    same, mailbox with 50x10 rules": bench.api(f"/v1/mailboxes/{ruled}"),
    }
    for concurrency in (1, 8):
        print(f"  {concurrency} connection(s):")
        auth, trivial, heavy = bench.compare(targets, concurrency=concurrency)
        bench.table([auth, trivial, heavy])
        print(
            f"    ratio auth/trivial (medians): throughput {auth.median('rps') / trivial.median('rps'):.2f}x; "
            f"API CPU per request {auth.median('api_ms'):.3f} ms vs {trivial.median('api_ms'):.3f} ms"
        )
