"""The real ``shipmail serve`` command end to end, following the README walk-through: operator CLI,
HTTP API, LMTP delivery and IMAP logins; SIGTERM stops every process it started; a restart on the
same data directory keeps keys, mailboxes and mail. ``GET /v1/status`` reports each component
and ``serve`` restarts a component that stops answering (kill -9 under load: test_faults.py)."""

from __future__ import annotations

import grp
import imaplib
import os
import signal
import smtplib
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import imap_login as connect
from tests.integration.conftest import require_root
from tests.integration.serve_proc import CORPUS, ServeProcess, port_is_free

PASSWORD = "CorrectHorse9"
CYRUS_PROGRAMS = ("httpd", "imapd", "lmtpd", "squatter")
NEW_PASSWORD = "N3wAndBetterOne"


@pytest.fixture
def serve() -> Iterator[ServeProcess]:
    require_root("shipmail serve")
    proc = ServeProcess("shipmail-serve-e2e-")
    try:
        yield proc
    finally:
        print(proc.output())  # shown by pytest when the test failed
        proc.close()


def lmtp(serve: ServeProcess, recipient: str, message: bytes) -> dict[str, object]:
    with smtplib.LMTP("127.0.0.1", serve.lmtp_port, timeout=15) as conn:
        return dict(conn.sendmail("sender@example.org", [recipient], message))


def imap_login(serve: ServeProcess, user: str, password: str) -> imaplib.IMAP4:
    return connect("127.0.0.1", serve.imap_port, user, password)


