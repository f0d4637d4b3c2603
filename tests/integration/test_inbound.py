"""The inbound gateway on the real Cyrus: every message to ``SHIPMAIL_LMTP_PORT`` goes through our
LMTP server, which resolves the recipient, hands the message to Cyrus's LMTP socket and answers
with Cyrus's own per-recipient reply. Before the 250 goes back, a durable ``inbound.record`` job is
committed; the API's job worker then records each stored message as ``message.received`` (with the
JMAP ids Cyrus gave it), counts it in ``received_this_month`` and reports the inbox rules that
matched as ``mailbox.rule_matched``."""

from __future__ import annotations

import json
import smtplib
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.integration.conftest import ApiEnv, AuthRegistry, CyrusFixture, api_env
from tests.integration.corpus import corpus_bytes, jmap, unique


def events(api: ApiEnv, mailbox_id: str, **params: Any) -> dict[str, Any]:
    api.recorded()
    r = api.client.get(f"/v1/mailboxes/{mailbox_id}/events", params=params, headers=api.auth())
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def received(api: ApiEnv, mailbox_id: str) -> list[dict[str, Any]]:
    api.recorded()
    return [e for e in events(api, mailbox_id, limit=200)["data"] if e["type"] == "message.received"]


def inbox_ids(api: ApiEnv, mailbox_id: str) -> list[str]:
    r = api.client.get(f"/v1/mailboxes/{mailbox_id}/inbox/messages", headers=api.auth())
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["data"]]


def test_lmtp_delivery_is_recorded_with_the_stored_message_ids(api: ApiEnv) -> None:
    mbx = api.new_mailbox("inbound-basic.example", "hello")
    raw, message_id = unique(corpus_bytes("plain_emails/basic_email.eml"))
    assert api.lmtp(mbx["address"], raw) == {}
    (event,) = received(api, mbx["id"])
    data = event["data"]
    assert event["id"].startswith("evt_") and event["mailbox_id"] == mbx["id"]
    # The ids are the ones the API shows for the stored message.
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages/{data['id']}", headers=api.auth())
    assert r.status_code == 200, r.text
    stored = r.json()
    assert inbox_ids(api, mbx["id"]) == [data["id"]]
    for field in ("thread_id", "subject", "preview", "has_attachment", "size", "folder_ids", "from", "to"):
        assert data[field] == stored[field], field
    assert data["folder_id"] == stored["folder_ids"][0]
    assert stored["subject"] and data["size"] > len(raw)  # our Received: field is on top
    # Cyrus stored exactly one copy, carrying the gateway's Received: field with its delivery id.
    (got,) = jmap(
        api,
        mbx["address"],
        [["Email/query", {"filter": {"header": ["Message-ID", message_id]}}, "q"]],
    )
    assert len(got[1]["ids"]) == 1
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth())
    assert r.json()["received_this_month"] == 1


