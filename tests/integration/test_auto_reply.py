"""Auto-reply end to end on the real Cyrus: ``PATCH /v1/mailboxes/{id}/auto-reply`` installs the
mailbox's Sieve ``vacation``; mail delivered over LMTP gets its reply through the ``sendmail``
program, which stores it as an .eml in the instance's outbox (``cyrus.outbox``) or, in relay
mode, hands it to an SMTP server.

Cyrus runs the vacation action during the LMTP delivery and waits for the sendmail program, so
a reply is in the outbox when ``lmtp()`` returns (measured); the helpers still poll briefly, and
"no reply" checks are made after a later message's reply has arrived."""

from __future__ import annotations

import email
import email.policy
import os
import secrets
import shutil
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
from hypothesis import strategies as st

from shipmail.settings.schemas import AutoReply
from shipmail.settings.sieve import reply_condition
from shipmail.sieve.build import action
from shipmail.sieve.script import Section, assemble
from tests.integration.conftest import ApiEnv, free_port
from tests.integration.corpus import jmap

SIEVE_USING = ("urn:ietf:params:jmap:core", "https://cyrusimap.org/ns/jmap/sieve")
UTC = UTC


# --------------------------------------------------------------------------- helpers


def new_mailbox(api: ApiEnv, label: str) -> dict[str, Any]:
    return api.new_mailbox(f"{label}-{secrets.token_hex(4)}.example")


