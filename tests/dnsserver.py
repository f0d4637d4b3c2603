"""A real authoritative DNS server on 127.0.0.1 for the domain tests (dnslib, UDP and TCP, in
threads), serving a zone the tests edit while it runs.

``Zone`` holds records by (name, type); names not in it answer NXDOMAIN, names with other types
only answer NOERROR with no records. TXT values longer than 255 bytes are split into several
character-strings, as a real zone must publish them (the checks join them, RFC 7208 3.3).
``Zone.mode``: ``answer`` (default), ``silent`` (queries are dropped: a resolver outage) or
``servfail``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import MX, QTYPE, RCODE, RR, TXT, DNSError, DNSRecord
from dnslib.server import DNSLogger, DNSServer


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(log="-recv,-send,-request,-reply,-truncated,-data", prefix=False)

    def log_error(self, handler: Any, e: Any) -> None:
        pass


def _chunks(value: str) -> list[bytes]:
    raw = value.encode()
    return [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]


class Zone:
    """Records served by the test server; safe to edit from the test while it answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], list[str]] = {}
        self.mode = "answer"
        self.queries = 0

    @staticmethod
    def _name(name: str) -> str:
        return name.rstrip(".").lower()

    def set(self, name: str, rtype: str, *values: str) -> None:
        """Replace the ``rtype`` records of ``name`` (``MX`` values: ``"10 mx.example"``)."""
        with self._lock:
            self._records[(self._name(name), rtype)] = list(values)

    def remove(self, name: str, rtype: str) -> None:
        with self._lock:
            self._records.pop((self._name(name), rtype), None)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
        self.mode = "answer"

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        self.queries += 1
        if self.mode == "silent":
            raise DNSError("dropped (test: resolver outage)")
        reply = request.reply()
        if self.mode == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        qname = str(request.q.qname)
        name = self._name(qname)
        rtype = QTYPE[request.q.qtype]
        with self._lock:
            values = list(self._records.get((name, rtype), []))
            exists = any(n == name for n, _ in self._records)
        if not exists:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for value in values:
            if rtype == "TXT":
                reply.add_answer(RR(qname, QTYPE.TXT, rdata=TXT(_chunks(value)), ttl=60))
            elif rtype == "MX":
                preference, exchange = value.split()
                reply.add_answer(RR(qname, QTYPE.MX, rdata=MX(exchange, int(preference)), ttl=60))
        return reply


@contextmanager
def dns_server() -> Iterator[tuple[Zone, str]]:
    """A started server on a free port of 127.0.0.1 (UDP and TCP); yields ``(zone, "host:port")``."""
    zone = Zone()
    for _ in range(20):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            udp = DNSServer(zone, address="127.0.0.1", port=port, logger=_QuietLogger())
            tcp = DNSServer(zone, address="127.0.0.1", port=port, tcp=True, logger=_QuietLogger())
        except OSError:
            continue
        break
    else:  # pragma: no cover
        raise RuntimeError("no free port for the test DNS server")
    udp.start_thread()
    tcp.start_thread()
    try:
        yield zone, f"127.0.0.1:{port}"
    finally:
        udp.stop()
        tcp.stop()
        udp.server.server_close()
        tcp.server.server_close()
