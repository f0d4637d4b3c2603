"""Mail read benchmark cases (registered with scripts/bench_harness.py).

The bench mailbox is seeded once (first case that needs it) over LMTP with 250 generated
messages (plain text, replies, encoded subjects, some with a small attachment). Every API figure
is compared with the JMAP request the API sends for it (built with the same builders as
:mod:`shipmail.inbox.service` and :mod:`shipmail.folders.service`), sent straight to Cyrus with a
Bearer JWT over the SAME Unix socket the API uses; each case checks that both answer the same.

``inbox``: ``GET /v1/mailboxes/{id}/inbox/messages?limit=50`` vs its Email/query (``before`` the
next second, sort ``receivedAt desc, id desc``, limit 50, calculateTotal) + Email/get of the full
list item (:func:`~shipmail.jmap.email.full_get` with body values bounded at
:data:`~shipmail.jmap.email.LIST_MAX_BODY_VALUE_BYTES`) by back-reference + the Junk folder's
``totalEmails`` (``junk_total``): the same JMAP work the API does; on 1 connection, then on 4.
Goals (issue 10): p50 <= 1.15x direct and API CPU <= 1.5 ms/request on 1 connection; throughput
>= 0.8x direct on 4.

``reads``: message get (Email/get of FULL_PROPERTIES with body values), thread get (Thread/get +
Email/get of its members) and folder list (Mailbox/get of every folder), each vs its JMAP request;
1 connection. Goal: API CPU <= 1 ms/request, below Cyrus's for the same request.

``growth``: how cost grows with the mailbox: a second mailbox filled to 100, 1,000 and 10,000
messages in bulk (uploaded and imported 100 per ``Email/import`` over the Unix socket: many share
a received-at second, as after a burst of deliveries; Cyrus's search indexer is waited for), and
at each size the first page of the list, the page after 5 cursors (``limit=16``: the 6th page,
which exists at 100 messages too),
``search_text``, a thread get and the folder list, each through the API and as the same JMAP
request straight to Cyrus (API and Cyrus CPU per request, p50); then 200 custom folders (one
Mailbox/set) and the folder list again. Goal: the API's share flat in mailbox size. For a quick
run: ``SHIPMAIL_BENCH_GROWTH_SIZES=100,500`` (message counts, comma-separated) and
``SHIPMAIL_BENCH_GROWTH_FOLDERS=50``.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
import urllib.parse
from dataclasses import replace
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime
from typing import Any

from bench_harness import Bench, Contender, Stack, case, http_json
from jmapc.methods import EmailGet, MailboxGet, MailboxSet, ThreadGet

from shipmail.jmap import email as jemail
from shipmail.jmap import ids
from shipmail.jmap import mailbox as jmailbox
from shipmail.jmap import thread as jthread
from shipmail.jmap.request import Request

SEED_MESSAGES = 250
CRLF = "\r\n"
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
            f"From: {Header(name, 'utf-8').encode(linesep=CRLF)} <{sender}@example.org>",
            f"To: Bench <{address}>",
            f"Subject: {Header(subject, 'utf-8').encode(linesep=CRLF)}",
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


# --------------------------------------------------------------------------- JMAP requests the API sends


def list_request(
    account_id: str,
    *,
    limit: int = LIMIT,
    position: int = 0,
    text: str | None = None,
    junk_id: str | None = None,
    anchor: str | None = None,
) -> dict[str, Any]:
    """The JMAP request of ``GET .../inbox/messages?limit=50`` (first page; with ``text``, of
    ``&search_text=<text>``), as :func:`shipmail.inbox.service.list_messages` builds it."""
    ceiling = datetime.fromtimestamp(int(time.time()) + 1, UTC)
    before: jemail.Filter = {"before": jemail.received_before(ceiling)}
    where: jemail.Filter = before if text is None else {"operator": "AND", "conditions": [{"text": text}, before]}
    request = Request()
    method = jemail.query(where, jemail.NEWEST_FIRST, position=position, limit=limit, calculate_total=True)
    if anchor is not None:  # a cursor page: just after the previous page's last message
        method = replace(method, position=None, anchor=anchor, anchor_offset=1)
    query = request.add(method)
    request.add(jemail.full_get(request.ref(query, "/ids"), max_body_value_bytes=jemail.LIST_MAX_BODY_VALUE_BYTES))
    if junk_id is not None:
        request.add(MailboxGet(ids=[junk_id], properties=["totalEmails"]))
    return request.body(account_id)


def junk_id(stack: Stack, address: str | None = None) -> str | None:
    """The JMAP id of ``address``'s Junk folder (role ``junk``), as the API's list asks its count."""
    body = folders_request(address or stack.address)
    answer: Any = stack.jmap_call(body, address)
    folders = answer["methodResponses"][0][1]["list"]
    return next((f["id"] for f in folders if f.get("role") == "junk"), None)


def message_request(account_id: str, email_id: str) -> dict[str, Any]:
    """``GET .../inbox/messages/{id}``'s request (:func:`shipmail.inbox.service.get_message`)."""
    request = Request()
    request.add(jemail.full_get([email_id]))
    return request.body(account_id)


