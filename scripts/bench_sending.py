"""Sending benchmark case (registered with scripts/bench_harness.py).

``send``: ``POST /v1/messages`` from one bench mailbox to another (a local recipient), one at a
time, p50/p95 of the request (it answers once the message is stored in Sent and handed to the
outgoing queue), against the SAME message bytes delivered straight over LMTP to the same
recipient in the same run (one LMTP transaction per message on a fresh connection: what the
queue does for a local recipient). Also the time until every sent message is in the recipient's
inbox (the queue drained), and the API and Cyrus CPU per send.
"""

from __future__ import annotations

import secrets
import smtplib
import statistics
import time
import urllib.request
from urllib.parse import urljoin

from bench_harness import Bench, case, http_json, spread

N = 40
WARMUP = 3


def _inbox_count(bench: Bench, address: str) -> int:
    import json

    stack = bench.stack
    session = stack.cyrus_session(address)
    call = {
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [["Email/query", {"accountId": address, "calculateTotal": True, "limit": 0}, "q"]],
    }
    request = urllib.request.Request(
        urljoin(stack.jmap_url, str(session["apiUrl"])),
        data=json.dumps(call).encode(),
        headers={"Authorization": stack.cyrus_bearer(address), "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.load(response)["methodResponses"][0][1]["total"])


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@case("send", "POST /v1/messages to a local mailbox vs the same message straight over LMTP (p50/p95, ratio)")
def send(bench: Bench) -> None:
    stack = bench.stack
    _, sender = stack.create_mailbox(f"sender{secrets.token_hex(2)}")
    _, recipient = stack.create_mailbox(f"rcpt{secrets.token_hex(2)}")
    body = {
        "from": sender,
        "to": [recipient],
        "subject": "Bench send — quarterly numbers",
        "text": "Hello,\n\nthe numbers are attached in spirit.\n" * 20,
        "html": "<p>Hello,</p><p>the numbers are attached in spirit.</p>" * 20,
    }
    api_lat: list[list[float]] = []
    lmtp_lat: list[list[float]] = []
    api_cpu: list[float] = []
    cyrus_cpu: list[float] = []
    sample = b""
    for _ in range(WARMUP):
        status, answer = http_json("POST", stack.app_url + "/v1/messages", stack.key, body)
        if status != 201:
            raise RuntimeError(f"POST /v1/messages: {status} {answer}")
    before = _inbox_count(bench, recipient)
    sent = 0
    per_round = max(1, N // bench.rounds)
    for n in range(bench.rounds):
        order = ("api", "lmtp") if n % 2 == 0 else ("lmtp", "api")
        for who in order:
            latencies: list[float] = []
            if who == "api":
                a0, c0 = stack.api_cpu(), stack.instance_cpu()
                for _ in range(per_round):
                    began = time.perf_counter()
                    status, answer = http_json("POST", stack.app_url + "/v1/messages", stack.key, body)
                    latencies.append(time.perf_counter() - began)
                    if status != 201:
                        raise RuntimeError(f"POST /v1/messages: {status} {answer}")
                    sent += 1
                api_cpu.append((stack.api_cpu() - a0) / per_round)
                cyrus_cpu.append((stack.instance_cpu() - c0) / per_round)
                api_lat.append(latencies)
            else:
                if not sample:
                    sample = _sample_message(sender, recipient)
                for _ in range(per_round):
                    message = sample.replace(b"@bench-lmtp>", f".{secrets.token_hex(8)}@bench-lmtp>".encode())
                    began = time.perf_counter()
                    with smtplib.LMTP("127.0.0.1", stack.lmtp_port, timeout=60) as lmtp:
                        refused = lmtp.sendmail(sender, [recipient], message)
                    latencies.append(time.perf_counter() - began)
                    if refused:
                        raise RuntimeError(f"LMTP refused: {refused}")
                lmtp_lat.append(latencies)
    lmtp_total = per_round * bench.rounds
    began = time.perf_counter()
    deadline = began + 60
    while _inbox_count(bench, recipient) < before + sent + lmtp_total and time.perf_counter() < deadline:
        time.sleep(0.05)
    drained = time.perf_counter() - began
    arrived = _inbox_count(bench, recipient) - before - lmtp_total

    def row(label: str, rounds: list[list[float]]) -> str:
        every = [x for r in rounds for x in r]
        return (
            f"  {label:34} p50 {spread([1000 * statistics.median(r) for r in rounds], '{:.1f}')} ms  "
            f"p95 {1000 * _p95(every):.1f} ms (n={len(every)})"
        )

    print(row("POST /v1/messages (local rcpt)", api_lat))
    print(row("same message straight over LMTP", lmtp_lat))
    api_p50 = statistics.median(x for r in api_lat for x in r)
    lmtp_p50 = statistics.median(x for r in lmtp_lat for x in r)
    api_p95 = _p95([x for r in api_lat for x in r])
    lmtp_p95 = _p95([x for r in lmtp_lat for x in r])
    print(f"  ratio API/LMTP: p50 {api_p50 / lmtp_p50:.2f}x, p95 {api_p95 / lmtp_p95:.2f}x")
    print(
        f"  CPU per send: API {spread([1000 * a for a in api_cpu], '{:.1f}')} ms, "
        f"Cyrus {spread([1000 * c for c in cyrus_cpu], '{:.1f}')} ms"
    )
    print(f"  {arrived} of {sent} sends in the recipient's inbox {drained:.2f} s after the last request")


def _sample_message(sender: str, recipient: str) -> bytes:
    """The message ``POST /v1/messages`` builds for the bench body (same builder, same size)."""
    from datetime import UTC, datetime

    from shipmail.messages import compose
    from shipmail.sandbox.service import Party

    draft = compose.Draft(
        sender=Party(sender),
        to=[Party(recipient)],
        subject="Bench send — quarterly numbers",
        text="Hello,\n\nthe numbers are attached in spirit.\n" * 20,
        html="<p>Hello,</p><p>the numbers are attached in spirit.</p>" * 20,
        message_id="<lmtp@bench-lmtp>",
    )
    return compose.build(draft, date=datetime.now(UTC))
