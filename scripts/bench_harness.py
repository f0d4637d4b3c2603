"""Benchmark harness behind ``scripts/bench [options] [case ...]``.

One run starts a throwaway stack, runs the selected cases (default: all) against it and stops
everything:

* ``shipmail serve`` (the real command, exactly as an operator runs it: uvicorn with its access
  log, INFO logging) on free ports in a ``mkdtemp`` data directory: the private Cyrus instance,
  the login checker and the API. What is measured is that API (no bench-only app, no bench-only
  route); its output goes to a log file next to the data directory;
* fixtures: an API key (``shipmail keys create``), a verified domain and a mailbox.

Rate limits are raised out of the way (the limiter still counts every authenticated request).

Every case compares the API with the closest thing doing the same work in the same run:
the same JMAP request sent straight to Cyrus over the SAME Unix socket the API uses
(``<cyrus>/.../socket/http``; over TCP Cyrus's 4 KiB writes with Nagle would stall the baseline
~40 ms on a delayed ACK), a direct blob download, or the cheapest real route
(``GET /v1/openapi.json``). Each contender runs ``rounds`` rounds (default 3, the order reversed
every other round, after a warm-up) and the tables print min / median / max over the rounds of:
throughput, p50 latency, and server CPU per request read from ``/proc/<pid>/stat`` (utime +
stime): the API process(es) and Cyrus's ``httpd`` processes (the JMAP server), which is robust to
other load on the machine where throughput and latency are not.

Cases live in ``scripts/bench_*.py`` modules (every one except this file is imported) and
register themselves with ``@case("name", "what it measures")``; a case receives a :class:`Bench`.
The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams (TCP or Unix
socket; ``concurrency`` connections, one request in flight on each), far cheaper per request
than httpx, so that the server and not the client is what saturates.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
PYTHON = REPO / ".venv" / "bin" / "python"
SHIPMAIL = REPO / ".venv" / "bin" / "shipmail"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Where the throwaway data directory goes: tmpfs by default (Cyrus fsyncs every delivery and
#: upload; on this machine's disk that is ~35 ms a message, which would make the growth case's
#: 10,000 messages take minutes). Reads are the same; writes are faster than on disk.
BENCH_DIR = os.environ.get("SHIPMAIL_BENCH_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else "/tmp")

# --------------------------------------------------------------------------- case registry


@dataclass
class Case:
    name: str
    description: str
    run: Callable[[Bench], None]


CASES: dict[str, Case] = {}


def case(name: str, description: str) -> Callable[[Callable[[Bench], None]], Callable[[Bench], None]]:
    """Register ``fn(bench)`` as the benchmark case ``name``."""

    def register(fn: Callable[[Bench], None]) -> Callable[[Bench], None]:
        if name in CASES:
            raise ValueError(f"bench case {name!r} registered twice")
        CASES[name] = Case(name, description, fn)
        return fn

    return register


def discover() -> None:
    """Import every ``scripts/bench_*.py`` case module."""
    sys.path.insert(0, str(SCRIPTS))
    for path in sorted(SCRIPTS.glob("bench_*.py")):
        if path.stem != "bench_harness":
            importlib.import_module(path.stem)


# --------------------------------------------------------------------------- processes


def free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in ports:
            ports.append(port)
    return ports


def http_json(method: str, url: str, key: str | None = None, body: object = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """utime + stime of ``pid`` (its threads included); with ``children`` also the CPU of its
    children it has reaped (cutime + cstime)."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def _ppid(pid: int) -> int:
    return int(_stat(pid)[1])


def process_tree(root: int, exclude: Sequence[int] = ()) -> list[int]:
    """``root`` and its descendants, less ``exclude``."""
    tree = {root}
    grew = True
    while grew:
        grew = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in tree:
                with contextlib.suppress(OSError, IndexError, ValueError):
                    if _ppid(int(entry.name)) in tree:
                        tree.add(int(entry.name))
                        grew = True
    return sorted(tree - set(exclude))