def set_auto_reply(api: ApiEnv, mbx: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = api.client.patch(f"/v1/mailboxes/{mbx['id']}/auto-reply", json=body, headers=api.auth())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sender() -> str:
    return f"s{secrets.token_hex(6)}@senders.example"


def message(to: str, frm: str, subject: str = "Hello", headers: str = "", msgid: str | None = None) -> bytes:
    msgid = msgid or f"{secrets.token_hex(8)}@senders.example"
    return (
        f"From: Sender <{frm}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\n"
        f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n{headers}\r\nHi there.\r\n"
    ).encode()


def deliver(api: ApiEnv, mbx: dict[str, Any], frm: str, *, envelope_from: str | None = None, **kw: Any) -> None:
    assert (
        api.lmtp(
            mbx["address"], message(mbx["address"], frm, **kw), sender=frm if envelope_from is None else envelope_from
        )
        == {}
    )


def replies(outbox: Path, to: str) -> list[EmailMessage]:
    """Messages in ``outbox`` whose envelope recipient is ``to`` (sendmail's X-Envelope-To)."""
    found = []
    for path in sorted(outbox.glob("*.eml")):
        raw = path.read_bytes()
        if f"<{to}>".encode() not in raw.split(b"\r\n\r\n", 1)[0]:
            continue
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        if msg["X-Envelope-To"] and f"<{to}>" in str(msg["X-Envelope-To"]):
            found.append(msg)
    return found


def wait_replies(outbox: Path, to: str, count: int = 1, timeout: float = 5.0) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while True:
        got = replies(outbox, to)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def text_of(msg: EmailMessage) -> str:
    """The reply's text with LF line breaks, without the one line break Cyrus adds at the end."""
    text = str(msg.get_content()).replace("\r\n", "\n")
    assert text.endswith("\n")
    return text[:-1]


def subject_of(msg: EmailMessage) -> str:
    """The decoded Subject. Cyrus writes a long one as ``Subject:`` and folded encoded words on
    the next lines; Python keeps the fold's space in front of the value: drop it."""
    value = str(msg["Subject"])
    raw = next(v for k, v in msg.raw_items() if k.lower() == "subject")
    return value[1:] if raw.startswith(("\r\n", "\n")) and value.startswith(" ") else value


def scripts(api: ApiEnv, address: str) -> list[dict[str, Any]]:
    out = jmap(api, address, [["SieveScript/get", {"ids": None}, "s"]], using=SIEVE_USING)
    return out[0][1]["list"]  # type: ignore[no-any-return]


def folder_of(api: ApiEnv, address: str, msgid: str) -> str:
    out = jmap(
        api,
        address,
        [
            ["Mailbox/get", {"properties": ["name"]}, "m"],
            ["Email/query", {"filter": {"header": ["Message-ID", f"<{msgid}>"]}}, "q"],
            [
                "Email/get",
                {"#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}, "properties": ["mailboxIds"]},
                "g",
            ],
        ],
    )
    names = {m["id"]: m["name"] for m in out[0][1]["list"]}
    (found,) = out[2][1]["list"]
    (folder,) = [names[i] for i in found["mailboxIds"]]
    return str(folder)


# --------------------------------------------------------------------------- the reply


def test_reply_from_the_mailbox_once_per_sender(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "ar-once")
    out = set_auto_reply(api, mbx, enabled=True, body="I am away.\nBack on Monday.")
    assert out["auto_reply"] == {
        "enabled": True,
        "subject": None,
        "body": "I am away.\nBack on Monday.",
        "from_date": None,
        "to_date": None,
    }
    alice, bob = sender(), sender()
    deliver(api, mbx, alice, subject="Quarterly report", msgid="q1@senders.example")
    (reply,) = wait_replies(api.cyrus.outbox, alice)
    assert reply["X-Envelope-From"] == "<>"  # RFC 5230 section 5.1: null return path
    assert reply["From"].addresses[0].addr_spec == mbx["address"]
    assert reply["To"].addresses[0].addr_spec == alice
    assert reply["Subject"] == "Auto: Quarterly report"  # RFC 5230 default subject
    assert reply["In-Reply-To"] == "<q1@senders.example>"
    assert reply["Auto-Submitted"].startswith("auto-replied")
    assert reply.get_content_type() == "text/plain" and reply["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(reply) == "I am away.\nBack on Monday."
    # Once per sender (per day): the second message from alice gets nothing, bob gets his.
    deliver(api, mbx, alice, subject="Again")
    deliver(api, mbx, bob)
    assert len(wait_replies(api.cyrus.outbox, bob)) == 1
    assert len(replies(api.cyrus.outbox, alice)) == 1


def test_subject_and_body_survive_intact(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "ar-text")
    body = (
        'Merci "beaucoup" \\ ${name} */ /* é☃😀\r\nligne 2\rligne 3\n.\n'
        + "long " * 400
        + "\n  trailing  \n=?utf-8?q?not-a-word?="
    )
    subject = 'Absent: "Jürgen" \\ ${x} ☃ ' + "mot " * 40
    set_auto_reply(api, mbx, enabled=True, subject=subject, body=body)
    to = sender()
    deliver(api, mbx, to)
    (reply,) = wait_replies(api.cyrus.outbox, to)
    assert subject_of(reply) == subject
    assert text_of(reply) == body.replace("\r\n", "\n").replace("\r", "\n")
    raw_lines = reply.as_bytes().split(b"\n")
    assert max(len(line) for line in raw_lines) <= 998  # quoted-printable keeps lines short


def test_date_window_is_checked_at_delivery(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "ar-window")
    now = datetime.now(UTC)
    cases = [  # (from_date, to_date, reply expected)
        (now - timedelta(days=2), now - timedelta(days=1), False),  # past window
        (now + timedelta(days=1), now + timedelta(days=2), False),  # future window
        (now + timedelta(hours=1), None, False),  # opens later
        (None, now - timedelta(minutes=1), False),  # closed already
        (now - timedelta(hours=1), now + timedelta(hours=1), True),  # inside
        (now - timedelta(days=400), None, True),  # open end
        (None, now + timedelta(days=1), True),  # open start
    ]
    silent: list[str] = []
    for start, end, expected in cases:
        body: dict[str, Any] = {"enabled": True, "body": f"window {start} {end}"}
        if start is not None:
            body["from_date"] = iso(start)
        if end is not None:
            body["to_date"] = iso(end)
        set_auto_reply(api, mbx, **body)
        to = sender()
        deliver(api, mbx, to)
        if expected:
            (reply,) = wait_replies(api.cyrus.outbox, to)
            assert text_of(reply) == body["body"]
        else:
            silent.append(to)
    assert all(replies(api.cyrus.outbox, to) == [] for to in silent)


def test_window_opens_to_the_second(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "ar-second")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    set_auto_reply(api, mbx, enabled=True, body="now open", from_date=iso(start))
    early = sender()
    deliver(api, mbx, early)
    time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()) + 0.3)
    late = sender()
    deliver(api, mbx, late)
    assert len(wait_replies(api.cyrus.outbox, late)) == 1
    assert replies(api.cyrus.outbox, early) == []


def test_no_reply_to_lists_automatic_mail_or_bounces(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "ar-3834")
    set_auto_reply(api, mbx, enabled=True, body="away")
    silent: list[str] = []
    for headers in [
        "List-Id: <team.lists.example>\r\n",
        "List-Unsubscribe: <mailto:u@lists.example>\r\n",
        "List-Post: <mailto:team@lists.example>\r\n",
        "Precedence: bulk\r\n",
        "Precedence: List\r\n",
        "Precedence: junk\r\n",
        "Auto-Submitted: auto-generated\r\n",
        "Auto-Submitted: auto-replied\r\n",
    ]:
        to = sender()
        deliver(api, mbx, to, headers=headers)
        silent.append(to)
    for envelope in ["", "MAILER-DAEMON@senders.example", "owner-team@senders.example", "team-request@senders.example"]:
        to = sender()
        deliver(api, mbx, to, envelope_from=envelope)
        silent.append(to)
    # Not addressed to the mailbox (a Bcc, or a list that hides its recipients): no reply.
    hidden = sender()
    assert api.lmtp(mbx["address"], message("someone-else@senders.example", hidden), sender=hidden) == {}
    silent.append(hidden)
    answered = sender()
    deliver(api, mbx, answered, headers="Auto-Submitted: no\r\nPrecedence: first-class\r\n")
    assert len(wait_replies(api.cyrus.outbox, answered)) == 1
    for to in silent:
        assert replies(api.cyrus.outbox, to) == [], to


def test_the_scripts_own_rfc3834_checks(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cyrus's vacation skips list and automatic mail by itself, which hides the script's own
    checks; here the same condition guards ``addflag "$would-reply"`` instead of ``vacation``."""
    from shipmail.delivery import service as sieve_sync

    mbx = new_mailbox(api, "ar-probe")
    probe = assemble(
        [Section("probe", reply_condition(AutoReply(enabled=True, body="x")), [action("addflag", "$would-reply")])],
        requires=("imap4flags",),
    )
    monkeypatch.setattr(sieve_sync, "build_script", lambda options: probe)
    services = api.client.app.state.services  # type: ignore[attr-defined]
    row = type("Row", (), {"id": mbx["id"], "address": mbx["address"]})()
    api.client.portal.call(sieve_sync.install, services, row)  # type: ignore[union-attr]

    cases = {
        "": True,
        "Auto-Submitted: no\r\n": True,
        "Auto-Submitted: NO\r\n": True,
        "Precedence: normal\r\n": True,
        "List-Id: <a.lists.example>\r\n": False,
        "List-Help: <mailto:h@lists.example>\r\n": False,
        "List-Unsubscribe: <mailto:u@lists.example>\r\n": False,
        "List-Post: NO\r\n": False,
        "Precedence: BULK\r\n": False,
        "Precedence: list\r\n": False,
        "Precedence: junk\r\n": False,
        "Auto-Submitted: auto-generated\r\n": False,
        "Auto-Submitted: auto-notified\r\n": False,
    }
    ids = {}
    for headers in cases:
        msgid = f"{secrets.token_hex(8)}@probe.example"
        deliver(api, mbx, sender(), headers=headers, msgid=msgid)
        ids[msgid] = headers
    out = jmap(
        api,
        mbx["address"],
        [
            ["Email/query", {}, "q"],
            [
                "Email/get",
                {
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["messageId", "keywords"],
                },
                "g",
            ],
        ],
    )
    flagged = {e["messageId"][0]: "$would-reply" in e["keywords"] for e in out[1][1]["list"]}
    assert {ids[m]: f for m, f in flagged.items()} == cases


# --------------------------------------------------------------------------- on and off


def test_disabled_sends_nothing(api: ApiEnv) -> None:
    never = new_mailbox(api, "ar-never")
    sentinel = new_mailbox(api, "ar-sentinel")
    set_auto_reply(api, sentinel, enabled=True, body="sentinel")
    mbx = new_mailbox(api, "ar-off")
    set_auto_reply(api, mbx, enabled=True, body="away", subject="Away")
    first = sender()
    deliver(api, mbx, first)
    assert len(wait_replies(api.cyrus.outbox, first)) == 1
    out = set_auto_reply(api, mbx, enabled=False, body="kept for later")
    assert out["auto_reply"] == {
        "enabled": False,
        "subject": None,
        "body": "kept for later",
        "from_date": None,
        "to_date": None,
    }
    a, b, c = sender(), sender(), sender()
    deliver(api, mbx, a)
    deliver(api, never, b)
    deliver(api, sentinel, c)  # answered: once its reply is out, any reply to a or b would be too
    assert len(wait_replies(api.cyrus.outbox, c)) == 1
    assert replies(api.cyrus.outbox, a) == [] and replies(api.cyrus.outbox, b) == []


def test_spam_gets_no_auto_reply(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "ar-spam")
    set_auto_reply(api, mbx, enabled=True, body="away")
    spammer, friend = sender(), sender()
    deliver(api, mbx, spammer, headers="X-Spam-Score: 9.1\r\n", msgid="spam@senders.example")
    deliver(api, mbx, friend, headers="X-Spam-Score: 1.0\r\n", msgid="ham@senders.example")
    assert len(wait_replies(api.cyrus.outbox, friend)) == 1
    assert replies(api.cyrus.outbox, spammer) == []
    assert folder_of(api, mbx["address"], "spam@senders.example") == "Junk"
    assert folder_of(api, mbx["address"], "ham@senders.example") == "Inbox"


def test_refused_script_keeps_the_old_script_and_settings(api: ApiEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipmail.delivery import service as sieve_sync

    mbx = new_mailbox(api, "ar-refused")
    set_auto_reply(api, mbx, enabled=True, body="first text")
    before = scripts(api, mbx["address"])
    monkeypatch.setattr(sieve_sync, "build_script", lambda options: 'require "fileinto";\nfileinto :nosuchtag "x";\n')
    r = api.client.patch(
        f"/v1/mailboxes/{mbx['id']}/auto-reply", json={"enabled": True, "body": "second text"}, headers=api.auth()
    )
    assert r.status_code == 422, r.text  # the server's invalidScript
    monkeypatch.undo()
    assert scripts(api, mbx["address"]) == before
    got = api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json()
    assert got["auto_reply"]["body"] == "first text"
    to = sender()
    deliver(api, mbx, to)
    (reply,) = wait_replies(api.cyrus.outbox, to)
    assert text_of(reply) == "first text"


def test_control_characters_in_the_subject_are_422_and_change_nothing(api: ApiEnv) -> None:
    mbx = new_mailbox(api, "ar-ctl")
    before = scripts(api, mbx["address"])
    for subject in ["two\r\nBcc: victim@senders.example", "tab\tsubject", "esc\x1b[0m"]:
        r = api.client.patch(
            f"/v1/mailboxes/{mbx['id']}/auto-reply",
            json={"enabled": True, "body": "x", "subject": subject},
            headers=api.auth(),
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["field"] == "subject"
    assert scripts(api, mbx["address"]) == before


# --------------------------------------------------------------------------- user text, any text

body_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=400)
subject_text = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\u2028\u2029"), min_size=1, max_size=120
)


@hypothesis.settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
@hypothesis.given(
    body=body_text | st.sampled_from(['"; discard; "', '*/ ${x} \\" \\\\ \r\n.\r\n', "😀" * 5000]),
    subject=st.none() | subject_text,
)
def test_any_text_is_accepted_by_cyrus_and_arrives_intact(api: ApiEnv, body: str, subject: str | None) -> None:
    hypothesis.assume(body.strip())
    mbx = new_mailbox(api, "ar-any")
    set_auto_reply(api, mbx, enabled=True, body=body, subject=subject)
    to = sender()
    deliver(api, mbx, to, subject="Original")
    (reply,) = wait_replies(api.cyrus.outbox, to)
    assert subject_of(reply) == (subject if subject is not None else "Auto: Original")
    assert text_of(reply) == body.replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- the official SDK


def test_sdk_update_auto_reply(api: ApiEnv) -> None:
    from tests.integration.test_folders import load_sdk

    sdk = load_sdk()
    client = sdk.client(api)
    mbx = new_mailbox(api, "ar-sdk")
    start = datetime.now(UTC) - timedelta(hours=1)
    end = datetime.now(UTC) + timedelta(days=7)
    got = client.mailboxes.update_auto_reply(
        mbx["id"],
        {
            "enabled": True,
            "subject": "Out of office",
            "body": "Back next week.",
            "from_date": iso(start),
            "to_date": iso(end),
        },
    )
    assert got["object"] == "mailbox" and got["id"] == mbx["id"]
    assert got["auto_reply"] == {
        "enabled": True,
        "subject": "Out of office",
        "body": "Back next week.",
        "from_date": iso(start),
        "to_date": iso(end),
    }
    to = sender()
    deliver(api, mbx, to)
    (reply,) = wait_replies(api.cyrus.outbox, to)
    assert reply["Subject"] == "Out of office" and text_of(reply) == "Back next week."
    with pytest.raises(sdk.error) as refused:
        client.mailboxes.update_auto_reply(mbx["id"], {"enabled": True})
    assert refused.value.status == 422  # type: ignore[attr-defined]
    off = client.mailboxes.update_auto_reply(mbx["id"], {"enabled": False})
    assert off["auto_reply"]["enabled"] is False


# --------------------------------------------------------------------------- relay mode


@dataclass
class SmtpSink:
    """A minimal SMTP server on 127.0.0.1 keeping (mail_from, rcpt_tos, data) of each message."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                def say(line: str) -> None:
                    self.wfile.write(line.encode() + b"\r\n")

                say("220 sink ESMTP")
                mail_from, rcpts = "", list[str]()
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        say("250 sink")
                    elif verb == b"MAIL":
                        mail_from, rcpts = line.decode().split(":", 1)[1].strip().split(" ")[0].strip("<>"), []
                        say("250 ok")
                    elif verb == b"RCPT":
                        rcpts.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                        say("250 ok")
                    elif verb == b"DATA":
                        say("354 go")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        sink.messages.append((mail_from, rcpts, data))
                        say("250 queued")
                    elif verb == b"QUIT":
                        say("221 bye")
                        return
                    else:
                        say("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    s = SmtpSink()
    yield s
    s.close()


def test_relay_mode_hands_replies_to_the_smtp_relay(
    sink: SmtpSink, monkeypatch: pytest.MonkeyPatch, api: ApiEnv
) -> None:
    """A second Cyrus instance set up from Settings with SHIPMAIL_SMTP_RELAY: the vacation reply
    goes to the relay over SMTP and nothing is written to its outbox."""
    import asyncio

    from shipmail.config import Settings
    from shipmail.delivery.script import ScriptOptions, build_script
    from shipmail.mailserver.cyrus import CyrusInstance
    from shipmail.mailserver.cyrus_server import CyrusMailServer

    monkeypatch.setenv("SHIPMAIL_SMTP_RELAY", f"127.0.0.1:{sink.port}")
    root = Path(tempfile.mkdtemp(prefix="shipmail-relay-", dir="/tmp"))
    os.chmod(root, 0o755)
    settings = Settings.from_env(
        data_dir=root, secret_key=b"relay-test", jmap_port=free_port(), lmtp_port=free_port(), imap_port=free_port()
    )
    assert settings.smtp_relay == f"127.0.0.1:{sink.port}"
    instance = CyrusInstance.from_settings(settings, failed_login_pause=0)
    address = "hello@relay.example"
    try:
        instance.prepare()
        instance.start()
        server = CyrusMailServer.from_instance(instance, timeout=5.0)

        async def setup() -> None:
            try:
                await server.provision(address)
            finally:
                await server.aclose()

        asyncio.run(setup())
        script = build_script(
            ScriptOptions(
                server=server.delivery_sieve(),
                address=address,
                auto_reply=AutoReply(enabled=True, body="Relayed reply."),
            )
        )
        access = server.jmap_access(address)
        base = access.session_url.rsplit("/jmap/", 1)[0]
        up = httpx.post(
            f"{base}/jmap/upload/{address}/",
            content=script.encode(),
            timeout=10,
            headers={"Authorization": access.authorization, "Content-Type": "application/sieve"},
        )
        blob = up.json()["blobId"]
        r = httpx.post(
            access.session_url,
            timeout=10,
            headers={"Authorization": access.authorization},
            json={
                "using": list(SIEVE_USING),
                "methodCalls": [
                    [
                        "SieveScript/set",
                        {
                            "accountId": address,
                            "create": {"s": {"name": "relay", "blobId": blob}},
                            "onSuccessActivateScript": "#s",
                        },
                        "c",
                    ]
                ],
            },
        )
        assert r.json()["methodResponses"][0][1]["created"], r.text
        import smtplib

        to = sender()
        with smtplib.LMTP(str(instance.lmtp_socket), timeout=15) as lmtp:
            assert lmtp.sendmail(to, [address], message(address, to, subject="Via relay")) == {}
        deadline = time.monotonic() + 5
        while not sink.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        ((mail_from, rcpts, data),) = sink.messages
        assert mail_from == "" and rcpts == [to]
        reply = email.message_from_bytes(data, policy=email.policy.default)
        assert reply["Subject"] == "Auto: Via relay"
        assert text_of(reply) == "Relayed reply."
        assert list(settings.outbox_dir.glob("*.eml")) == []
    finally:
        instance.stop()
        left = instance.processes()
        shutil.rmtree(root, ignore_errors=True)
        assert left == []