def thread_request(account_id: str, thread_id: str) -> dict[str, Any]:
    """``GET .../inbox/threads/{id}``'s request (:func:`shipmail.inbox.service.get_thread`)."""
    request = Request()
    thread = request.add(ThreadGet(ids=[thread_id]))
    request.add(jemail.full_get(request.ref(thread, jthread.EMAIL_IDS)))
    return request.body(account_id)


def folders_request(account_id: str) -> dict[str, Any]:
    """``GET .../folders``'s request (:func:`shipmail.folders.service.list_folders`)."""
    request = Request()
    request.add(MailboxGet(ids=None, properties=jmailbox.PROPERTIES))
    return request.body(account_id)


# --------------------------------------------------------------------------- seeding

_seeded: set[str] = set()


def seed(stack: Stack, address: str, count: int, *, start: int = 0, bulk: bool = False) -> None:
    """Messages ``start..count`` of the generated set into ``address``'s Inbox, delivered over
    LMTP one transaction each (or, ``bulk``, uploaded and imported 100 per Email/import); then
    wait for Cyrus's search indexer."""
    began = time.monotonic()
    messages = seed_messages(address, count)[start:]
    if bulk:
        stack.import_messages(messages, address)
    else:
        stack.deliver(messages, address)
    took = time.monotonic() - began
    waited = stack.wait_cyrus_idle(timeout=600)
    how = "uploaded + Email/import, 100 a request" if bulk else "delivered over LMTP"
    print(
        f"  {len(messages)} messages ({sum(map(len, messages)) / 1e6:.1f} MB) to {address}: {how} in {took:.1f} s "
        f"({1000 * took / len(messages):.1f} ms each); Cyrus idle (search index done) {waited:.1f} s later",
        flush=True,
    )


def ensure_seeded(stack: Stack) -> None:
    if stack.address not in _seeded:
        seed(stack, stack.address, SEED_MESSAGES)
        _seeded.add(stack.address)


def _api_get(stack: Stack, path: str) -> dict[str, Any]:
    status, body = http_json("GET", stack.app_url + path, stack.key)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body}")
    assert isinstance(body, dict)
    return body


def _same_list(listed: dict[str, Any], answer: dict[str, Any]) -> None:
    query = answer["methodResponses"][0][1]
    api_ids = [m["id"] for m in listed["data"]]
    direct_ids = [ids.to_wire(ids.EMAIL, i) for i in query["ids"]]
    if api_ids != direct_ids:
        raise RuntimeError("the API and the direct JMAP request do not list the same messages")


# --------------------------------------------------------------------------- cases


@case("inbox", "GET .../inbox/messages?limit=50 via the API vs its Email/query+Email/get straight to Cyrus")
def inbox_list(bench: Bench) -> None:
    stack = bench.stack
    ensure_seeded(stack)
    api_path = f"/v1/mailboxes/{stack.mailbox_id}/inbox/messages?limit={LIMIT}"
    body = list_request(stack.address, junk_id=junk_id(stack))
    listed = _api_get(stack, api_path)
    answer = stack.jmap_call(body)
    _same_list(listed, answer)
    print(
        f"  both list the same {len(listed['data'])} messages; response bodies: API "
        f"{len(json.dumps(listed)) / 1024:.0f} KiB, Cyrus {len(json.dumps(answer)) / 1024:.0f} KiB"
    )
    targets = {
        f"API    GET .../inbox/messages?limit={LIMIT}": bench.api(api_path),
        "direct JMAP (Unix socket)": bench.direct(body),
    }
    for concurrency in (1, CONCURRENCY):
        print(f"  {concurrency} connection(s):")
        api, direct = bench.compare(targets, concurrency=concurrency)
        bench.table([api, direct])
        print(bench.ratio(api, direct))


def _pick(stack: Stack) -> dict[str, Any]:
    """The message the ``reads`` cases read: a reply with an attachment when there is one (a
    thread of two, bodies and attachments); the Inbox is seeded first."""
    ensure_seeded(stack)
    listed = _api_get(stack, f"/v1/mailboxes/{stack.mailbox_id}/inbox/messages?limit=100")["data"]
    pick: dict[str, Any] = next((m for m in listed if m["has_attachment"] and m["subject"].startswith("Re")), listed[0])
    return pick