def inbox_subjects(serve: ServeProcess, user: str, password: str) -> list[bytes]:
    conn = imap_login(serve, user, password)
    try:
        typ, data = conn.select("INBOX", readonly=True)
        assert typ == "OK", data
        count = int(data[0])  # type: ignore[arg-type]
        if count == 0:
            return []
        typ, fetched = conn.fetch(f"1:{count}", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK", fetched
        return [part[1].strip() for part in fetched if isinstance(part, tuple)]
    finally:
        conn.logout()


def stop_cleanly(serve: ServeProcess) -> None:
    """SIGTERM: the command exits within 15 s and leaves no process, socket or port behind."""
    supervised = serve.descendants()
    assert serve.api_pid() in supervised and serve.login_checker_pid() in supervised
    code, took = serve.stop(timeout=15)
    assert code is not None, f"shipmail serve did not exit within 15 s of SIGTERM\n{serve.output()}"
    left = serve.instance_processes()
    assert not left, (
        f"shipmail serve exited ({code}) {took:.1f} s after SIGTERM but left processes of its instance:\n"
        + "\n".join(f"  {pid} {cmd}" for pid, cmd in left)
        + f"\n{serve.output(40)}"
    )
    alive = [pid for pid in supervised if Path(f"/proc/{pid}").exists() and pid_alive(pid)]
    assert alive == [], f"processes serve started are still running: {alive}"
    busy = {name: port for name, port in serve.ports.items() if not port_is_free(port)}
    assert busy == {}, f"ports still taken after SIGTERM: {busy}"
    authd_socket = serve.data_dir / "cyrus" / "run" / "authd.sock"
    assert not authd_socket.exists(), f"{authd_socket} left behind"
    assert code in (0, 143), f"shipmail serve exited with {code} after SIGTERM\n{serve.output(40)}"


def wait_for(condition: Callable[[], bool], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_serve_walkthrough_stop_and_restart(serve: ServeProcess) -> None:
    raw = (CORPUS / "plain_emails" / "basic_email.eml").read_bytes()
    assert stat.S_IMODE(serve.data_dir.stat().st_mode) == 0o700  # what mktemp -d gives
    serve.start()
    # serve made it traversable for user cyrus (search only, for group mail) and said so.
    st = serve.data_dir.stat()
    assert (stat.S_IMODE(st.st_mode), grp.getgrgid(st.st_gid).gr_name) == (0o710, "mail")
    assert f"made {serve.data_dir} traversable for user cyrus" in serve.output()
    key = serve.create_key("acme")
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=serve.base_url, headers=auth, timeout=15) as http:
        r = http.post("/v1/domains", json={"name": "example.com"})
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "pending"
        serve.verify_domain("example.com")
        domains = http.get("/v1/domains").json()["data"]
        assert [(d["name"], d["status"]) for d in domains] == [("example.com", "verified")]
        r = http.post("/v1/mailboxes", json={"domain_id": domains[0]["id"], "address": "hello", "password": PASSWORD})
        assert r.status_code == 201, r.text
        mailbox = r.json()
        address = mailbox["address"]
        assert address == "hello@example.com"

        # Inbound mail over LMTP, read by the owner over IMAP with the password set through the API.
        assert lmtp(serve, address, raw) == {}
        assert inbox_subjects(serve, address, PASSWORD) == [b"Subject: Testing 123"]

        # A new password: the old one fails from now on (one failed login: 3 s pause), the new works.
        r = http.patch(f"/v1/mailboxes/{mailbox['id']}/password", json={"password": NEW_PASSWORD})
        assert r.status_code == 200, r.text
        with pytest.raises(imaplib.IMAP4.error):
            imap_login(serve, address, PASSWORD)
        imap_login(serve, address, NEW_PASSWORD).logout()

    stop_cleanly(serve)

    # A restart on the same data directory keeps the key, the mailbox and its mail.
    serve.start()
    with httpx.Client(base_url=serve.base_url, headers=auth, timeout=15) as http:
        listed = http.get("/v1/mailboxes")
        assert listed.status_code == 200, listed.text
        assert [m["id"] for m in listed.json()["data"]] == [mailbox["id"]]
        assert inbox_subjects(serve, address, NEW_PASSWORD) == [b"Subject: Testing 123"]

        # Deleting the mailbox removes the account: delivery to it is refused.
        r = http.delete(f"/v1/mailboxes/{mailbox['id']}")
        assert r.status_code == 204, r.text
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            lmtp(serve, address, raw)
        assert refused.value.recipients[address][0] == 550
        assert http.get(f"/v1/mailboxes/{mailbox['id']}").status_code == 404

    stop_cleanly(serve)


def test_status_reports_each_component_and_serve_restarts_what_stops_answering(serve: ServeProcess) -> None:
    """A component that stops answering (SIGSTOP: alive, silent) shows as down in /v1/status
    within 2 s (503, Retry-After); serve then restarts it and status is 200 again within 30 s."""
    serve.start()
    parts = ("database", "jmap", "imap", "lmtp", "login_checker")
    assert serve.wait_status(200, within=5) == dict.fromkeys(parts, "up")
    key = serve.create_key("acme")
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=serve.base_url, headers=auth, timeout=15) as http:
        r = http.post("/v1/domains", json={"name": "status.example"})
        assert r.status_code == 201, r.text
        serve.verify_domain("status.example")
        r = http.post("/v1/mailboxes", json={"domain_id": r.json()["id"], "address": "owner", "password": PASSWORD})
        assert r.status_code == 201, r.text
    address = "owner@status.example"

    # The login checker.
    checker = serve.login_checker_pid()
    assert checker is not None
    os.kill(checker, signal.SIGSTOP)
    assert serve.wait_status(503, within=2) == {**dict.fromkeys(parts, "up"), "login_checker": "down"}
    r = httpx.get(f"{serve.base_url}/v1/status", timeout=5)
    assert r.json()["status"] == "degraded" and int(r.headers["retry-after"]) > 0
    restarted = time.monotonic()
    wait_for(lambda: serve.login_checker_pid() not in (None, checker), "a new login checker", within=30)
    serve.wait_status(200, within=30 - (time.monotonic() - restarted))
    assert not pid_alive(checker)
    imap_login(serve, address, PASSWORD).logout()

    # Cyrus: every process of the instance stops answering (its idle children would go on
    # serving for a while if only the master stopped).
    master = serve.cyrus_master_pid()
    assert master is not None
    frozen = [master, *(pid for program in CYRUS_PROGRAMS for pid in serve.cyrus_children(program))]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    down = serve.wait_status(503, within=2)
    assert down == {**dict.fromkeys(parts, "down"), "database": "up", "login_checker": "up"}, down
    restarted = time.monotonic()
    wait_for(lambda: serve.cyrus_master_pid() not in (None, master), "a new Cyrus master", within=30)
    serve.wait_status(200, within=30 - (time.monotonic() - restarted))
    assert not pid_alive(master)
    imap_login(serve, address, PASSWORD).logout()
    raw = (CORPUS / "plain_emails" / "basic_email.eml").read_bytes()
    assert lmtp(serve, address, raw) == {}
    assert inbox_subjects(serve, address, PASSWORD) == [b"Subject: Testing 123"]

    # The API process (kill -9): serve starts another on the same socket.
    api = serve.api_pid()
    assert api is not None
    os.kill(api, signal.SIGKILL)
    restarted = time.monotonic()
    wait_for(lambda: serve.api_pid() not in (None, api), "a new API process", within=30)
    serve.wait_status(200, within=30 - (time.monotonic() - restarted))
    stop_cleanly(serve)


def test_a_killed_serve_takes_its_children_along_and_starts_again(serve: ServeProcess) -> None:
    """kill -9 of serve itself: the API and the login checker end with it (the parent-death signal),
    Cyrus (a daemon) stays, and a new serve on the same data directory takes over."""
    serve.start()
    api, checker, master = serve.api_pid(), serve.login_checker_pid(), serve.cyrus_master_pid()
    assert None not in (api, checker, master)
    assert serve.proc is not None
    os.kill(serve.proc.pid, signal.SIGKILL)
    serve.proc.wait(10)
    wait_for(lambda: not pid_alive(api or 0) and not pid_alive(checker or 0), "the children ending", within=15)
    wait_for(lambda: port_is_free(serve.port), "the API port being free", within=15)
    assert pid_alive(master or 0)
    serve.start()
    assert serve.cyrus_master_pid() == master  # the running instance was taken over
    assert serve.wait_status(200, within=5)["login_checker"] == "up"
    stop_cleanly(serve)
