"""Faults against the real ``shipmail serve`` (issue 8): the service heals itself.

* Under a load of concurrent creates, deletes, settings changes, reads and LMTP deliveries, kill -9
  the API process (with several workers: one worker, then uvicorn's parent), then the Cyrus
  master, then one Cyrus child (an httpd): after each, within 30 s the service answers again by
  itself (``serve`` restarts Cyrus and the API, the master restarts its child), no request answers
  a 5xx other than 503 or hangs, every message that got LMTP 250 is in its mailbox, and
  ``shipmail doctor`` reports no difference after one ``--repair`` at most. On SQLite (one API
  process) and on PostgreSQL (two workers).
* While Cyrus is down (its processes stopped, then killed, with the supervisor frozen so nothing
  restarts it), every operation that needs the mail server answers 503 with ``Retry-After`` and
  the error envelope (never 500, never a hang), and changes nothing; then ``serve`` brings it back.

Bounded in time: every wait has a deadline; each test takes one to three minutes.
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import os
import signal
import smtplib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dbfixtures import BACKENDS, migrated_database
from tests.integration.conftest import imap_login, require_root
from tests.integration.serve_proc import ServeProcess

PASSWORD = "CorrectHorse9"
#: Seconds within which the service must answer again after a fault (issue 8).
RECOVERY = 30.0
#: A request that takes longer than this counts as a hang.
HANG = 20.0
CYRUS_PROGRAMS = ("httpd", "imapd", "lmtpd", "squatter")
#: Answers that are fine while processes die: the operation's success statuses, 503, and for
#: creates 409 (an address half-made by a crash answers 409 until it is reconciled).
ACCEPTED = {
    "create": {201, 409, 503},
    "delete": {204, 404, 409, 503},
    "settings": {200, 409, 503},
    "read": {200, 503},
}


def wait_for(condition: Callable[[], bool], what: str, within: float) -> float:
    """Poll ``condition`` until true; the seconds it took. Fails after ``within`` seconds."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < within, f"{what}: not within {within} s"
        time.sleep(0.05)
    return time.monotonic() - began


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def message(message_id: str, subject: str) -> bytes:
    return (
        f"From: sender@faults.example\r\nTo: someone@faults.example\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\nbody of {subject}\r\n"
    ).encode()


def lmtp_deliver(port: int, recipient: str, data: bytes) -> bool:
    """One LMTP transaction; True only when the server answered 250 for the message."""
    conn = smtplib.LMTP("127.0.0.1", port, timeout=10)
    try:
        refused = conn.sendmail("sender@faults.example", [recipient], data)
        return refused == {}
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            conn.quit()
        conn.close()


def message_ids_in(serve: ServeProcess, address: str) -> set[str]:
    """Every Message-ID in every folder of ``address``, read over IMAP as its owner."""
    conn = imap_login("127.0.0.1", serve.imap_port, address, PASSWORD)
    found: set[str] = set()
    try:
        typ, folders = conn.list()
        assert typ == "OK", folders
        for line in folders:
            assert isinstance(line, bytes)
            name = line.rsplit(b' "/" ', 1)[-1].decode().strip('"')
            typ, data = conn.select(f'"{name}"', readonly=True)
            assert typ == "OK", (name, data)
            if int(data[0] or 0) == 0:
                continue
            typ, fetched = conn.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            assert typ == "OK", fetched
            for part in fetched:
                if isinstance(part, tuple):
                    header = part[1].decode().strip()
                    found.add(header.split(":", 1)[1].strip())
    finally:
        conn.logout()
    return found