def tree_cpu(pids: Sequence[int]) -> float:
    """CPU seconds of ``pids`` (those still alive)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(pid)
    return total


class Stack:
    """The throwaway data directory and ``shipmail serve``; see the module doc."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="shipmail-bench-", dir=BENCH_DIR))
        os.chmod(self.data_dir, 0o755)
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self.app_port, jmap, lmtp, imap = free_ports(4)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPMAIL_")}
        env.update(
            {
                "SHIPMAIL_DATA_DIR": str(self.data_dir),
                "SHIPMAIL_PORT": str(self.app_port),
                "SHIPMAIL_JMAP_PORT": str(jmap),
                "SHIPMAIL_LMTP_PORT": str(lmtp),
                "SHIPMAIL_IMAP_PORT": str(imap),
                "SHIPMAIL_RATELIMIT_READ": "100000000/minute",
                "SHIPMAIL_RATELIMIT_WRITE": "100000000/minute",
                "SHIPMAIL_RATELIMIT_SEND": "100000000/minute",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env = env
        self.app_url = f"http://127.0.0.1:{self.app_port}"
        self.serve: subprocess.Popen[bytes] | None = None
        self.workers = 1
        self.key = ""
        self.mailbox_id = ""
        self.domain_id = ""
        self.address = ""  # the mailbox's address (bench@bench.example)
        self.jmap_port, self.lmtp_port = jmap, lmtp
        self.jmap_url = f"http://127.0.0.1:{jmap}/jmap/"  # Cyrus's JMAP session resource (TCP)
        self._session: dict[str, object] | None = None

    @property
    def jmap_socket(self) -> str:
        """The Unix socket Cyrus's httpd serves JMAP on, which the API uses."""
        from shipmail.mailserver.cyrus_config import CyrusLayout

        return str(CyrusLayout(self.data_dir / "cyrus").jmap_socket)

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session (in ``cwd``, default the repository), output appended
        to the stack's log."""
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                argv,
                env=env,
                cwd=cwd or str(REPO),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_http(self, proc: subprocess.Popen[bytes], url: str, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode} while starting\n{self.output()}")
            with contextlib.suppress(OSError, ValueError):
                if http_json("GET", url)[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{what} did not answer 200 on {url} within {timeout} s\n{self.output()}")

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [str(SHIPMAIL), *args], env=self.env, cwd=str(REPO), capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"shipmail {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def start_serve(self, workers: int = 1, **env: str) -> None:
        """Start ``shipmail serve --workers N`` (extra ``SHIPMAIL_*`` settings in ``env``) and
        wait until every worker could answer (``/v1/status`` 200)."""
        self.workers = workers
        self.serve = self.spawn([str(SHIPMAIL), "serve", "--workers", str(workers)], {**self.env, **env})
        self._wait_http(self.serve, self.app_url + "/v1/status", "shipmail serve")
        if workers > 1:  # each worker imports the app on its own: wait until all are up
            deadline = time.monotonic() + 60
            while len(self.api_pids()) < workers + 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)

    def stop_serve(self) -> None:
        proc = self.serve
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        self.serve = None
        for _ in range(50):  # Cyrus's children follow master within 1-2 s
            if not self.instance_processes():
                break
            time.sleep(0.1)

    def restart(self, workers: int = 1, **env: str) -> None:
        """Stop ``shipmail serve`` and start it again (same data: mail, keys, mailboxes stay)."""
        self.stop_serve()
        self.start_serve(workers, **env)

    def start(self) -> None:
        self.start_serve()
        self.key = self.cli("keys", "create", "--org", "bench", "--name", "bench").strip().splitlines()[-1]
        status, body = http_json("POST", self.app_url + "/v1/domains", self.key, {"name": "bench.example"})
        assert status == 201, body
        self.domain_id = body["id"]  # type: ignore[index]
        self.cli("domains", "verify", "bench.example")
        self.mailbox_id, self.address = self.create_mailbox("bench")

    def create_mailbox(self, local: str) -> tuple[str, str]:
        """A new mailbox ``local@bench.example``: its id and address."""
        status, body = http_json(
            "POST",
            self.app_url + "/v1/mailboxes",
            self.key,
            {"domain_id": self.domain_id, "address": local, "password": "CorrectHorse9"},
        )
        assert status == 201, body
        return str(body["id"]), str(body["address"])  # type: ignore[index]

    def instance_processes(self) -> list[int]:
        needle = str(self.data_dir).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if needle in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
        return found

    def api_pids(self) -> list[int]:
        """``shipmail serve`` and its descendants that are not Cyrus (uvicorn's workers)."""
        if self.serve is None:
            return []
        return process_tree(self.serve.pid, self.instance_processes())

    def api_cpu(self) -> float:
        """CPU seconds of the API process(es)."""
        return tree_cpu(self.api_pids())

    def stop(self) -> list[str]:
        """SIGTERM serve, then kill whatever is left; returns notes on what needed killing."""
        notes: list[str] = []
        self.stop_serve()
        for attempt in range(3):
            left = self.instance_processes()
            if not left:
                break
            if attempt == 0:
                notes.append(f"{len(left)} Cyrus process(es) outlived shipmail serve's SIGTERM: killed")
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)
        return notes

    # ------------------------------------------------------------- straight to Cyrus (bench cases)

    def cyrus_bearer(self, address: str | None = None) -> str:
        """``Bearer <JWT>`` for ``address`` (default: the bench mailbox), signed with the instance's
        key exactly as the API signs its own (valid 1 h)."""
        from shipmail.mailserver.cyrus_config import CyrusLayout
        from shipmail.mailserver.cyrus_server import make_jwt

        text = CyrusLayout(self.data_dir / "cyrus").jwt_key_file.read_text()
        secret = base64.b64decode("".join(x for x in text.splitlines() if x and not x.startswith("-----")))
        return f"Bearer {make_jwt(secret, address or self.address)}"

    def cyrus_session(self, address: str | None = None) -> dict[str, object]:
        """Cyrus's JMAP session resource (its URLs are relative: ``/jmap/...``)."""
        if address is None and self._session is not None:
            return self._session
        request = urllib.request.Request(self.jmap_url, headers={"Authorization": self.cyrus_bearer(address)})
        with urllib.request.urlopen(request, timeout=15) as response:
            session: dict[str, object] = json.loads(response.read())
        if address is None:
            self._session = session
        return session

    def jmap_post(self, body: dict[str, object], address: str | None = None) -> bytes:
        """The raw keep-alive HTTP request of a JMAP API call (``body``) straight to Cyrus's apiUrl
        for ``address`` (the API's own request, without the API)."""
        data = json.dumps(body).encode()
        head = [
            f"POST {self.cyrus_session()['apiUrl']} HTTP/1.1",
            "Host: localhost",
            f"Authorization: {self.cyrus_bearer(address)}",
            "Accept: application/json",
            "Content-Type: application/json",
            f"Content-Length: {len(data)}",
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + data

    def jmap_call(self, body: dict[str, object], address: str | None = None) -> dict[str, object]:
        """Send ``body`` to Cyrus over the Unix socket; the decoded JMAP response."""
        status, answer = raw_request(Target(self.jmap_post(body, address), unix=self.jmap_socket))
        if status != 200:
            raise RuntimeError(f"JMAP answered {status}: {answer[:300]!r}")
        return json.loads(answer)  # type: ignore[no-any-return]

    def deliver(self, messages: Sequence[bytes], recipient: str | None = None, *, connections: int = 1) -> None:
        """LMTP-deliver ``messages`` (CRLF line ends) to ``recipient`` (default: the bench mailbox)
        as an inbound MTA would: one transaction per message, on ``connections`` connections in
        parallel (Cyrus runs one lmtpd per connection)."""
        import smtplib
        from concurrent.futures import ThreadPoolExecutor

        def send(chunk: Sequence[bytes]) -> None:
            with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=300) as lmtp:
                for message in chunk:
                    refused = lmtp.sendmail("bench-sender@example.org", [recipient or self.address], message)
                    if refused:
                        raise RuntimeError(f"LMTP refused: {refused}")

        chunks = [messages[i::connections] for i in range(connections)]
        with ThreadPoolExecutor(connections) as pool:
            for future in [pool.submit(send, c) for c in chunks if c]:
                future.result()

    def import_messages(self, messages: Sequence[bytes], address: str, *, batch: int = 100) -> None:
        """Put ``messages`` (CRLF) into ``address``'s Inbox in bulk, straight through JMAP over the
        Unix socket: each uploaded as a blob (RFC 8620 section 6.1), then ``Email/import``
        (RFC 8621 section 4.8) ``batch`` at a time; raises unless every one was created."""
        session = self.cyrus_session(address)
        upload = str(session["uploadUrl"]).replace("{accountId}", urllib.parse.quote(address, safe=""))
        bearer = self.cyrus_bearer(address)
        using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
        boxes = self.jmap_call(
            {"using": using, "methodCalls": [["Mailbox/get", {"accountId": address, "properties": ["role"]}, "m"]]},
            address,
        )
        (inbox,) = [m["id"] for m in boxes["methodResponses"][0][1]["list"] if m["role"] == "inbox"]  # type: ignore[index]

        async def go() -> None:
            reader, writer = await Target(b"", unix=self.jmap_socket).connect()
            try:
                for start in range(0, len(messages), batch):
                    blobs = []
                    for message in messages[start : start + batch]:
                        head = (
                            f"POST {upload} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {bearer}\r\n"
                            f"Content-Type: message/rfc822\r\nContent-Length: {len(message)}\r\n\r\n"
                        )
                        status, body = await _exchange(reader, writer, head.encode() + message)
                        if status not in (200, 201):
                            raise RuntimeError(f"upload answered {status}: {body[:200]!r}")
                        blobs.append(json.loads(body)["blobId"])
                    emails = {f"e{i}": {"blobId": b, "mailboxIds": {inbox: True}} for i, b in enumerate(blobs)}
                    call = ["Email/import", {"accountId": address, "emails": emails}, "i"]
                    data = json.dumps({"using": using, "methodCalls": [call]}).encode()
                    head = (
                        f"POST {session['apiUrl']} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {bearer}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                    )
                    status, body = await _exchange(reader, writer, head.encode() + data)
                    result = json.loads(body)["methodResponses"][0][1]
                    if status != 200 or len(result.get("created") or {}) != len(emails):
                        raise RuntimeError(f"Email/import: {status} {str(result.get('notCreated'))[:300]}")
            finally:
                writer.close()

        asyncio.run(go())

    def instance_cpu(self) -> float:
        """CPU seconds of this instance's live Cyrus processes and the children they reaped."""
        total = 0.0
        for pid in self.instance_processes():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += cpu_seconds(pid, children=True)
        return total

    def cyrus_cpu(self) -> float:
        """CPU seconds of this instance's Cyrus ``httpd`` processes (the JMAP server: what a mail
        read costs Cyrus), from ``/proc/<pid>/stat``. They are preforked and live across rounds
        (one per connection, reused); one that exits during a round takes its share with it, so
        the figure can only be low, never high. Squatter, the 30 s checkpoint event and the other
        services are left out: they are not the request's cost."""
        total = 0.0
        for pid in self.instance_processes():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "httpd":
                    total += cpu_seconds(pid)
        return total

    def wait_cyrus_idle(self, timeout: float = 120.0, busy: float = 0.05, window: float = 0.5) -> float:
        """Wait until Cyrus (squatter indexing new mail, mostly) uses under ``busy`` of a core over
        ``window`` seconds, at most ``timeout`` seconds; returns the seconds waited."""
        began = time.monotonic()
        last = self.instance_cpu()
        while time.monotonic() - began < timeout:
            time.sleep(window)
            now = self.instance_cpu()
            if now - last < busy * window:
                break
            last = now
        return time.monotonic() - began

    def output(self, tail: int = 40) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        return "(no output)"


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    stack = Stack()
    try:
        stack.start()
        yield stack
    finally:
        for note in stack.stop():
            print(f"note: {note}")


# --------------------------------------------------------------------------- load generator

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """A raw HTTP/1.1 request and where it goes: a TCP port on 127.0.0.1, or a Unix socket."""

    request: bytes
    port: int | None = None
    unix: str | None = None
    #: CPU seconds of the server answering it (default: the stack's API processes).
    server_cpu: Callable[[], float] | None = field(default=None, compare=False)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix is not None:
            return await asyncio.open_unix_connection(self.unix, limit=1 << 20)
        assert self.port is not None
        return await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    match = _CONTENT_LENGTH.search(head)
    if match is None:
        raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
    body = await reader.readexactly(int(match.group(1)))
    return int(head[9:12]), body


def raw_request(target: Target) -> tuple[int, bytes]:
    """One request on a fresh connection: status and body."""

    async def go() -> tuple[int, bytes]:
        reader, writer = await target.connect()
        try:
            return await _exchange(reader, writer, target.request)
        finally:
            writer.close()

    return asyncio.run(go())


async def _load(target: Target, concurrency: int, seconds: float, latencies: list[float]) -> tuple[int, int]:
    errors = 0
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, done
        reader, writer = await target.connect()
        try:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                status, _ = await _exchange(reader, writer, target.request)
                latencies.append(time.perf_counter() - began)
                done += 1
                if status != 200:
                    errors += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors


@dataclass
class Round:
    """One timed round of one contender."""

    requests: int
    seconds: float
    api_cpu: float
    cyrus_cpu: float
    latencies: list[float] = field(repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        """Latency percentile ``q`` in ms."""
        lat = sorted(self.latencies)
        return 1000 * lat[min(len(lat) - 1, int(len(lat) * q))]

    @property
    def api_ms(self) -> float:
        return 1000 * self.api_cpu / max(self.requests, 1)

    @property
    def cyrus_ms(self) -> float:
        return 1000 * self.cyrus_cpu / max(self.requests, 1)


@dataclass
class Contender:
    label: str
    target: Target
    rounds: list[Round] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) if attr != "p50" else r.pct(0.5) for r in self.rounds)


def spread(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    """``median (min..max)``."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}..{fmt.format(max(values))})"


class Bench:
    """What a case gets: the running stack and the load generator."""

    def __init__(self, stack: Stack, *, seconds: float, rounds: int) -> None:
        self.stack = stack
        self.seconds = seconds
        self.rounds = rounds

    def api(self, path: str, *, method: str = "GET", body: bytes = b"") -> Target:
        """An authenticated request to the API (the key is sent on every route, public ones too)."""
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.stack.app_port}",
            "Accept: application/json",
            f"Authorization: Bearer {self.stack.key}",
        ]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return Target(("\r\n".join(lines) + "\r\n\r\n").encode() + body, port=self.stack.app_port)

    def direct(self, body: dict[str, object], address: str | None = None) -> Target:
        """The JMAP request ``body`` straight to Cyrus over the API's Unix socket."""
        return Target(self.stack.jmap_post(body, address), unix=self.stack.jmap_socket)

    def measure(self, target: Target, concurrency: int, seconds: float) -> Round:
        """``concurrency`` keep-alive connections sending ``target`` for ``seconds``."""
        latencies: list[float] = []
        api_cpu = target.server_cpu or self.stack.api_cpu
        api0, cyrus0 = api_cpu(), self.stack.cyrus_cpu()
        began = time.perf_counter()
        done, errors = asyncio.run(_load(target, concurrency, seconds, latencies))
        took = time.perf_counter() - began
        if errors:
            raise RuntimeError(f"{errors} of {done} responses were not 200: {target.request[:120]!r}")
        api, cyrus = api_cpu() - api0, max(0.0, self.stack.cyrus_cpu() - cyrus0)
        return Round(done, took, api, cyrus, latencies)

    def compare(
        self, targets: dict[str, Target], *, concurrency: int = 1, seconds: float | None = None
    ) -> list[Contender]:
        """Warm each target up, then ``rounds`` rounds of each (order reversed every other round)."""
        seconds = self.seconds if seconds is None else seconds
        contenders = [Contender(label, target) for label, target in targets.items()]
        for c in contenders:
            self.measure(c.target, concurrency, min(0.5, seconds))
        for n in range(self.rounds):
            for c in contenders if n % 2 == 0 else contenders[::-1]:
                c.rounds.append(self.measure(c.target, concurrency, seconds))
        return contenders

    @staticmethod
    def table(contenders: Sequence[Contender], *, indent: str = "    ") -> None:
        """One line per contender: req/s, p50, API and Cyrus CPU per request, each
        ``median (min..max)`` over the rounds."""
        width = max(len(c.label) for c in contenders)
        for c in contenders:
            rs = c.rounds
            print(
                f"{indent}{c.label:{width}}  {spread([r.rps for r in rs]):>18} req/s  "
                f"p50 {spread([r.pct(0.5) for r in rs], '{:.2f}'):>20} ms  "
                f"CPU/req API {spread([r.api_ms for r in rs], '{:.2f}'):>20} ms, "
                f"Cyrus httpd {spread([r.cyrus_ms for r in rs], '{:.2f}'):>20} ms"
            )

    @staticmethod
    def ratio(api: Contender, base: Contender, *, indent: str = "    ") -> str:
        return (
            f"{indent}ratio {api.label.split()[0]}/{base.label.split()[0]} (medians): throughput "
            f"{api.median('rps') / base.median('rps'):.2f}x, p50 {api.median('p50') / base.median('p50'):.2f}x; "
            f"API CPU {api.median('api_ms'):.2f} ms/request vs Cyrus "
            f"{api.median('cyrus_ms'):.2f} ms via the API, {base.median('cyrus_ms'):.2f} ms direct"
        )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    discover()
    parser = argparse.ArgumentParser(prog="scripts/bench", description="Run benchmark cases against a throwaway stack.")
    parser.add_argument("cases", nargs="*", help=f"cases to run (default: all): {', '.join(CASES)}")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measured round (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender (default 3)")
    args = parser.parse_args(argv)
    if args.list:
        for c in CASES.values():
            print(f"{c.name:12} {c.description}")
        return 0
    unknown = [name for name in args.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    selected = [CASES[name] for name in (args.cases or CASES)]
    if os.geteuid() != 0:
        print("scripts/bench needs root (shipmail serve runs Cyrus)", file=sys.stderr)
        return 2
    began = time.monotonic()
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    with running_stack() as stack:
        print(f"load average before: {' '.join(load)}")
        print(
            f"stack up in {time.monotonic() - began:.1f} s: shipmail serve on {stack.app_url} (1 worker, access "
            f"log on), data in {stack.data_dir}, Cyrus JMAP on {stack.jmap_socket}; {os.cpu_count()} CPUs, "
            f"{args.rounds} rounds x "
            f"{args.seconds:g} s; figures are median (min..max) over the rounds"
        )
        bench = Bench(stack, seconds=args.seconds, rounds=args.rounds)
        for c in selected:
            print(f"\n== {c.name}: {c.description}", flush=True)
            t0 = time.monotonic()
            c.run(bench)
            print(f"  ({c.name} took {time.monotonic() - t0:.0f} s)", flush=True)
    print(f"\nbench done in {time.monotonic() - began:.1f} s; everything stopped")
    return 0


if __name__ == "__main__":
    # Case modules import ``bench_harness``; run that module, not this __main__ copy of it, so that
    # they register into the registry main() reads.
    sys.path.insert(0, str(SCRIPTS))
    import bench_harness

    sys.exit(bench_harness.main())