def read_paths(stack: Stack) -> dict[str, str]:
    """The API paths of the ``reads`` case: message get, thread get, folder list (short labels)."""
    pick = _pick(stack)
    base = f"/v1/mailboxes/{stack.mailbox_id}"
    return {
        "message": f"{base}/inbox/messages/{pick['id']}",
        "thread": f"{base}/inbox/threads/{pick['thread_id']}",
        "folders": f"{base}/folders",
    }


@case("reads", "message get, thread get, folder list via the API vs the same JMAP request straight to Cyrus")
def reads(bench: Bench) -> None:
    stack = bench.stack
    base = f"/v1/mailboxes/{stack.mailbox_id}"
    pick = _pick(stack)
    email_id, thread_id = ids.from_wire(ids.EMAIL, pick["id"]), ids.from_wire(ids.THREAD, pick["thread_id"])
    cases = {
        "message get": (f"{base}/inbox/messages/{pick['id']}", message_request(stack.address, email_id)),
        "thread get": (f"{base}/inbox/threads/{pick['thread_id']}", thread_request(stack.address, thread_id)),
        "folder list": (f"{base}/folders", folders_request(stack.address)),
    }
    for name, (path, body) in cases.items():
        _api_get(stack, path)
        stack.jmap_call(body)
        print(f"  {name}: GET {path.replace(base, '/v1/mailboxes/{id}')}")
        api, direct = bench.compare({f"API    {name}": bench.api(path), "direct JMAP": bench.direct(body)})
        bench.table([api, direct])
        print(bench.ratio(api, direct))


def _sizes(value: str) -> tuple[int, ...]:
    sizes = tuple(sorted({int(x) for x in value.replace(" ", "").split(",") if x}))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"SHIPMAIL_BENCH_GROWTH_SIZES: positive message counts, comma-separated, not {value!r}")
    return sizes


#: Mailbox sizes of the growth case; ``SHIPMAIL_BENCH_GROWTH_SIZES=100,500`` for a quick run.
GROWTH_SIZES = _sizes(os.environ.get("SHIPMAIL_BENCH_GROWTH_SIZES", "100,1000,10000"))
#: Page size of the deep-page figure: the 6th page exists at 100 messages too.
PAGE_LIMIT = 16
#: Custom folders of the last growth step; ``SHIPMAIL_BENCH_GROWTH_FOLDERS`` to change it.
GROWTH_FOLDERS = int(os.environ.get("SHIPMAIL_BENCH_GROWTH_FOLDERS", "200"))


def _growth_round(bench: Bench, stack: Stack, mailbox_id: str, address: str, size: int) -> dict[str, Contender]:
    base = f"/v1/mailboxes/{mailbox_id}"
    first = f"{base}/inbox/messages?limit={LIMIT}"
    path = paged = f"{base}/inbox/messages?limit={PAGE_LIMIT}"
    for _ in range(5):  # follow 5 cursors: the 6th page
        page = _api_get(stack, path)
        cursor, last = page["pagination"]["next_cursor"], page["data"][-1]["id"]
        path = f"{paged}&cursor={urllib.parse.quote(cursor)}"
    junk = junk_id(stack, address)
    page6 = path
    newest = _api_get(stack, first)["data"]
    thread = next((m for m in newest if m["subject"].startswith("Re")), newest[0])["thread_id"]
    targets = {
        "API list, first page": bench.api(first),
        "direct list, first page": bench.direct(list_request(address, junk_id=junk), address),
        f"API list limit={PAGE_LIMIT}, page 6": bench.api(page6),
        "direct list, page 6 (anchor: page 5's last)": bench.direct(
            list_request(address, limit=PAGE_LIMIT, junk_id=junk, anchor=ids.from_wire(ids.EMAIL, last)), address
        ),
        "API search_text=invoice": bench.api(f"{first}&search_text=invoice"),
        "direct search (text filter)": bench.direct(list_request(address, text="invoice", junk_id=junk), address),
        "API thread get": bench.api(f"{base}/inbox/threads/{thread}"),
        "direct thread get": bench.direct(thread_request(address, ids.from_wire(ids.THREAD, thread)), address),
        "API folder list": bench.api(f"{base}/folders"),
        "direct folder list": bench.direct(folders_request(address), address),
    }
    contenders = bench.compare(targets, seconds=max(0.5, bench.seconds / 2))
    print(f"  {size} messages:")
    bench.table(contenders)
    return {c.label: c for c in contenders}


