"""Export and import benchmark cases (registered with scripts/bench_harness.py).

``export``: N messages (corpus messages, each with a fresh Message-ID, over five folders) are
delivered over LMTP and fetched over IMAP by Python's ``imaplib`` (``UID FETCH BODY.PEEK[]`` in
batches of 500), then exported through the API (``createMailboxExport``, polled until
completed) and the ZIP downloaded through its private URL. Prints messages per second of each,
the API process's RSS (VmRSS before, its peak while the job ran, growth), and the API's latency
on other requests while the job runs (``GET /v1/status`` and ``GET`` of the export, polled).

``import``: the same N messages as an mbox written by Python's ``mailbox`` module, PUT to an
upload URL (streamed to disk) and imported (``createMailboxImport``) into a fresh mailbox, then
the export ZIP of ``export`` (when that case ran first) into another; against LMTP delivery of
the same N messages. Same RSS and latency figures.

N is ``SHIPMAIL_BENCH_PORTABILITY_N`` (default 2,000 to keep the default run short on 2 cores;
the issue's full run is 10,000: ``SHIPMAIL_BENCH_PORTABILITY_N=10000 scripts/bench export import``).
"""

from __future__ import annotations

import imaplib
import json
import mailbox
import os
import re
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench_harness import REPO, Bench, Stack, case, http_json

N = int(os.environ.get("SHIPMAIL_BENCH_PORTABILITY_N") or 2000)
CORPUS = REPO.parent / "shared" / "corpus" / "mail-fixtures"
_MID = re.compile(rb"(?im)^message-id:[^\n]*\n(?:[ \t][^\n]*\n)*")
_state: dict[str, Any] = {}


