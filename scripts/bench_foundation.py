"""Foundation benchmark case (registered with scripts/bench_harness.py).

``auth``: what authentication and one row cost. In alternating rounds, on 1 and then 8
connections: an authenticated ``GET /v1/mailboxes/{id}`` (Bearer key: HMAC digest, key lookup,
scope check, rate-limit count, the mailbox row) and the cheapest real route,
``GET /v1/openapi.json`` (no auth, no database: a prebuilt document; same server, same access
log, same headers sent). Prints throughput, p50 and the API's CPU per request of each.

Goal (issue 10): at 8 connections the authenticated read reaches at least half the trivial
route's throughput, at most 0.3 ms of API CPU per request.

A third contender reads a mailbox holding the largest rule set (50 rules x 10 conditions of 256
characters, as in the ``rules`` case): the row is read without its rules column.

Before/after in the same run: ``SHIPMAIL_BENCH_BASELINE=<git revision>`` (e.g. ``main``) also
starts two API servers on the same data, each as ``shipmail serve`` starts its API (uvicorn, one
worker, access log on): one running this tree, one running that revision's ``shipmail`` package
(``git archive``, first on ``PYTHONPATH``); both serve the authenticated read and the trivial
route, in the same alternating rounds.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from bench_harness import REPO, Bench, Contender, Stack, Target, case, http_json
from bench_rules import _rules
from bench_workers import servers


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


def _baseline(bench: Bench, revision: str, paths: dict[str, str], concurrencies: tuple[int, ...] = (1, 8)) -> None:
    """This tree and ``revision``, each in an API server of its own (see the module doc), serving
    ``paths`` (label -> path; the first is the one whose ratio is printed)."""
    stack = bench.stack
    first = next(iter(paths))
    with tempfile.TemporaryDirectory(prefix="shipmail-bench-baseline-") as tree:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        configs = {"this tree": (1, "memory://", None), f"{revision}": (1, "memory://", tree)}
        with servers(
            stack, {k: (w, s) for k, (w, s, _) in configs.items()}, sources={k: v[2] for k, v in configs.items()}
        ) as running:
            for concurrency in concurrencies:
                targets: dict[str, Target] = {}
                for label, server in running.items():
                    for what, path in paths.items():
                        request = bench.api(path).request.replace(
                            f"127.0.0.1:{stack.app_port}".encode(), f"127.0.0.1:{server.port}".encode()
                        )
                        targets[f"{what:7} {label}"] = Target(request, port=server.port, server_cpu=server.cpu)
                print(f"  before/after, {concurrency} connection(s):")
                measured: list[Contender] = bench.compare(targets, concurrency=concurrency)
                bench.table(measured)
                by = {c.label: c for c in measured}
                for what in paths if len(paths) > 2 else (first,):
                    new, old = by[f"{what:7} this tree"], by[f"{what:7} {revision}"]
                    cpu_new, cpu_old = new.median("api_ms"), old.median("api_ms")
                    print(
                        f"    {what}: this tree / {revision} (medians): API CPU per request {cpu_new:.3f} / "
                        f"{cpu_old:.3f} ms ({cpu_new / cpu_old:.2f}x), "
                        f"throughput {new.median('rps') / old.median('rps'):.2f}x"
                    )


@case("auth-baseline", "auth and trivial route: this tree vs $SHIPMAIL_BENCH_BASELINE (default main), same run")
def auth_baseline(bench: Bench) -> None:
    stack = bench.stack
    paths = {"auth": f"/v1/mailboxes/{stack.mailbox_id}", "trivial": "/v1/openapi.json"}
    _baseline(bench, os.environ.get("SHIPMAIL_BENCH_BASELINE", "main"), paths)


@case("reads-baseline", "message get, thread get, folder list: this tree vs $SHIPMAIL_BENCH_BASELINE, same run")
def reads_baseline(bench: Bench) -> None:
    """The ``reads`` case's three requests served by this tree and by another revision (default
    ``main``) side by side on the same data and the same Cyrus, 1 connection: before/after
    figures of one run."""
    from bench_inbox import read_paths

    _baseline(bench, os.environ.get("SHIPMAIL_BENCH_BASELINE", "main"), read_paths(bench.stack), (1,))
