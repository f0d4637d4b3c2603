"""Inbox rules benchmark case (registered with scripts/bench_harness.py).

``rules``: the latency of ``PUT /v1/mailboxes/{id}/rules`` with the largest rule set the API
takes in practice: 50 rules of 10 conditions each, every value 256 characters (alternately
recipient_is, which the script holds twice, and subject_contains), each rule starring, marking
read and moving to a custom folder (``fileinto :mailboxid``), with ``stop``. Each PUT validates the
set, reads and locks the mailbox row, reads the folders (one JMAP Mailbox/get), compiles the Sieve
script (text built once, no parse-back), uploads it and activates it in one JMAP request (Cyrus
compiles it to bytecode), and commits.

For scale the same loop runs with a one-rule set, and ``GET .../rules``. Prints the p50 of each
of ``rounds`` rounds of sequential requests (``N`` in all, after a warm-up; median (min..max) over
the rounds), the p95 over all of them, the size of the active script (read back
from Cyrus), the CPU per PUT of the API process and of Cyrus, and checks that a delivered message
matching the last condition of the last rule lands in the folder.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
import urllib.request
import uuid
from typing import Any
from urllib.parse import urljoin

from bench_harness import Bench, case, http_json, spread

N = 30
WARMUP = 3


def _rules(folder_id: str, count: int, conditions: int) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.UUID(int=i + 1, version=4)),
            "name": f"Bench rule {i}",
            "enabled": True,
            "position": i,
            "match_mode": "any",
            "stop": True,
            "conditions": [
                {"type": "subject_contains" if j % 2 else "recipient_is", "value": f"{i:02d}-{j}-" + "v" * 251}
                for j in range(conditions)
            ],
            "actions": [
                {"type": "move", "target": {"kind": "custom", "folder_id": folder_id}},
                {"type": "mark_read"},
                {"type": "star"},
            ],
        }
        for i in range(count)
    ]


def _timed(bench: Bench, method: str, path: str, body: object, n: int) -> tuple[list[float], float, float]:
    """``n`` sequential requests (after a warm-up); latencies (s), API CPU and Cyrus CPU (s) per request."""
    stack = bench.stack
    url = stack.app_url + path
    for _ in range(WARMUP):
        status, answer = http_json(method, url, stack.key, body)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {answer}")
    latencies: list[float] = []
    api0, cyrus0 = stack.api_cpu(), stack.cyrus_cpu()
    for _ in range(n):
        began = time.perf_counter()
        status, answer = http_json(method, url, stack.key, body)
        latencies.append(time.perf_counter() - began)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {answer}")
    return latencies, (stack.api_cpu() - api0) / n, (stack.cyrus_cpu() - cyrus0) / n


def _row(label: str, rounds: list[tuple[list[float], float, float]]) -> str:
    """p50 per round, p95 over all, CPU per request per round: median (min..max) over the rounds."""
    everything = sorted(x for lat, _, _ in rounds for x in lat)
    p95 = everything[min(len(everything) - 1, round(0.95 * (len(everything) - 1)))]
    return (
        f"  {label:30} p50 {spread([1000 * statistics.median(lat) for lat, _, _ in rounds], '{:.1f}')} ms  "
        f"p95 {1000 * p95:.1f} ms (n={len(everything)})  CPU/request: API "
        f"{spread([1000 * a for _, a, _ in rounds])} ms, Cyrus {spread([1000 * c for _, _, c in rounds])} ms"
    )


def _active_script_size(bench: Bench, address: str) -> int:
    stack = bench.stack
    session = stack.cyrus_session(address)
    bearer = stack.cyrus_bearer(address)
    call = {
        "using": ["urn:ietf:params:jmap:core", "https://cyrusimap.org/ns/jmap/sieve"],
        "methodCalls": [["SieveScript/get", {"accountId": address, "ids": None}, "s"]],
    }
    request = urllib.request.Request(
        urljoin(stack.jmap_url, str(session["apiUrl"])),
        data=json.dumps(call).encode(),
        headers={"Authorization": bearer, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        listed = json.loads(response.read())["methodResponses"][0][1]["list"]
    (active,) = [s for s in listed if s["isActive"]]
    download = (
        str(session["downloadUrl"])
        .replace("{accountId}", address)
        .replace("{blobId}", active["blobId"])
        .replace("{name}", "script.sieve")
        .replace("{type}", "application/sieve")
    )
    request = urllib.request.Request(urljoin(stack.jmap_url, download), headers={"Authorization": bearer})
    with urllib.request.urlopen(request, timeout=15) as response:
        return len(response.read())


@case("rules", "PUT /v1/mailboxes/{id}/rules with 50 rules x 10 conditions of 256 characters (p50/p95)")
def rules_put(bench: Bench) -> None:
    stack = bench.stack
    # A mailbox of its own: a row holding 50 x 10 rules costs every later request on it more
    # (the auth case measures that).
    mailbox_id, address = stack.create_mailbox("rules")
    base = f"/v1/mailboxes/{mailbox_id}"
    status, folder = http_json(
        "POST",
        stack.app_url + base + "/folders",
        stack.key,
        {"name": f"Bench rules {secrets.token_hex(2)}", "parent_id": None},
    )
    if status != 201:
        raise RuntimeError(f"folder create: {status} {folder}")
    folder_id = str(folder["id"])  # type: ignore[index]
    big = {"rules": _rules(folder_id, 50, 10)}
    small = {"rules": _rules(folder_id, 1, 1)}
    print(f"  request body: {len(json.dumps(big))} bytes (50 rules x 10 conditions x 256 characters)")
    for label, method, body in (
        ("PUT 1 rule x 1 condition", "PUT", small),
        ("GET rules (50 x 10 saved)", "GET", None),
        ("PUT 50 rules x 10 conditions", "PUT", big),
    ):
        if method == "GET":
            http_json("PUT", stack.app_url + base + "/rules", stack.key, big)
        rounds = [_timed(bench, method, base + "/rules", body, N // bench.rounds) for _ in range(bench.rounds)]
        print(_row(label, rounds))
    print(f"  active script after the 50 x 10 PUT: {_active_script_size(bench, address)} bytes")
    subject = "49-9-" + "v" * 251
    message = (
        f"From: a@bench.example\r\nTo: {address}\r\nSubject: x {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@bench.example>\r\n\r\nbench\r\n"
    ).encode()
    stack.deliver([message], address)
    status, listed = http_json("GET", stack.app_url + f"/v1/mailboxes/{mailbox_id}/folders", stack.key)
    counts = {f["id"]: f["total_emails"] for f in listed["data"]}  # type: ignore[index]
    print(
        f"  delivery check: the message matching the last rule's last condition is in the rules' folder: "
        f"{counts.get(folder_id) == 1}"
    )