def _kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Watch:
    """While in the block: peak VmRSS of ``pid`` and the latency of ``GET /v1/status`` polled
    every 50 ms (the API answering other requests during the job)."""

    def __init__(self, stack: Stack, pid: int) -> None:
        self.stack, self.pid = stack, pid
        self.before = _kib(pid)
        self.peak = self.before
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._rss, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]

    def _rss(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _kib(self.pid))
            self._stop.wait(0.01)

    def _poll(self) -> None:
        while not self._stop.is_set():
            began = time.perf_counter()
            status, _ = http_json("GET", self.stack.app_url + "/v1/status")
            if status == 200:
                self.latencies.append(time.perf_counter() - began)
            self._stop.wait(0.05)

    def __enter__(self) -> Watch:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def line(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        return (
            f"API RSS {self.before / 1024:.1f} MiB before, peak {self.peak / 1024:.1f} MiB during "
            f"(growth {(self.peak - self.before) / 1024:+.1f} MiB); GET /v1/status during the job: "
            f"{len(lat)} answered, p50 {statistics.median(lat) * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms"
        )


def messages(n: int) -> list[bytes]:
    """``n`` deliverable corpus messages (cycled), CRLF, each with a fresh Message-ID."""
    pool = []
    for path in sorted(p for p in CORPUS.rglob("*.eml") if p.is_file()):
        raw = path.read_bytes()
        if raw.startswith(b"From "):
            raw = raw.split(b"\n", 1)[1]
        raw = re.sub(rb"\r?\n", b"\r\n", raw)
        head, sep, body = raw.partition(b"\r\n\r\n")
        if not sep or not re.match(rb"^[!-9;-~]+:", head) or len(raw) > 200_000:
            continue
        pool.append((_MID.sub(b"", (head + b"\r\n").replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n"), body))
    out = []
    for i in range(n):
        head, body = pool[i % len(pool)]
        out.append(head + f"Message-ID: <bench.{i}.{uuid.uuid4().hex[:8]}@bench.example>\r\n\r\n".encode() + body)
    return out


def deliver(stack: Stack, msgs: list[bytes], address: str) -> tuple[float, int]:
    """LMTP delivery of ``msgs`` on two connections, one transaction each: (seconds, refused)."""
    import smtplib
    from concurrent.futures import ThreadPoolExecutor

    def send(chunk: list[bytes]) -> int:
        refused = 0
        with smtplib.LMTP("127.0.0.1", stack.lmtp_port, timeout=300) as lmtp:
            for m in chunk:
                try:
                    lmtp.sendmail("bench@example.org", [address], m)
                except smtplib.SMTPDataError:
                    refused += 1  # a corpus message LMTP refuses (invalid header)
        return refused

    began = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        refused = sum(pool.map(send, [msgs[0::2], msgs[1::2]]))
    return time.perf_counter() - began, refused


def imap_fetch(stack: Stack, address: str) -> tuple[float, int]:
    """imaplib: log in, then every folder's messages with UID FETCH BODY.PEEK[] (batches of 500)."""
    port = int(stack.env["SHIPMAIL_IMAP_PORT"])
    began = time.perf_counter()
    count = 0
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(address, "CorrectHorse9")
    _, listed = imap.list()
    for line in listed:
        assert isinstance(line, bytes)
        name = line.rsplit(b' "/" ', 1)[-1].decode()
        imap.select(name, readonly=True)
        _, data = imap.uid("SEARCH", "ALL")
        uids = data[0].split() if data and data[0] else []
        for i in range(0, len(uids), 500):
            _, got = imap.uid("FETCH", b",".join(uids[i : i + 500]).decode(), "(BODY.PEEK[])")
            count += sum(1 for item in got if isinstance(item, tuple))
    imap.logout()
    return time.perf_counter() - began, count


def spread_over_folders(stack: Stack, mailbox_id: str, address: str) -> None:
    """Move the messages round-robin into Inbox, Archive and three custom (nested) folders."""
    key = stack.key
    ids = []
    parent = None
    for name in ("Projects", "2026", "Lists"):
        body: dict[str, Any] = {"name": name}
        if parent is not None and name == "2026":
            body["parent_id"] = parent
        status, made = http_json("POST", f"{stack.app_url}/v1/mailboxes/{mailbox_id}/folders", key, body)
        assert status == 201, made
        ids.append(str(made["id"])[4:])  # type: ignore[index]
        parent = made["id"] if name == "Projects" else parent  # type: ignore[index]
    using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
    boxes = stack.jmap_call(
        {"using": using, "methodCalls": [["Mailbox/get", {"accountId": address, "properties": ["role"]}, "m"]]}, address
    )
    roles = {m["role"]: m["id"] for m in boxes["methodResponses"][0][1]["list"] if m.get("role")}  # type: ignore[index]
    targets = [roles["inbox"], roles["archive"], *ids]
    position = 0
    while True:
        answer = stack.jmap_call(
            {
                "using": using,
                "methodCalls": [["Email/query", {"accountId": address, "position": position, "limit": 1000}, "q"]],
            },
            address,
        )
        found = answer["methodResponses"][0][1]["ids"]  # type: ignore[index]
        if not found:
            break
        update = {e: {"mailboxIds": {targets[(position + i) % len(targets)]: True}} for i, e in enumerate(found)}
        if position % 2000 == 0:
            for e in list(update)[::7]:
                update[e]["keywords"] = {"$seen": True}
        stack.jmap_call(
            {"using": using, "methodCalls": [["Email/set", {"accountId": address, "update": update}, "u"]]}, address
        )
        position += len(found)


def wait(stack: Stack, path: str, done: set[str]) -> dict[str, Any]:
    while True:
        status, body = http_json("GET", stack.app_url + path, stack.key)
        assert status == 200, body
        assert isinstance(body, dict)
        if body["status"] in done:
            return body
        time.sleep(0.2)


@case("export", f"export of {N} messages (ZIP) vs LMTP delivery and imaplib fetch; API RSS")
def bench_export(bench: Bench) -> None:
    stack = bench.stack
    msgs = messages(N)
    mailbox_id, address = stack.create_mailbox(f"exp{uuid.uuid4().hex[:6]}")
    seconds, refused = deliver(stack, msgs, address)
    delivered = N - refused
    print(f"  LMTP delivery: {delivered} messages in {seconds:.1f} s = {delivered / seconds:.0f} msg/s")
    spread_over_folders(stack, mailbox_id, address)
    stack.wait_cyrus_idle()
    lmtp_rate = delivered / seconds
    seconds, fetched = imap_fetch(stack, address)
    print(f"  imaplib fetch: {fetched} messages in {seconds:.1f} s = {fetched / seconds:.0f} msg/s")
    _state["baselines"] = f"LMTP {lmtp_rate:.0f} msg/s, imaplib fetch {fetched / seconds:.0f} msg/s"
    assert stack.serve is not None
    with Watch(stack, stack.serve.pid) as watch:
        began = time.perf_counter()
        status, body = http_json("POST", f"{stack.app_url}/v1/mailboxes/{mailbox_id}/exports", stack.key)
        assert status == 202, body
        done = wait(stack, f"/v1/mailboxes/{mailbox_id}/exports/{body['id']}", {"completed", "failed"})  # type: ignore[index]
        seconds = time.perf_counter() - began
    assert done["status"] == "completed", done
    print(
        f"  API export: {done['message_count']} messages ({done['file_size'] / 1e6:.1f} MB ZIP) in {seconds:.1f} s "
        f"= {done['message_count'] / seconds:.0f} msg/s"
    )
    print(f"  {watch.line()}")
    target = Path(tempfile.mkdtemp(dir=stack.data_dir)) / "export.zip"
    began = time.perf_counter()
    with urllib.request.urlopen(done["download_url"], timeout=600) as response, open(target, "wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)
    print(f"  download: {target.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - began:.2f} s")
    _state["zip"] = target
    _state["count"] = done["message_count"]


def put_file(stack: Stack, mailbox_id: str, path: Path, name: str) -> str:
    status, staged = http_json(
        "POST",
        f"{stack.app_url}/v1/mailboxes/{mailbox_id}/imports/files",
        stack.key,
        {"file_name": name, "size_bytes": path.stat().st_size},
    )
    assert status == 201, staged
    assert isinstance(staged, dict)
    with open(path, "rb") as fh:
        request = urllib.request.Request(staged["upload_url"], data=fh, method="PUT")
        request.add_header("Content-Length", str(path.stat().st_size))
        with urllib.request.urlopen(request, timeout=600) as response:
            assert response.status == 200
    return str(staged["file_id"])


def timed_import(stack: Stack, label: str, path: Path, name: str, expected: int) -> None:
    mailbox_id, _ = stack.create_mailbox(f"imp{uuid.uuid4().hex[:6]}")
    file_id = put_file(stack, mailbox_id, path, name)
    assert stack.serve is not None
    with Watch(stack, stack.serve.pid) as watch:
        began = time.perf_counter()
        status, body = http_json(
            "POST",
            f"{stack.app_url}/v1/mailboxes/{mailbox_id}/imports",
            stack.key,
            {
                "source": {"type": "files", "provider": "file", "file_ids": [file_id]},
                "options": {"include_trash": True},
            },
        )
        assert status == 201, body
        done = wait(stack, f"/v1/mailboxes/{mailbox_id}/imports/{body['id']}", {"completed", "failed"})  # type: ignore[index]
        seconds = time.perf_counter() - began
    counts = done["counts"]
    assert done["status"] == "completed", done
    print(
        f"  API import of {label}: {counts['imported']} imported, {counts['failed']} failed, "
        f"{counts['duplicates_skipped']} duplicates of {expected} in {seconds:.1f} s "
        f"= {counts['imported'] / seconds:.0f} msg/s"
    )
    print(f"  {watch.line()}")


@case("import", f"import of {N} messages (mbox; and the export's ZIP) vs LMTP delivery; API RSS")
def bench_import(bench: Bench) -> None:
    stack = bench.stack
    msgs = messages(N)
    if "baselines" in _state:
        print(f"  (baselines of the same messages measured by the export case: {_state['baselines']})")
    else:
        _, address = stack.create_mailbox(f"lmtp{uuid.uuid4().hex[:6]}")
        seconds, refused = deliver(stack, msgs, address)
        print(f"  LMTP delivery: {N - refused} messages in {seconds:.1f} s = {(N - refused) / seconds:.0f} msg/s")
        seconds, fetched = imap_fetch(stack, address)
        print(f"  imaplib fetch: {fetched} messages in {seconds:.1f} s = {fetched / seconds:.0f} msg/s")
    folder = Path(tempfile.mkdtemp(dir=stack.data_dir))
    box = mailbox.mbox(str(folder / "Inbox.mbox"))
    for m in msgs:
        box.add(mailbox.mboxMessage(m))
    box.flush()
    box.close()
    timed_import(stack, "an mbox (Python's mailbox module)", folder / "Inbox.mbox", "Inbox.mbox", N)
    if "zip" in _state:
        timed_import(stack, "the export ZIP", _state["zip"], "export.zip", int(_state["count"]))
    print("  " + json.dumps({"n": N}))
