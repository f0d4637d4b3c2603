"""A webhook receiver on 127.0.0.1 for tests: records every request and answers with the status
codes it is told to (then 200), and verifies Standard Webhooks signatures with the scheme written
out here (HMAC-SHA256 over ``<webhook-id>.<webhook-timestamp>.<body>``, base64, ``v1,`` prefix),
independently of the ``standardwebhooks`` package the server signs with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


def signatures_valid(secret: str, headers: dict[str, str], body: bytes) -> list[bool]:
    """For each ``v1,<sig>`` of ``webhook-signature``: whether ``secret`` (``whsec_<base64>``)
    made it."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return [
        version == "v1" and hmac.compare_digest(value, expected)
        for version, _, value in (part.partition(",") for part in headers["webhook-signature"].split(" "))
    ]


def verify(secret: str, request: Received, tolerance: float = 300.0) -> bool:
    """The receiver's check: one signature made by ``secret`` and a timestamp within 5 minutes."""
    fresh = abs(time.time() - int(request.headers["webhook-timestamp"])) <= tolerance
    return fresh and any(signatures_valid(secret, request.headers, request.body))


class Receiver:
    """``with Receiver() as r:`` serves on ``r.url``; ``r.answers`` are the statuses of the next
    requests (then 200)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                    )
                    status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"x" * 3000)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.requests)} of {count} webhook request(s) arrived")

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
