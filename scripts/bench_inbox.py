"""Inbox benchmark case (registered with scripts/bench_harness.py).

``inbox``: what the API adds on top of Cyrus for a message list. The bench mailbox is first seeded
over LMTP with 250 generated messages (plain text, replies, encoded subjects, some with a small
attachment). Then, in alternating rounds, the same client sends

* API: ``GET /v1/mailboxes/{id}/inbox/messages?limit=50`` (Bearer key) to the bench app, and
* direct: the JMAP request that call makes, sent straight to Cyrus with a Bearer JWT: Email/query
  (``before`` the current second, sort ``receivedAt desc, id desc``, limit 50, calculateTotal)
  and Email/get of its ids by back-reference with the list properties
  (:data:`shipmail.jmap.email.LIST_PROPERTIES`), as :func:`shipmail.inbox.service.list_messages`
  builds it (checked: both answer the same 50 ids in the same order).

Both run first on one connection (sequential requests), then on 4 connections. Prints p50/p95
latency of each, their ratio API/direct, and the CPU per request of the API process and of Cyrus.

The sequential rounds also send the direct request from a client that re-arms ``TCP_QUICKACK``
after every read (a diagnostic, not a third contender): Cyrus's httpd writes a response in 4 KiB
pieces without ``TCP_NODELAY``, so on a keep-alive connection the tail of any answer over 4 KiB
waits for the client's delayed ACK (~40 ms on Linux); the difference to the plain direct client is
that stall, which the API's own httpx client pays on every such JMAP response as well.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import socket
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime
from urllib.parse import urljoin, urlsplit

from bench_harness import Bench, _load, case, cpu_seconds, http_json
from jmapc.methods import EmailGet

from shipmail.jmap import email as jemail
from shipmail.jmap import ids
from shipmail.jmap.request import Request

SEED_MESSAGES = 250
LIMIT = 50
CONCURRENCY = 4

_WORDS = (  # noqa: SIM905 (a sentence, not a list to maintain)
    "invoice shipment order delivery account update meeting agenda report quarterly review draft "
    "contract proposal budget schedule reminder payment receipt travel booking confirmation ticket "
    "support request release notes feedback survey newsletter welcome password security alert team "
    "project milestone deadline approval signature document attached summary question answer thanks"
).split()
_NAMES = [
    "Alice Martin",
    "Bob Nguyen",
    "Chloé Dubois",
    "Dmitri Ivanov",
    "Eva Schmidt",
    "François Petit",
    "Grace Hopper",
    "Hiro Tanaka",
    "Inès García",
    "Jonas Berg",
]


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _paragraphs(rng: random.Random, count: int) -> str:
    return "\r\n\r\n".join(
        "\r\n".join(_sentence(rng, rng.randint(8, 14)) for _ in range(rng.randint(2, 5))) for _ in range(count)
    )


def seed_messages(address: str, count: int = SEED_MESSAGES, seed: int = 3) -> list[bytes]:
    """``count`` varied RFC 5322 messages (CRLF) to ``address``, unique Message-IDs, dates an hour
    apart: plain text, some multipart/mixed with a small attachment, some replies, some encoded
    (non-ASCII) subjects and sender names."""
    rng = random.Random(seed)
    run = base64.b32encode(rng.randbytes(5)).decode().lower()
    now = datetime.now(UTC).timestamp()
    messages: list[bytes] = []
    previous: tuple[str, str] | None = None
    for i in range(count):
        name = _NAMES[i % len(_NAMES)]
        sender = name.split()[0].lower().encode("ascii", "ignore").decode() or "sender"
        msgid = f"<bench-{run}-{i}@example.org>"
        subject = _sentence(rng, rng.randint(3, 7)).rstrip(".")
        extra: list[str] = []
        if i % 10 == 9 and previous is not None:
            subject = f"Re: {previous[1]}"
            extra = [f"In-Reply-To: {previous[0]}", f"References: {previous[0]}"]
        if i % 7 == 3:
            subject = f"Résumé {subject} ✓"
        date = datetime.fromtimestamp(now - (count - i) * 3600, UTC)
        head = [
            f"From: {Header(name, 'utf-8').encode()} <{sender}@example.org>",
            f"To: Bench <{address}>",
            f"Subject: {Header(subject, 'utf-8').encode()}",
            f"Date: {format_datetime(date)}",
            f"Message-ID: {msgid}",
            *extra,
            "MIME-Version: 1.0",
        ]
        text = _paragraphs(rng, rng.randint(1, 4))
        if i % 8 == 5:
            boundary = f"=_bench_{run}_{i}"
            attachment = base64.encodebytes(rng.randbytes(rng.randint(2_000, 20_000))).replace(b"\n", b"\r\n").decode()
            head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
            body = (
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                f'{text}\r\n--{boundary}\r\nContent-Type: application/pdf; name="report-{i}.pdf"\r\n'
                f'Content-Disposition: attachment; filename="report-{i}.pdf"\r\n'
                f"Content-Transfer-Encoding: base64\r\n\r\n{attachment}--{boundary}--\r\n"
            )
        else:
            head += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
            body = text + "\r\n"
        messages.append(("\r\n".join(head) + "\r\n\r\n" + body).encode("utf-8"))
        previous = (msgid, subject)
    return messages


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    """All rounds of one path: latencies and CPU."""

    label: str
    latencies: list[float]
    requests: int = 0
    seconds: float = 0.0
    app_cpu: float = 0.0
    cyrus_cpu: float = 0.0

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies)
        return 1000 * lat[min(len(lat) - 1, int(len(lat) * q))]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def row(self) -> str:
        return (
            f"    {self.label:44} p50 {self.pct(0.5):6.2f} ms  p95 {self.pct(0.95):6.2f} ms  "
            f"{self.rps:6.0f} req/s  n={self.requests:<5d}  CPU/req: API {1000 * self.app_cpu / self.requests:5.2f} ms"
            f", Cyrus {1000 * self.cyrus_cpu / self.requests:5.2f} ms"
        )


_HEAD_END = b"\r\n\r\n"
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def _quickack_load(port: int, request: bytes, seconds: float, latencies: list[float]) -> tuple[int, int]:
    """Sequential keep-alive requests on one blocking socket that re-arms TCP_QUICKACK after every
    read, so that the client never delays an ACK (a diagnostic: see the module doc)."""
    done = errors = 0
    deadline = time.perf_counter() + seconds
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def recv() -> bytes:
            chunk = sock.recv(1 << 16)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            if not chunk:
                raise RuntimeError("connection closed mid-response")
            return chunk

        while time.perf_counter() < deadline:
            began = time.perf_counter()
            sock.sendall(request)
            data = b""
            while _HEAD_END not in data:
                data += recv()
            head, _, body = data.partition(_HEAD_END)
            match = _LENGTH.search(head)
            if match is None:
                raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
            need = int(match.group(1))
            while len(body) < need:
                body += recv()
            latencies.append(time.perf_counter() - began)
            done += 1
            errors += head[9:12] != b"200"
    return done, errors


@dataclass(frozen=True)
class Target:
    port: int
    request: bytes
    quickack: bool = False  # measure with :func:`_quickack_load` (sequential only)


def _round(bench: Bench, run: Run, target: Target, concurrency: int, seconds: float) -> None:
    stack = bench.stack
    assert stack.app is not None
    latencies: list[float] = []
    app0, cyrus0 = cpu_seconds(stack.app.pid), stack.cyrus_cpu()
    began = time.perf_counter()
    if target.quickack:
        done, errors = _quickack_load(target.port, target.request, seconds, latencies)
    else:
        done, errors = asyncio.run(_load("127.0.0.1", target.port, target.request, concurrency, seconds, latencies))
    took = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{run.label}: {errors} of {done} responses were not 200")
    run.app_cpu += cpu_seconds(stack.app.pid) - app0
    run.cyrus_cpu += max(0.0, stack.cyrus_cpu() - cyrus0)
    run.latencies += latencies
    run.requests += done
    run.seconds += took


def alternate(bench: Bench, paths: dict[str, Target], *, concurrency: int, seconds: float, rounds: int) -> list[Run]:
    """Warm each path up, then ``rounds`` rounds of ``seconds`` each, the order reversed every other round."""
    for label, target in paths.items():
        _round(bench, Run(label, []), target, concurrency, min(0.5, seconds))
    runs = {label: Run(label, []) for label in paths}
    for n in range(rounds):
        order = list(paths.items()) if n % 2 == 0 else list(reversed(paths.items()))
        for label, target in order:
            _round(bench, runs[label], target, concurrency, seconds)
    return list(runs.values())


def jmap_post(stack_jmap_url: str, api_url: str, bearer: str, body: bytes) -> bytes:
    """A keep-alive ``POST`` of a JMAP request body to Cyrus's apiUrl, as raw bytes."""
    url = urlsplit(urljoin(stack_jmap_url, api_url))
    head = [
        f"POST {url.path} HTTP/1.1",
        f"Host: {url.netloc}",
        f"Authorization: {bearer}",
        "Accept: application/json",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def list_request(account_id: str) -> dict[str, object]:
    """The JMAP request body of ``GET .../inbox/messages?limit=50`` (first page, no filters), as
    :func:`shipmail.inbox.service.list_messages` builds it."""
    ceiling = datetime.fromtimestamp(int(time.time()) + 1, UTC)
    request = Request()
    query = request.add(
        jemail.query(
            {"before": jemail.received_before(ceiling)},
            jemail.NEWEST_FIRST,
            position=0,
            limit=LIMIT,
            calculate_total=True,
        )
    )
    request.add(EmailGet(ids=request.ref(query, "/ids"), properties=jemail.LIST_PROPERTIES))
    return request.body(account_id)


@case("inbox", "GET .../inbox/messages?limit=50 via the API vs the same Email/query+Email/get straight to Cyrus")
def inbox_list(bench: Bench) -> None:
    stack = bench.stack
    began = time.monotonic()
    messages = seed_messages(stack.address)
    stack.deliver(messages)
    delivered = time.monotonic() - began
    waited = stack.wait_cyrus_idle()
    print(
        f"  seeded {len(messages)} messages ({sum(map(len, messages)) / 1e6:.1f} MB) over LMTP in "
        f"{delivered:.1f} s; Cyrus idle {waited:.1f} s later"
    )

    api_path = f"/v1/mailboxes/{stack.mailbox_id}/inbox/messages?limit={LIMIT}"
    status, listed = http_json("GET", stack.app_url + api_path, stack.key)
    assert status == 200, listed
    session = stack.cyrus_session()
    bearer = stack.cyrus_bearer()
    account_id = stack.address
    body = json.dumps(list_request(account_id)).encode()
    direct = jmap_post(stack.jmap_url, str(session["apiUrl"]), bearer, body)

    # Same request, same answer: the 50 ids in the same order, and the same total.
    request = urllib.request.Request(
        urljoin(stack.jmap_url, str(session["apiUrl"])),
        data=body,
        headers={"Authorization": bearer, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        answer = json.loads(response.read())
    query, got = answer["methodResponses"][0][1], answer["methodResponses"][1][1]
    api_ids = [m["id"] for m in listed["data"]]  # type: ignore[index]
    direct_ids = [ids.to_wire(ids.EMAIL, i) for i in query["ids"]]
    if api_ids != direct_ids or listed["pagination"]["total"] != query["total"]:  # type: ignore[index]
        raise RuntimeError("the API and the direct JMAP request do not list the same messages")
    api_bytes, direct_bytes = len(json.dumps(listed)), len(json.dumps(answer))
    print(
        f"  both list the same {len(api_ids)} of {query['total']} messages; response bodies: API "
        f"{api_bytes / 1024:.0f} KiB, Cyrus {direct_bytes / 1024:.0f} KiB; {len(got['list'])} Emails"
    )

    api_label, direct_label = f"API    GET .../inbox/messages?limit={LIMIT}", "direct POST /jmap/ Email/query+Email/get"
    quickack_label = "direct, client re-arms TCP_QUICKACK"
    paths = {
        api_label: Target(stack.app_port, bench.request_bytes(api_path)),
        direct_label: Target(stack.jmap_port, direct),
    }
    sequential = max(0.5, bench.seconds / 2)
    for concurrency, seconds in ((1, sequential), (CONCURRENCY, max(0.5, bench.seconds / 3))):
        chosen = dict(paths)
        if concurrency == 1:
            chosen[quickack_label] = Target(stack.jmap_port, direct, quickack=True)
        runs = {
            r.label: r for r in alternate(bench, chosen, concurrency=concurrency, seconds=seconds, rounds=bench.rounds)
        }
        api, cyrus = runs[api_label], runs[direct_label]
        print(
            f"  {'sequential (1 connection)' if concurrency == 1 else f'{concurrency} connections'}, "
            f"{bench.rounds} rounds x {seconds:g} s per path, order reversed every other round:"
        )
        for run in runs.values():
            print(run.row())
        print(
            f"    ratio API/direct: p50 {api.pct(0.5) / cyrus.pct(0.5):.2f}x"
            f"  p95 {api.pct(0.95) / cyrus.pct(0.95):.2f}x"
            f"  throughput {api.rps / cyrus.rps:.3f}"
        )
        print(
            f"    the API adds {api.pct(0.5) - cyrus.pct(0.5):.2f} ms at p50; its process burns "
            f"{1000 * api.app_cpu / api.requests:.2f} ms CPU per request (Cyrus "
            f"{1000 * api.cyrus_cpu / api.requests:.2f} ms for the same request via the API, "
            f"{1000 * cyrus.cyrus_cpu / cyrus.requests:.2f} ms direct)"
        )
        if quickack_label in runs:
            quick = runs[quickack_label]
            stall = cyrus.pct(0.5) - quick.pct(0.5)
            print(
                f"    {stall:.1f} ms of the direct p50 is TCP waiting, not work: "
                f"Cyrus writes its {direct_bytes // 1024} KiB "
                f"answer in 4 KiB writes with Nagle on, so the tail waits for the client's delayed ACK"
                if stall > 10
                else f"    no delayed-ACK stall seen (direct p50 {stall:+.1f} ms vs a client that never delays ACKs)"
            )
    print(f"  case took {time.monotonic() - began:.1f} s")