class Load:
    """Concurrent API traffic and LMTP deliveries until :meth:`stop`.

    ``unexpected`` collects every answer outside :data:`ACCEPTED` (a 500, a hang); ``delivered``
    every (address, Message-ID) that got LMTP 250; ``done`` counts successes per kind.
    """

    def __init__(self, serve: ServeProcess, key: str, domain_id: str, stable: list[dict[str, Any]]) -> None:
        self.serve = serve
        self.key = key
        self.domain_id = domain_id
        self.stable = stable
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.unexpected: list[str] = []
        self.delivered: list[tuple[str, str]] = []
        self.done: Counter[str] = Counter()
        self.threads: list[threading.Thread] = []
        self.serial = itertools.count()

    def start(self) -> None:
        workers: list[Callable[[int], None]] = [
            self.creates_and_deletes,
            self.creates_and_deletes,
            self.settings,
            self.reads,
            self.deliveries,
            self.deliveries,
        ]
        for n, work in enumerate(workers):
            thread = threading.Thread(target=self._run, args=(work, n), name=f"load-{work.__name__}-{n}")
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(HANG + 15)
            assert not thread.is_alive(), f"{thread.name} did not end"

    def wait_progress(self, count: int, within: float = 60.0) -> None:
        """Wait until ``count`` more operations have succeeded, at least one of each kind (the load
        is really running: creates, deletes, settings changes, reads, deliveries)."""
        with self.lock:
            before = Counter(self.done)
        target = sum(before.values()) + count

        def moved() -> bool:
            with self.lock:
                return sum(self.done.values()) >= target and all(
                    self.done[kind] > before[kind] for kind in ("create", "delete", "settings", "read", "delivery")
                )

        wait_for(moved, f"{count} more successful operations of every kind", within)

    # ----------------------------------------------------------------- the workers

    def _run(self, work: Callable[[int], None], n: int) -> None:
        try:
            work(n)
        except Exception as exc:  # a bug in the load itself must fail the test, not vanish
            with self.lock:
                self.unexpected.append(f"load worker {n} crashed: {exc!r}")

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.serve.base_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=HANG)

    def _call(self, http: httpx.Client, kind: str, method: str, path: str, **kw: Any) -> httpx.Response | None:
        """One request; None when the API did not answer (a killed API process)."""
        try:
            r = http.request(method, path, **kw)
        except httpx.TimeoutException:
            with self.lock:
                self.unexpected.append(f"{method} {path}: no answer within {HANG} s")
            return None
        except httpx.TransportError:
            time.sleep(0.05)  # the API process is being restarted
            return None
        if r.status_code not in ACCEPTED[kind]:
            with self.lock:
                self.unexpected.append(f"{method} {path}: {r.status_code} {r.text[:300]}")
        elif r.status_code == 503 and "retry-after" not in r.headers:
            with self.lock:
                self.unexpected.append(f"{method} {path}: 503 without Retry-After")
        elif r.status_code < 300:
            with self.lock:
                self.done[kind] += 1
        return r

    def creates_and_deletes(self, n: int) -> None:
        with self._client() as http:
            while not self.stopping.is_set():
                local = f"churn{n}-{next(self.serial)}"
                body = {"domain_id": self.domain_id, "address": local, "password": PASSWORD}
                r = self._call(http, "create", "POST", "/v1/mailboxes", json=body)
                if r is None or r.status_code != 201:
                    continue
                mailbox_id = r.json()["id"]
                for _ in range(20):  # delete it; retry while the mail server is away
                    r = self._call(http, "delete", "DELETE", f"/v1/mailboxes/{mailbox_id}")
                    if self.stopping.is_set() or (r is not None and r.status_code in (204, 404)):
                        break
                    time.sleep(0.2)

    def settings(self, n: int) -> None:
        never = {"type": "subject_contains", "value": "zzz-never-matches"}
        with self._client() as http:
            for turn in itertools.count():
                if self.stopping.is_set():
                    return
                mailbox = self.stable[turn % len(self.stable)]["id"]
                if turn % 3 == 0:
                    rule = {
                        "id": str(uuid.uuid4()),
                        "name": f"rule {turn}",
                        "enabled": True,
                        "position": 0,
                        "match_mode": "all",
                        "stop": False,
                        "conditions": [never],
                        "actions": [{"type": "mark_read"}],
                    }
                    self._call(http, "settings", "PUT", f"/v1/mailboxes/{mailbox}/rules", json={"rules": [rule]})
                elif turn % 3 == 1:
                    body = {"enabled": turn % 2 == 0, "subject": "Away", "body": f"back soon ({turn})"}
                    self._call(http, "settings", "PATCH", f"/v1/mailboxes/{mailbox}/auto-reply", json=body)
                else:
                    body = {"threshold": 1 + turn % 14}
                    self._call(http, "settings", "PATCH", f"/v1/mailboxes/{mailbox}/spam-filter", json=body)

    def reads(self, n: int) -> None:
        with self._client() as http:
            for turn in itertools.count():
                if self.stopping.is_set():
                    return
                mailbox = self.stable[turn % len(self.stable)]["id"]
                path = (
                    "/v1/mailboxes",
                    f"/v1/mailboxes/{mailbox}/inbox/messages?limit=5",
                    f"/v1/mailboxes/{mailbox}/folders",
                )[turn % 3]
                self._call(http, "read", "GET", path)

    def deliveries(self, n: int) -> None:
        for turn in itertools.count():
            if self.stopping.is_set():
                return
            address = self.stable[turn % len(self.stable)]["address"]
            message_id = f"<fault-{n}-{turn}-{uuid.uuid4().hex[:8]}@faults.example>"
            try:
                accepted = lmtp_deliver(self.serve.lmtp_port, address, message(message_id, f"load {n}/{turn}"))
            except (smtplib.SMTPException, OSError):
                accepted = False  # refused, deferred or unreachable: not promised, may be lost
            if accepted:
                with self.lock:
                    self.delivered.append((address, message_id))
                    self.done["delivery"] += 1
            else:
                time.sleep(0.1)