@case(
    "growth",
    f"list pages, search, thread get, folder list at {' / '.join(f'{n:,}' for n in GROWTH_SIZES)} messages "
    f"and {GROWTH_FOLDERS} folders",
)
def growth(bench: Bench) -> None:
    stack = bench.stack
    mailbox_id, address = stack.create_mailbox("growth")
    by_size: dict[int, dict[str, Contender]] = {}
    have = 0
    for size in GROWTH_SIZES:
        seed(stack, address, size, start=have, bulk=True)
        have = size
        by_size[size] = _growth_round(bench, stack, mailbox_id, address, size)
    small, large = by_size[GROWTH_SIZES[0]], by_size[GROWTH_SIZES[-1]]
    print(f"  growth {GROWTH_SIZES[0]} -> {GROWTH_SIZES[-1]} messages (medians):")
    for label in small:
        if not label.startswith("API"):
            continue
        a, b = small[label], large[label]
        print(
            f"    {label:36} p50 x{b.median('p50') / a.median('p50'):.2f}  "
            f"API CPU {a.median('api_ms'):.2f} -> {b.median('api_ms'):.2f} ms  "
            f"Cyrus CPU {a.median('cyrus_ms'):.2f} -> {b.median('cyrus_ms'):.2f} ms"
        )
    # 200 custom folders, created in one Mailbox/set (setup, not measured).
    request = Request()
    request.add(MailboxSet(create={f"f{i}": {"name": f"Growth folder {i:04d}"} for i in range(GROWTH_FOLDERS)}))
    answer = stack.jmap_call(request.body(address), address)
    created = answer["methodResponses"][0][1].get("created") or {}
    if len(created) != GROWTH_FOLDERS:
        raise RuntimeError(f"created {len(created)} of {GROWTH_FOLDERS} folders: {answer}")
    path = f"/v1/mailboxes/{mailbox_id}/folders"
    listed = _api_get(stack, path)["data"]
    (api, direct) = bench.compare(
        {
            f"API folder list ({len(listed)} folders)": bench.api(path),
            "direct Mailbox/get": bench.direct(folders_request(address), address),
        },
        seconds=max(0.5, bench.seconds / 2),
    )
    bench.table([api, direct])
    before = large["API folder list"]
    print(
        f"    folder list 6 -> {len(listed)} folders: p50 x{api.median('p50') / before.median('p50'):.2f}, "
        f"API CPU {before.median('api_ms'):.2f} -> {api.median('api_ms'):.2f} ms, "
        f"Cyrus CPU {before.median('cyrus_ms'):.2f} -> {api.median('cyrus_ms'):.2f} ms"
    )
    print(bench.ratio(api, direct))


def thread_page_request(account_id: str, *, limit: int = 25) -> dict[str, Any]:
    """The thread list's page request WITHOUT the reply-state scan (what the list sent before
    reply state, :func:`shipmail.inbox.service.list_threads`'s default view minus the scan):
    Email/query ``collapseThreads`` + summaries + Thread/get + Email/get of the members."""
    ceiling = datetime.fromtimestamp(int(time.time()) + 1, UTC)
    request = Request()
    query = request.add(
        jemail.query(
            {"before": jemail.received_before(ceiling)},
            jemail.NEWEST_FIRST,
            collapse_threads=True,
            position=0,
            limit=limit,
            calculate_total=True,
        )
    )
    latest = request.add(jemail.summary_get(request.ref(query, "/ids")))
    threads = request.add(ThreadGet(ids=request.ref(latest, jemail.THREAD_IDS)))
    request.add(EmailGet(ids=request.ref(threads, jthread.EMAIL_IDS), properties=jemail.THREAD_MEMBER_PROPERTIES))
    return request.body(account_id)


@case(
    "threads",
    "GET .../inbox/threads (default view; reply queue) via the API vs the page's JMAP request without the "
    "reply-state scan",
)
def thread_list(bench: Bench) -> None:
    """What reply state costs the thread list: the default view (page + the scan of up to 500
    threads, one JMAP request) and the reply queue (``reply_state=needs_reply&sort_by=
    needs_reply_since``: the scan, then the page's summaries) against the page's request alone
    straight to Cyrus (the list's cost before reply state, minus the API's own share)."""
    stack = bench.stack
    ensure_seeded(stack)
    base = f"/v1/mailboxes/{stack.mailbox_id}/inbox/threads"
    listed = _api_get(stack, f"{base}?limit=25")
    queue = f"{base}?limit=25&reply_state=needs_reply&sort_by=needs_reply_since"
    queued = _api_get(stack, queue)
    print(
        f"  {listed['summary']['total']} threads; summary {listed['summary']}; the queue lists "
        f"{len(queued['data'])} of {queued['pagination']['total']}"
    )
    contenders = bench.compare(
        {
            "API    threads, default view": bench.api(f"{base}?limit=25"),
            "API    threads, reply queue": bench.api(queue),
            "direct JMAP page request without the scan": bench.direct(thread_page_request(stack.address)),
        }
    )
    bench.table(contenders)
    print(bench.ratio(contenders[0], contenders[2]))
    print(bench.ratio(contenders[1], contenders[2]))
