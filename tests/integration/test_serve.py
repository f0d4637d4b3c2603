"""The real ``shipmail serve`` command end to end, following the README walk-through: operator CLI,
HTTP API, LMTP delivery and IMAP logins; SIGTERM stops every process it started; a restart on the
same data directory keeps keys, mailboxes and mail."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.conftest import imap_login as connect
from tests.integration.conftest import require_root
from tests.integration.serve_proc import CORPUS, ServeProcess, port_is_free

PASSWORD = "CorrectHorse9"
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
    code, took = serve.stop(timeout=15)
    assert code is not None, f"shipmail serve did not exit within 15 s of SIGTERM\n{serve.output()}"
    left = serve.instance_processes()
    assert not left, (
        f"shipmail serve exited ({code}) {took:.1f} s after SIGTERM but left processes of its instance:\n"
        + "\n".join(f"  {pid} {cmd}" for pid, cmd in left)
        + f"\n{serve.output(40)}"
    )
    busy = {name: port for name, port in serve.ports.items() if not port_is_free(port)}
    assert busy == {}, f"ports still taken after SIGTERM: {busy}"
    authd_socket = serve.data_dir / "cyrus" / "run" / "authd.sock"
    assert not authd_socket.exists(), f"{authd_socket} left behind"
    assert code in (0, 143), f"shipmail serve exited with {code} after SIGTERM\n{serve.output(40)}"


def test_serve_walkthrough_stop_and_restart(serve: ServeProcess) -> None:
    raw = (CORPUS / "plain_emails" / "basic_email.eml").read_bytes()
    serve.start()
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