# --------------------------------------------------------------------- fixtures


@pytest.fixture(params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServeProcess]:
    """``shipmail serve`` on SQLite (one API process) or PostgreSQL (two workers), started."""
    require_root("shipmail serve")
    backend: str = request.param
    env = {"SHIPMAIL_RATELIMIT_READ": "1000000/minute", "SHIPMAIL_RATELIMIT_WRITE": "1000000/minute"}
    database = migrated_database(backend, tmp_path) if backend != "sqlite" else contextlib.nullcontext(None)
    with database as url:
        if url is not None:
            env["SHIPMAIL_DATABASE_URL"] = url
        serve = ServeProcess(f"shipmail-faults-{backend}-", env, workers=1 if backend == "sqlite" else 2)
        try:
            serve.start()
            yield serve
        finally:
            print(serve.output(400))  # shown by pytest when the test failed
            serve.close()


def set_up(serve: ServeProcess, domain: str, locals_: list[str]) -> tuple[str, str, list[dict[str, Any]]]:
    """A key, a verified domain and mailboxes ``locals_`` with :data:`PASSWORD`."""
    key = serve.create_key("acme")
    with httpx.Client(base_url=serve.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        r = http.post("/v1/domains", json={"name": domain})
        assert r.status_code == 201, r.text
        domain_id = r.json()["id"]
        serve.verify_domain(domain)
        made = []
        for local in locals_:
            r = http.post("/v1/mailboxes", json={"domain_id": domain_id, "address": local, "password": PASSWORD})
            assert r.status_code == 201, r.text
            made.append(r.json())
    return key, domain_id, made


def answering(serve: ServeProcess, key: str, owner: str) -> bool:
    """The whole service answers: status 200 (every component up), an authenticated read, LMTP
    and an owner's IMAP login."""
    code, _parts = serve.status(timeout=5)
    if code != 200:
        return False
    try:
        r = httpx.get(f"{serve.base_url}/v1/mailboxes", headers={"Authorization": f"Bearer {key}"}, timeout=5)
        if r.status_code != 200:
            return False
        with smtplib.LMTP("127.0.0.1", serve.lmtp_port, timeout=5) as lmtp:
            if lmtp.noop()[0] != 250:
                return False
        imap_login("127.0.0.1", serve.imap_port, owner, PASSWORD).logout()
    except (httpx.HTTPError, smtplib.SMTPException, OSError, imaplib.IMAP4.error):
        return False
    return True


# --------------------------------------------------------------------- the tests


def test_kill_9_under_load_heals_by_itself(served: ServeProcess) -> None:
    serve = served
    key, domain_id, stable = set_up(serve, "faults.example", ["steady1", "steady2"])
    owner = stable[0]["address"]
    load = Load(serve, key, domain_id, stable)
    load.start()
    recoveries: dict[str, float] = {}

    def fault(name: str, kill: Callable[[], int], replaced: Callable[[int], bool]) -> None:
        load.wait_progress(30)
        old = kill()
        took = wait_for(lambda: replaced(old), f"{name}: a replacement", RECOVERY)
        took += wait_for(lambda: answering(serve, key, owner), f"{name}: the service answering", RECOVERY - took)
        recoveries[name] = took
        assert not pid_alive(old), f"{name}: pid {old} is still alive"

    def kill(pid: int | None) -> int:
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        return pid

    try:
        if serve.workers > 1:  # uvicorn's supervisor replaces a dead worker ...
            fault(
                "API worker",
                lambda: kill(serve.api_workers()[0]),
                lambda old: old not in serve.api_workers() and len(serve.api_workers()) == serve.workers,
            )
        # ... and serve replaces the API process itself (with several workers: uvicorn's parent).
        fault("API process", lambda: kill(serve.api_pid()), lambda old: serve.api_pid() not in (None, old))
        fault(
            "Cyrus master",
            lambda: kill(serve.cyrus_master_pid()),
            lambda old: serve.cyrus_master_pid() not in (None, old),
        )
        fault(
            "Cyrus httpd",
            lambda: kill(serve.cyrus_children("httpd")[0]),
            lambda old: old not in serve.cyrus_children("httpd") and len(serve.cyrus_children("httpd")) >= 1,
        )
        load.wait_progress(30)
    finally:
        load.stop()
    print(f"recovered within (s): {recoveries}; operations: {dict(load.done)}")

    assert load.unexpected == [], "\n".join(load.unexpected[:50])
    assert {"create", "delete", "settings", "read", "delivery"} <= set(load.done), load.done

    # Every message that got LMTP 250 is in its mailbox.
    for mailbox in stable:
        expected = {mid for address, mid in load.delivered if address == mailbox["address"]}
        missing = expected - message_ids_in(serve, mailbox["address"])
        assert not missing, f"{len(missing)} of {len(expected)} messages acknowledged with 250 are lost: {missing}"

    # The database and the mail server agree after one repair at most.
    check = serve.cli("doctor", check=False)
    if check.returncode != 0:
        assert check.returncode == 1, f"doctor could not check:\n{check.stdout}\n{check.stderr}"
        repair = serve.cli("doctor", "--repair", check=False)
        assert repair.returncode == 0, f"doctor --repair left differences:\n{repair.stdout}\n{repair.stderr}"
        check = serve.cli("doctor", check=False)
    assert check.returncode == 0, f"differences after one repair:\n{check.stdout}\n{check.stderr}"


def cyrus_pids(serve: ServeProcess) -> list[int]:
    master = serve.cyrus_master_pid()
    children = [pid for program in CYRUS_PROGRAMS for pid in serve.cyrus_children(program)]
    return ([master] if master is not None else []) + children


def test_every_path_answers_503_while_cyrus_is_down() -> None:
    require_root("shipmail serve")
    serve = ServeProcess("shipmail-faults-503-")
    try:
        serve.start()
        _run_503_scenario(serve)
    finally:
        with contextlib.suppress(ProcessLookupError):
            if serve.proc is not None:
                os.kill(serve.proc.pid, signal.SIGCONT)
        print(serve.output(300))
        serve.close()


def _run_503_scenario(serve: ServeProcess) -> None:
    key, domain_id, (owner, doomed) = set_up(serve, "down.example", ["owner", "doomed"])
    auth = {"Authorization": f"Bearer {key}"}
    mid = owner["id"]
    with httpx.Client(base_url=serve.base_url, headers=auth, timeout=HANG) as http:
        r = http.post(
            f"/v1/mailboxes/{mid}/sandbox/inbound", json={"from": "a@sender.example", "subject": "hi", "text": "x"}
        )
        assert r.status_code == 201, r.text
        email_id = r.json()["email_id"]

        def received() -> int:
            listed = http.get("/v1/mailboxes").json()["data"]
            return int(next(m for m in listed if m["id"] == mid)["received_this_month"])

        # The delivery is recorded (its counter) just after the 250, by the API's job worker.
        wait_for(lambda: received() >= 1, "the sandbox delivery recorded", RECOVERY)
        before = {m["id"]: m for m in http.get("/v1/mailboxes").json()["data"]}

    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/v1/mailboxes/{mid}/inbox/messages", None),
        ("GET", f"/v1/mailboxes/{mid}/inbox/messages/{email_id}", None),
        ("PATCH", f"/v1/mailboxes/{mid}/inbox/messages/{email_id}", {"read": True}),
        ("GET", f"/v1/mailboxes/{mid}/inbox/threads", None),
        ("GET", f"/v1/mailboxes/{mid}/inbox/attachments?blob_id=Gnone&name=a.txt", None),
        ("GET", f"/v1/mailboxes/{mid}/folders", None),
        ("POST", f"/v1/mailboxes/{mid}/folders", {"name": "Projects"}),
        ("GET", f"/v1/mailboxes/{mid}/identities", None),
        ("GET", f"/v1/mailboxes/{mid}/rules", None),
        ("PUT", f"/v1/mailboxes/{mid}/rules", {"rules": []}),
        ("PATCH", f"/v1/mailboxes/{mid}/auto-reply", {"enabled": True, "body": "away"}),
        ("PATCH", f"/v1/mailboxes/{mid}/spam-filter", {"threshold": 9}),
        ("POST", f"/v1/mailboxes/{mid}/suspend", None),
        ("POST", f"/v1/mailboxes/{mid}/sandbox/inbound", {"from": "a@sender.example", "subject": "x", "text": "x"}),
        ("POST", "/v1/mailboxes", {"domain_id": domain_id, "address": "newcomer", "password": PASSWORD}),
        ("DELETE", f"/v1/mailboxes/{doomed['id']}", None),
    ]

    def call(spec: tuple[str, str, dict[str, Any] | None]) -> tuple[str, int, dict[str, str], Any]:
        method, path, body = spec
        with httpx.Client(base_url=serve.base_url, headers=auth, timeout=HANG) as http:
            try:
                r = http.request(method, path, json=body)
            except httpx.TimeoutException:
                return f"{method} {path}", 0, {}, f"no answer within {HANG} s"
            return f"{method} {path}", r.status_code, dict(r.headers), r.json() if r.content else None

    def all_503(state: str) -> None:
        # Reads at once; writes one after another (on SQLite, concurrent writers of one row wait
        # on each other's transactions: not what this test is about).
        reads = [spec for spec in calls if spec[0] == "GET"]
        with ThreadPoolExecutor(max_workers=len(reads)) as pool:
            answers = list(pool.map(call, reads))
        answers += [call(spec) for spec in calls if spec[0] != "GET"]
        wrong = [
            f"{what}: {code} {body}"
            for what, code, headers, body in answers
            if code != 503
            or "retry-after" not in headers
            or not isinstance(body, dict)
            or body["error"]["type"] != "internal_error"
            or body["error"]["request_id"] != headers.get("x-request-id")
        ]
        assert wrong == [], f"while Cyrus is {state}:\n" + "\n".join(wrong)
        code, parts = serve.status()
        assert code == 503 and parts["imap"] == parts["lmtp"] == parts["jmap"] == "down", (code, parts)
        listed = httpx.get(f"{serve.base_url}/v1/mailboxes", headers=auth, timeout=HANG)
        assert listed.status_code == 200, listed.text  # the database alone still answers

    # Nothing may restart Cyrus meanwhile: the supervisor itself is stopped (the API and the login
    # checker run on in their own processes).
    assert serve.proc is not None
    os.kill(serve.proc.pid, signal.SIGSTOP)
    frozen = cyrus_pids(serve)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    all_503("hanging (every process stopped)")
    for pid in frozen:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(pid) for pid in frozen), "the Cyrus processes ending", 10)
    all_503("gone (every process killed)")

    # serve notices and restarts Cyrus; nothing of the refused writes happened.
    os.kill(serve.proc.pid, signal.SIGCONT)
    wait_for(lambda: answering(serve, key, owner["address"]), "the service answering again", RECOVERY)
    with httpx.Client(base_url=serve.base_url, headers=auth, timeout=HANG) as http:
        after = {m["id"]: m for m in http.get("/v1/mailboxes").json()["data"]}
        assert after == before
        r = http.get(f"/v1/mailboxes/{mid}/folders")
        assert r.status_code == 200 and "Projects" not in {f["name"] for f in r.json()["data"]}, r.text
        r = http.get(f"/v1/mailboxes/{mid}/rules")
        assert r.status_code == 200 and r.json()["rules"] == [], r.text
        r = http.post("/v1/mailboxes", json={"domain_id": domain_id, "address": "newcomer", "password": PASSWORD})
        assert r.status_code == 201, r.text
