"""Attachment download benchmark case (registered with scripts/bench_harness.py).

``attachment``: a 50 MiB attachment (random bytes, base64 in a multipart/mixed message delivered
over LMTP) downloaded, in alternating rounds, through the API
(``GET /v1/mailboxes/{id}/inbox/attachments?blob_id=...&name=...``) and straight from Cyrus's
JMAP ``downloadUrl`` (Bearer JWT) over the same Unix socket the API downloads through. Prints
the throughput of each and their ratio API/direct, the
time to the first body byte, CPU per download, and the bench app's resident memory: before, and
its peak during each API download (VmRSS sampled every 2 ms, and VmHWM after resetting it with
``/proc/<pid>/clear_refs``), and how long the first byte took against the API's
upstream timeout (``SHIPMAIL_JMAP_TIMEOUT``): Cyrus answers only once it has decoded the whole blob.

The client streams: one connection per download (``Connection: close``), ``recv_into`` one 1 MiB
buffer, bytes counted and discarded (SHA-1 checked against the original on the warm-up downloads
only). Cyrus needs no option for a 50 MiB message: ``maxmessagesize`` defaults to 0 (no limit)
and the generated imapd.conf does not set it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

from bench_harness import Bench, case, http_json, spread

SIZE = 50 * 1024 * 1024
NAME = "random-50MiB.bin"
_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})")
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.IGNORECASE)


def attachment_message(address: str, data: bytes) -> bytes:
    """A multipart/mixed message (CRLF) with a short text part and ``data`` as a base64
    application/octet-stream attachment named :data:`NAME`."""
    boundary = "=_bench_attachment_" + base64.b32encode(os.urandom(10)).decode()
    head = (
        f"From: Bench Sender <bench-sender@example.org>\r\nTo: <{address}>\r\n"
        f"Subject: 50 MiB attachment\r\nDate: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        f"Message-ID: <bench-attachment-{boundary[-16:]}@example.org>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe file is attached.\r\n"
        f'--{boundary}\r\nContent-Type: application/octet-stream; name="{NAME}"\r\n'
        f'Content-Disposition: attachment; filename="{NAME}"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    ).encode()
    return head + base64.encodebytes(data).replace(b"\n", b"\r\n") + f"--{boundary}--\r\n".encode()


@dataclass
class Download:
    status: int
    nbytes: int
    seconds: float
    first_byte: float
    digest: str | None = None


def download(where: int | str, target: str, headers: dict[str, str], *, verify: bool = False) -> Download:
    """``GET target`` on a fresh connection to 127.0.0.1:``where`` (a port) or the Unix socket
    ``where`` (a path), body read into one reused 1 MiB buffer and thrown away (hashed when
    ``verify``)."""
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{where}" if isinstance(where, int) else "Host: localhost",
        "Connection: close",
        "Accept-Encoding: identity",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    sha1 = hashlib.sha1() if verify else None
    began = time.perf_counter()
    if isinstance(where, int):
        sock = socket.create_connection(("127.0.0.1", where), timeout=60)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect(where)
    with sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            n = sock.recv_into(buffer)
            if n == 0:
                raise RuntimeError(f"connection closed before the response head: {head[:200]!r}")
            head += bytes(view[:n])
        first_byte = time.perf_counter() - began
        head, _, rest = head.partition(b"\r\n\r\n")
        status_match, length_match = _STATUS.match(head), _LENGTH.search(head)
        if status_match is None:
            raise RuntimeError(f"not an HTTP response: {head[:200]!r}")
        status = int(status_match.group(1))
        if _CHUNKED.search(head):
            raise RuntimeError(f"chunked response, byte count would include framing: {head[:300]!r}")
        total = len(rest)
        if sha1 is not None:
            sha1.update(rest)
        while True:
            n = sock.recv_into(buffer)
            if n == 0:
                break
            total += n
            if sha1 is not None:
                sha1.update(view[:n])
    took = time.perf_counter() - began
    if status == 200 and (length_match is None or int(length_match.group(1)) != total):
        raise RuntimeError(f"read {total} bytes, Content-Length said {length_match and length_match.group(1)!r}")
    return Download(status, total, took, first_byte, sha1.hexdigest() if sha1 else None)


def _kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field_name} for pid {pid}")


def _reset_hwm(pid: int) -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS (``clear_refs`` 5, Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """VmRSS of ``pid`` every ``interval`` seconds in a thread, while in the ``with`` block."""

    def __init__(self, pid: int, interval: float = 0.002) -> None:
        self.pid, self.interval = pid, interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _kib(self.pid, "VmRSS"))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, _kib(self.pid, "VmRSS"))


@dataclass
class Target:
    label: str
    where: int | str  # TCP port or Unix socket path
    target: str
    headers: dict[str, str]
    downloads: list[Download] = field(default_factory=list)
    app_cpu: float = 0.0
    cyrus_cpu: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return sum(d.nbytes for d in self.downloads) / sum(d.seconds for d in self.downloads) / 1e6

    @property
    def body_mb_per_s(self) -> float:
        """Throughput after the first byte (the relay itself, without the wait for the answer)."""
        return sum(d.nbytes for d in self.downloads) / sum(d.seconds - d.first_byte for d in self.downloads) / 1e6

    def row(self) -> str:
        n = len(self.downloads)
        rates = [d.nbytes / d.seconds / 1e6 for d in self.downloads]
        first = [1000 * d.first_byte for d in self.downloads]
        return (
            f"    {self.label:36} {spread(rates)} MB/s per download, median (min..max) over {n}\n"
            f"    {'':36} first byte after {spread(first)} ms, then {self.body_mb_per_s:.0f} MB/s\n"
            f"    {'':36} CPU per download: API {self.app_cpu / n:.3f} s, Cyrus {self.cyrus_cpu / n:.3f} s"
        )


@case("attachment", "a 50 MiB attachment downloaded via the API vs straight from Cyrus's JMAP downloadUrl")
def attachment_download(bench: Bench) -> None:
    stack = bench.stack
    if stack.workers != 1:
        raise RuntimeError("the attachment case samples one API process's memory: run it with one worker")
    assert stack.serve is not None
    pid = stack.serve.pid  # one worker: uvicorn serves in serve's own process
    began = time.monotonic()
    data = os.urandom(SIZE)
    expected = hashlib.sha1(data).hexdigest()
    message = attachment_message(stack.address, data)
    del data
    t0 = time.monotonic()
    stack.deliver([message])
    delivered = time.monotonic() - t0
    size = len(message)
    del message
    waited = stack.wait_cyrus_idle()
    print(
        f"  delivered a {size / 1e6:.1f} MB message ({SIZE / 1e6:.1f} MB attachment, base64) over LMTP in "
        f"{delivered:.1f} s (no size limit in the way: maxmessagesize is unset, i.e. 0); "
        f"Cyrus idle {waited:.1f} s later"
    )

    # Find the attachment through the API, as a client would.
    base = f"/v1/mailboxes/{stack.mailbox_id}/inbox/messages"
    status, listed = http_json("GET", f"{stack.app_url}{base}?limit=1", stack.key)
    assert status == 200, listed
    newest = listed["data"][0]  # type: ignore[index]
    status, full = http_json("GET", f"{stack.app_url}{base}/{newest['id']}", stack.key)
    assert status == 200, full
    part = next(a for a in full["attachments"] if a["name"] == NAME)  # type: ignore[index]
    assert part["size"] == SIZE, part

    session = stack.cyrus_session()
    template = urljoin(stack.jmap_url, str(session["downloadUrl"]))
    direct_url = urlsplit(
        template.replace("{accountId}", quote(stack.address, safe=""))
        .replace("{blobId}", quote(part["blob_id"], safe=""))
        .replace("{name}", quote(NAME, safe=""))
        .replace("{type}", quote("application/octet-stream", safe=""))
    )
    paths = [
        Target(
            "API    GET .../inbox/attachments",
            stack.app_port,
            "/v1" + part["download_path"],
            {"Authorization": f"Bearer {stack.key}"},
        ),
        Target(
            "direct GET downloadUrl (Unix socket)",
            stack.jmap_socket,
            f"{direct_url.path}?{direct_url.query}",
            {"Authorization": stack.cyrus_bearer()},
        ),
    ]
    api = paths[0]

    rss_start = _kib(pid, "VmRSS")
    for p in paths:  # warm-up, checking the bytes
        got = download(p.where, p.target, p.headers, verify=True)
        if got.status != 200 or got.digest != expected or got.nbytes != SIZE:
            raise RuntimeError(
                f"{p.label}: status {got.status}, {got.nbytes} bytes, sha1 {got.digest} (want {expected})"
            )

    hwm_ok = True
    growth: list[tuple[int, int, int]] = []  # (RSS before, sampled peak, VmHWM after) per API download, KiB
    for n in range(bench.rounds):
        for p in paths if n % 2 == 0 else paths[::-1]:
            app0, cyrus0 = stack.api_cpu(), stack.cyrus_cpu()
            if p is api:
                before = _kib(pid, "VmRSS")
                hwm_ok = _reset_hwm(pid) and hwm_ok
                with RssSampler(pid) as sampler:
                    got = download(p.where, p.target, p.headers)
                growth.append((before, sampler.peak_kib, _kib(pid, "VmHWM")))
            else:
                got = download(p.where, p.target, p.headers)
            p.app_cpu += stack.api_cpu() - app0
            p.cyrus_cpu += max(0.0, stack.cyrus_cpu() - cyrus0)
            if got.status != 200 or got.nbytes != SIZE:
                raise RuntimeError(f"{p.label}: status {got.status}, {got.nbytes} bytes")
            p.downloads.append(got)
    rss_end = _kib(pid, "VmRSS")

    print(
        f"  {bench.rounds} alternating rounds, one {SIZE / 1e6:.1f} MB download per path per round "
        "(fresh connection each, client discards the bytes):"
    )
    for p in paths:
        print(p.row())
    direct = paths[1]
    print(
        f"    ratio API/direct throughput: {api.mb_per_s / direct.mb_per_s:.3f} (after the first byte: "
        f"{api.body_mb_per_s / direct.body_mb_per_s:.3f}); API process CPU "
        f"{1000 * api.app_cpu / len(api.downloads) / (SIZE / 1e6):.1f} ms per MB"
    )
    worst = max(growth, key=lambda g: max(g[1], g[2] if hwm_ok else 0) - g[0])
    peak = max(worst[1], worst[2] if hwm_ok else 0)
    print(
        f"  bench app RSS: {rss_start / 1024:.1f} MiB before any download, {rss_end / 1024:.1f} MiB after them; "
        f"largest growth during one API download {peak - worst[0]:+d} KiB ({worst[0]} -> {peak} KiB; "
        f"sampled VmRSS max {max(g[1] - g[0] for g in growth):+d} KiB"
        + (f", VmHWM max {max(g[2] - g[0] for g in growth):+d} KiB)" if hwm_ok else "; VmHWM could not be reset)")
    )
    timeout = float(stack.env.get("SHIPMAIL_JMAP_TIMEOUT", "2.0"))
    slowest = max(d.first_byte for p in paths for d in p.downloads)
    print(
        f"  Cyrus sends the first byte only once the whole blob is decoded; the API waits at most "
        f"SHIPMAIL_JMAP_TIMEOUT = {timeout:g} s for it (then 503): the slowest first byte here took "
        f"{slowest:.2f} s, {100 * slowest / timeout:.0f}% of that, with one download at a time"
    )
    print(f"  case took {time.monotonic() - began:.1f} s")
