"""Inbound gateway and webhook benchmark case (registered with scripts/bench_harness.py).

``events``:

* the gateway's added delivery latency: ``N`` sequential LMTP transactions (one small message
  each, one connection per message as an MTA's delivery attempt) through the gateway on
  ``SHIPMAIL_LMTP_PORT`` and straight to Cyrus's LMTP socket behind it, in alternating rounds in
  the same run; p50 and p95 of each and the difference of the p50s (what the gateway adds:
  the relay hop, the recipient lookup and the committed delivery record), and the CPU per message
  of the gateway process, the API process (which runs the record job: the JMAP request finding
  the stored message and the committed event) and Cyrus, the figure that survives a loaded
  machine;
* the latency from the gateway's ``250`` to the webhook request arriving at a receiver on
  127.0.0.1 (``N`` messages, a webhook subscribed to ``message.received``; the stack restarted
  with ``SHIPMAIL_WEBHOOK_ALLOW_PRIVATE=1``): p50 and p95 (the goal is p95 <= 1 s).
"""

from __future__ import annotations

import json
import secrets
import smtplib
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench_harness import Bench, case, http_json, tree_cpu

N = 200


def _message(tag: str) -> bytes:
    return (
        f"From: bench-sender@example.org\r\nTo: bench@bench.example\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}@bench.example>\r\n\r\nHello.\r\n"
    ).encode()


def _one(target: str | int, recipient: str, data: bytes) -> float:
    began = time.perf_counter()
    host = target if isinstance(target, str) else "127.0.0.1"
    with smtplib.LMTP(host, 0 if isinstance(target, str) else target, timeout=60) as lmtp:
        refused = lmtp.sendmail("bench-sender@example.org", [recipient], data)
    if refused:
        raise RuntimeError(f"LMTP refused: {refused}")
    return time.perf_counter() - began


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@case("events", "inbound gateway's added LMTP latency vs Cyrus direct; LMTP 250 -> webhook request latency")
def events(bench: Bench) -> None:
    stack = bench.stack
    socket_path = str(stack.data_dir / "cyrus" / "lib" / "socket" / "lmtp")
    run = secrets.token_hex(3)
    through: list[float] = []
    direct: list[float] = []
    gateway = [p for p in stack.api_pids() if b"serve-gateway" in Path(f"/proc/{p}/cmdline").read_bytes()]
    others = [p for p in stack.api_pids() if p not in gateway]
    cpu = {"gateway": [0.0, 0.0, 0.0], "direct": [0.0, 0.0, 0.0]}  # gateway process, API, Cyrus
    rounds = 4
    for r in range(rounds):
        for label in ("gateway", "direct") if r % 2 == 0 else ("direct", "gateway"):
            before = (tree_cpu(gateway), tree_cpu(others), stack.cyrus_cpu())
            for i in range(N // rounds):
                data = _message(f"ev-{run}-{label}-{r}-{i}")
                if label == "gateway":
                    through.append(_one(stack.lmtp_port, stack.address, data))
                else:
                    direct.append(_one(socket_path, stack.address, data))
            stack.wait_cyrus_idle()  # the record jobs (API process) and Cyrus's indexing finish
            after = (tree_cpu(gateway), tree_cpu(others), stack.cyrus_cpu())
            for k in range(3):
                cpu[label][k] += after[k] - before[k]
    g50, d50 = _pct(through, 0.5), _pct(direct, 0.5)
    print(f"    LMTP through the gateway: p50 {g50:.2f} ms, p95 {_pct(through, 0.95):.2f} ms ({len(through)} messages)")
    print(f"    LMTP straight to Cyrus:   p50 {d50:.2f} ms, p95 {_pct(direct, 0.95):.2f} ms ({len(direct)} messages)")
    print(f"    added by the gateway (p50 difference): {g50 - d50:.2f} ms")
    for label, n in (("gateway", len(through)), ("direct", len(direct))):
        g, a, c = (1000 * v / n for v in cpu[label])
        print(
            f"    CPU per message, {label:7}: gateway process {g:.2f} ms, API process {a:.2f} ms "
            f"(the record job), Cyrus {c:.2f} ms"
        )

    arrivals: dict[str, float] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            at = time.perf_counter()
            subject = json.loads(body)["data"].get("subject")
            with lock:
                arrivals.setdefault(str(subject), at)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stack.restart(SHIPMAIL_WEBHOOK_ALLOW_PRIVATE="1")
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        status, body = http_json(
            "POST", stack.app_url + "/v1/webhooks", stack.key, {"url": url, "events": ["message.received"]}
        )
        assert status == 201, body
        sent: dict[str, float] = {}
        for i in range(N):
            tag = f"wh-{run}-{i}"
            _one(stack.lmtp_port, stack.address, _message(tag))
            sent[tag] = time.perf_counter()
            time.sleep(0.05)  # a steady stream rather than a burst
        deadline = time.monotonic() + 60
        while len(arrivals) < N and time.monotonic() < deadline:
            time.sleep(0.1)
        latencies = [arrivals[t] - sent[t] for t in sent if t in arrivals]
        print(
            f"    LMTP 250 -> webhook request at the receiver: p50 {_pct(latencies, 0.5):.0f} ms, "
            f"p95 {_pct(latencies, 0.95):.0f} ms, max {max(latencies) * 1000:.0f} ms "
            f"({len(latencies)} of {N} arrived; mean {statistics.mean(latencies) * 1000:.0f} ms)"
        )
    finally:
        server.shutdown()
        server.server_close()