def test_the_delivery_is_durable_before_the_250_and_recorded_from_the_stored_copy(
    cyrus: CyrusFixture, authd_registry: AuthRegistry, tmp_path: Path
) -> None:
    """With no job worker running (an API killed right after the gateway's 250), the 250 has
    still been answered only after the delivery was committed to the gateway's journal, which
    its mover turns into the ``inbound.record`` job; no event exists yet. A worker started later
    records ``message.received`` from the stored copy, once, even when it runs twice (at least
    once)."""
    with api_env(cyrus, authd_registry, tmp_path, jobs_worker=False) as api:
        mbx = api.new_mailbox("inbound-durable.example", "hello")
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"))
        assert api.lmtp(mbx["address"], raw) == {}
        # Right after the 250: in the journal, or already moved (the job is committed before the
        # entry is deleted, so reading the journal first never misses it).
        journalled = api.journalled()
        engine = sa.create_engine(api.settings.database_url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT payload FROM jobs WHERE kind = 'inbound.record'")).all()
        engine.dispose()
        queued = [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]
        (delivery_id,) = {str(e["delivery_id"]) for e in journalled} | {str(p["delivery_id"]) for p in queued}
        assert delivery_id.startswith("dlv_")
        assert all(e["mailbox_id"] == mbx["id"] and str(e["reply"]).startswith("250") for e in journalled)
        api.moved()
        engine = sa.create_engine(api.settings.database_url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT payload FROM jobs WHERE kind = 'inbound.record'")).all()
        engine.dispose()
        (payload,) = [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]
        assert payload["mailbox_id"] == mbx["id"] and payload["delivery_id"] == delivery_id
        assert payload["reply"].startswith("250")
        page = api.client.get(f"/v1/mailboxes/{mbx['id']}/events", headers=api.auth()).json()["data"]
        assert page == []
        run_jobs(api)
        run_jobs(api, {"kind": "inbound.record", "payload": payload})  # a repeat of the same job
        (event,) = [e for e in api.client.get(f"/v1/mailboxes/{mbx['id']}/events", headers=api.auth()).json()["data"]]
        assert event["type"] == "message.received"
        assert inbox_ids(api, mbx["id"]) == [event["data"]["id"]]
        assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json()["received_this_month"] == 1


def test_a_late_record_finds_its_message_among_later_deliveries(
    cyrus: CyrusFixture, authd_registry: AuthRegistry, tmp_path: Path
) -> None:
    """Records made after more mail has arrived (the worker was down while 8 messages came, more
    than the lookup's newest-first window; half without a Message-ID, which Cyrus's search index
    would find late anyway) still find each stored message: one event each, in delivery order."""
    with api_env(cyrus, authd_registry, tmp_path, jobs_worker=False) as api:
        mbx = api.new_mailbox("inbound-late.example", "hello")
        subjects = []
        for i in range(8):
            subject = f"Late {i} {uuid.uuid4().hex[:8]}"
            subjects.append(subject)
            mid = f"Message-ID: <late-{uuid.uuid4().hex}@sender.example>\r\n" if i % 2 else ""
            raw = f"From: s@sender.example\r\nTo: {mbx['address']}\r\nSubject: {subject}\r\n{mid}\r\nHi {i}.\r\n"
            assert api.lmtp(mbx["address"], raw.encode()) == {}
        jmap = api.client.app.state.services.jmap  # type: ignore[attr-defined]
        api.moved()
        before = jmap.request_count
        run_jobs(api)
        # One run covered the 8 queued record jobs of the mailbox: one JMAP request found them all.
        assert jmap.request_count - before == 1
        assert queued_records(api) == 0
        page = api.client.get(f"/v1/mailboxes/{mbx['id']}/events", headers=api.auth()).json()["data"]
        assert [e["data"]["subject"] for e in page] == subjects
        assert sorted(e["data"]["id"] for e in page) == sorted(inbox_ids(api, mbx["id"]))
        assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json()["received_this_month"] == 8


def test_a_batch_of_late_records_finds_messages_beyond_its_window(
    cyrus: CyrusFixture, authd_registry: AuthRegistry, tmp_path: Path
) -> None:
    """8 deliveries through the gateway recorded by one run after 10 more messages were put
    straight into the mailbox (not through the gateway: no record of their own), so that only
    some of the 8 are among the newest Emails the run's first request reads: the rest are found
    by delivery time, each once, in delivery order; the counter counts the 8."""
    with api_env(cyrus, authd_registry, tmp_path, jobs_worker=False) as api:
        mbx = api.new_mailbox("inbound-batch.example", "hello")
        subjects = []
        for i in range(8):
            subject = f"Batch {i} {uuid.uuid4().hex[:8]}"
            subjects.append(subject)
            raw = f"From: s@sender.example\r\nTo: {mbx['address']}\r\nSubject: {subject}\r\n\r\nHi {i}.\r\n"
            assert api.lmtp(mbx["address"], raw.encode()) == {}
        with smtplib.LMTP(str(api.cyrus.instance.lmtp_socket), timeout=15) as direct:
            for i in range(10):
                raw = f"From: s@sender.example\r\nTo: {mbx['address']}\r\nSubject: Direct {i}\r\n\r\nHi.\r\n"
                assert direct.sendmail("s@sender.example", [mbx["address"]], raw.encode()) == {}
        run_jobs(api)
        assert queued_records(api) == 0
        page = api.client.get(f"/v1/mailboxes/{mbx['id']}/events", headers=api.auth()).json()["data"]
        assert [e["data"]["subject"] for e in page] == subjects
        assert len({e["data"]["id"] for e in page}) == 8
        assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json()["received_this_month"] == 8
        run_jobs(api, {"kind": "inbound.record", "payload": {"mailbox_id": mbx["id"], "delivery_id": "dlv_none"}})
        assert len(api.client.get(f"/v1/mailboxes/{mbx['id']}/events", headers=api.auth()).json()["data"]) == 8


def queued_records(api: ApiEnv) -> int:
    """``inbound.record`` jobs left in the queue."""
    engine = sa.create_engine(api.settings.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM jobs WHERE kind = 'inbound.record'")).scalar_one())
    finally:
        engine.dispose()


def run_jobs(api: ApiEnv, extra: dict[str, Any] | None = None) -> None:
    """Run every due job once in a worker of this test (the app's own is off), after adding
    ``extra`` (``kind`` and ``payload``) as a new job."""

    from shipmail import jobs
    from shipmail.tasks import HANDLERS

    services = api.client.app.state.services  # type: ignore[attr-defined]
    api.moved()  # every delivery accepted so far is a job

    async def go() -> None:
        if extra is not None:
            async with services.db.session() as session:
                await jobs.enqueue(session, extra["kind"], extra["payload"])
                await session.commit()
        await jobs.Worker(services, HANDLERS).run_due()

    api.client.portal.call(go)  # type: ignore[union-attr]


def test_recipients_get_their_own_replies(api: ApiEnv) -> None:
    """Unknown addresses: 550 5.1.1 from the gateway at RCPT; known ones: Cyrus's own replies,
    one per recipient after DATA (RFC 2033); a subaddress reaches its mailbox."""
    a = api.new_mailbox("inbound-rcpts.example", "ann")
    b = api.new_mailbox("inbound-rcpts2.example", "bob")
    raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"))
    with smtplib.LMTP("127.0.0.1", api.lmtp_port, timeout=15) as lmtp:
        lmtp.ehlo()
        assert lmtp.mail("s@example.org")[0] == 250
        assert lmtp.rcpt(a["address"])[0] == 250
        code, text = lmtp.rcpt("nobody@inbound-rcpts.example")
        assert code == 550 and b"5.1.1" in text
        assert lmtp.rcpt("bob+news@inbound-rcpts2.example")[0] == 250
        first = lmtp.data(raw)
        second = lmtp.getreply()
        # Cyrus's own words (its SESSIONID) come back for each recipient.
        assert first[0] == second[0] == 250 and b"SESSIONID=" in first[1], (first, second)
    assert len(received(api, a["id"])) == 1 and len(received(api, b["id"])) == 1


def test_a_duplicate_is_not_recorded_twice(api: ApiEnv) -> None:
    """Cyrus answers 250 to a second delivery of the same Message-ID and stores nothing: no
    second event, no second count."""
    mbx = api.new_mailbox("inbound-dup.example", "hello")
    raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"))
    assert api.lmtp(mbx["address"], raw) == {}
    assert api.lmtp(mbx["address"], raw) == {}
    assert len(inbox_ids(api, mbx["id"])) == 1
    assert len(received(api, mbx["id"])) == 1
    assert api.client.get(f"/v1/mailboxes/{mbx['id']}", headers=api.auth()).json()["received_this_month"] == 1


def test_sandbox_deliveries_go_through_the_gateway(api: ApiEnv) -> None:
    mbx = api.new_mailbox("inbound-sandbox.example", "hello")
    r = api.client.post(
        f"/v1/mailboxes/{mbx['id']}/sandbox/inbound",
        json={"from": "alice@sender.example", "subject": "Through the gateway", "text": "Hi"},
        headers=api.auth(),
    )
    assert r.status_code == 201, r.text
    (event,) = received(api, mbx["id"])
    # The sandbox answers the reference's Message (msg_...); email_id is the stored message's id.
    assert event["data"]["id"] == r.json()["email_id"]
    assert event["data"]["subject"] == "Through the gateway"


def test_a_suspended_mailbox_answers_cyrus_4xx_and_records_nothing(api: ApiEnv) -> None:
    mbx = api.new_mailbox("inbound-suspended.example", "hello")
    assert api.client.post(f"/v1/mailboxes/{mbx['id']}/suspend", headers=api.auth()).status_code == 200
    raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"))
    with smtplib.LMTP("127.0.0.1", api.lmtp_port, timeout=15) as lmtp:
        lmtp.ehlo()
        assert lmtp.mail("s@example.org")[0] == 250
        code, text = lmtp.rcpt(mbx["address"])  # Cyrus's quota check: at RCPT, or at DATA
        if code == 250:
            code, text = lmtp.data(raw)
    assert code == 452 and b"4.2.2" in text, (code, text)
    assert received(api, mbx["id"]) == []


def test_matched_rules_are_events_and_their_marks_stay_hidden(api: ApiEnv) -> None:
    mbx = api.new_mailbox("inbound-rules.example", "hello")
    invoice = {
        "id": str(uuid.uuid4()),
        "name": "Invoices",
        "enabled": True,
        "position": 0,
        "match_mode": "all",
        "stop": False,
        "conditions": [{"type": "subject_contains", "value": "invoice"}],
        "actions": [{"type": "star"}],
    }
    other = {**invoice, "id": str(uuid.uuid4()), "name": "Never", "position": 1}
    other["conditions"] = [{"type": "subject_contains", "value": "no-such-words-here"}]
    from_ann = {**invoice, "id": str(uuid.uuid4()), "name": "From Ann", "position": 2}
    from_ann["conditions"] = [{"type": "from_is", "value": "ann@billing.example"}]
    r = api.client.put(
        f"/v1/mailboxes/{mbx['id']}/rules", json={"rules": [invoice, other, from_ann]}, headers=api.auth()
    )
    assert r.status_code == 200, r.text
    raw = (
        b"From: Ann <ann@billing.example>\r\nTo: hello@inbound-rules.example\r\nSubject: Your invoice\r\n"
        b"Message-ID: <rules-1@billing.example>\r\n\r\nPay.\r\n"
    )
    assert api.lmtp(mbx["address"], raw) == {}
    page = events(api, mbx["id"])["data"]
    assert [e["type"] for e in page] == ["message.received", "mailbox.rule_matched", "mailbox.rule_matched"]
    message = page[0]["data"]
    assert [(e["data"]["rule_id"], e["data"]["rule_name"]) for e in page[1:]] == [
        (invoice["id"], "Invoices"),
        (from_ann["id"], "From Ann"),
    ]
    assert {e["data"]["message_id"] for e in page[1:]} == {message["id"]}
    # The marks the script added are not shown as keywords; the rule's own star is.
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages/{message['id']}", headers=api.auth())
    assert r.json()["keywords"] == {"$flagged": True}
    assert message["keywords"] == {"$flagged": True}


def test_the_catch_up_cursor_returns_only_what_is_new(api: ApiEnv) -> None:
    mbx = api.new_mailbox("inbound-cursor.example", "hello")
    first = events(api, mbx["id"])
    assert first["data"] == [] and first["pagination"]["next_cursor"]
    for i in range(3):
        raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), f"c{i}")
        assert api.lmtp(mbx["address"], raw) == {}
    page = events(api, mbx["id"], cursor=first["pagination"]["next_cursor"], limit=2)
    assert len(page["data"]) == 2 and page["pagination"]["has_more"] is True
    rest = events(api, mbx["id"], cursor=page["pagination"]["next_cursor"])
    assert len(rest["data"]) == 1 and rest["pagination"]["has_more"] is False
    seen = [e["id"] for e in page["data"] + rest["data"]]
    assert seen == [e["id"] for e in events(api, mbx["id"])["data"]]
    # Later: only what arrived since.
    raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "late")
    assert api.lmtp(mbx["address"], raw) == {}
    late = events(api, mbx["id"], cursor=rest["pagination"]["next_cursor"])
    assert len(late["data"]) == 1 and late["data"][0]["id"] not in seen
    # Cursors are bound to their mailbox and signed.
    other = api.new_mailbox("inbound-cursor2.example", "hello")
    r = api.client.get(
        f"/v1/mailboxes/{other['id']}/events", params={"cursor": late["pagination"]["next_cursor"]}, headers=api.auth()
    )
    assert r.status_code == 422
    # Another organisation's mailbox: 404.
    stranger = api.new_key(org="someone-else")
    r = api.client.get(f"/v1/mailboxes/{mbx['id']}/events", headers=api.auth(stranger))
    assert r.status_code == 404


def test_bounces_with_the_null_sender_are_accepted(api: ApiEnv) -> None:
    """``MAIL FROM:<>`` (bounces, auto-replies; RFC 5321 section 4.5.5) reaches Cyrus and is
    recorded like any other message (aiosmtpd alone answers it 501)."""
    mbx = api.new_mailbox("inbound-bounce.example", "hello")
    raw, _ = unique(corpus_bytes("plain_emails/basic_email.eml"), "bounce")
    assert api.lmtp(mbx["address"], raw, sender="") == {}
    assert len(received(api, mbx["id"])) == 1
