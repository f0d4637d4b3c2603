"""Inbox messages end to end on the real Cyrus: mail delivered over LMTP, listed, filtered, paged,
read, flagged, moved and deleted through the REST API; one JMAP request per REST read."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.conftest import ApiEnv

JPEG = bytes(range(256)) * 40


# ----------------------------------------------------------------------------- helpers


def new_mailbox(api: ApiEnv, domain: str | None = None, local: str = "inbox", key: str | None = None) -> dict[str, Any]:
    domain = domain or f"d{uuid.uuid4().hex[:10]}.example"
    dom = api.verified_domain(domain, key=key)
    r = api.client.post(
        "/v1/mailboxes",
        json={"domain_id": dom["id"], "address": local, "password": "CorrectHorse9"},
        headers=api.auth(key),
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def build(
    subject: str = "Hello",
    *,
    sender: str = '"Ann Example" <ann@sender.example>',
    to: str = "rcpt@example.net",
    body: str = "Hello there.\n",
    html: str | None = None,
    attachment: tuple[str, str, bytes] | None = None,
    reply_to: EmailMessage | None = None,
    **headers: str,
) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="sender.example")
    if reply_to is not None:
        msg["In-Reply-To"] = reply_to["Message-ID"]
        msg["References"] = reply_to["Message-ID"]
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attachment is not None:
        name, ctype, data = attachment
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


def deliver(api: ApiEnv, address: str, msg: EmailMessage | bytes) -> None:
    raw = msg if isinstance(msg, bytes) else msg.as_bytes(policy=policy.SMTP)
    assert api.lmtp(address, raw) == {}


def get(api: ApiEnv, path: str, key: str | None = None, **params: Any) -> Any:
    r = api.client.get(f"/v1{path}", params={k: v for k, v in params.items() if v is not None}, headers=api.auth(key))
    assert r.status_code == 200, r.text
    return r.json()


def jmap_requests(api: ApiEnv) -> int:
    """JMAP requests the API has sent so far, once every accepted delivery has been recorded (the
    ``inbound.record`` job, which runs after the 250, makes a JMAP request of its own)."""
    api.recorded()
    return int(api.client.app.state.services.jmap.request_count)  # type: ignore[attr-defined]


def costs_one_request(api: ApiEnv, call: Callable[[], Any]) -> Any:
    call()  # warm-up (session cached)
    before = jmap_requests(api)
    result = call()
    assert jmap_requests(api) - before == 1
    return result


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def subjects(page: dict[str, Any]) -> list[str]:
    return [m["subject"] for m in page["data"]]


def list_all(api: ApiEnv, mbx_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every message through the cursor, asserting the pagination contract on the way."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = get(api, f"/mailboxes/{mbx_id}/inbox/messages", cursor=cursor, **params)
        out += page["data"]
        p = page["pagination"]
        if not p["has_more"]:
            assert p["next_cursor"] is None
            return out
        assert p["next_cursor"]
        cursor = p["next_cursor"]


# ----------------------------------------------------------------------------- tests


def test_list_and_get_a_delivered_message(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    addr = mbx["address"]
    original = build(
        "Grüße aus Köln",
        sender='"Jörg Müller" <joerg@sender.example>',
        to=f'"Inbox" <{addr}>',
        body="Hallo Welt, schöne Grüße.\n",
        html="<p>Hallo <b>Welt</b></p>",
        attachment=("Bericht März.pdf", "application/pdf", JPEG),
        Cc="cc@example.net",
        Reply_To="reply@example.net",
    )
    deliver(api, addr, original)

    page = costs_one_request(api, lambda: get(api, f"/mailboxes/{mbx['id']}/inbox/messages"))
    assert page["object"] == "inbox_messages"
    assert page["mailbox_id"] == mbx["id"] and page["address"] == addr
    assert page["pagination"]["total"] == 1 and page["pagination"]["has_more"] is False
    assert page["pagination"]["next_cursor"] is None and page["pagination"]["limit"] == 50
    (item,) = page["data"]
    assert item["object"] == "inbox_message_full"
    assert item["id"].startswith("eml_") and item["thread_id"].startswith("thr_")
    assert item["subject"] == "Grüße aus Köln"
    assert item["from"] == [{"name": "Jörg Müller", "email": "joerg@sender.example"}]
    assert item["to"] == [{"name": "Inbox", "email": addr}]
    assert item["keywords"] == {}
    assert item["folder_ids"] and all(f.startswith("fld_") for f in item["folder_ids"])
    assert "Hallo Welt" in item["preview"]
    assert item["has_attachment"] is True
    assert item["size"] > len(JPEG)
    assert item["authentication_results"] is None
    datetime.fromisoformat(item["received_at"])

    full = costs_one_request(api, lambda: get(api, f"/mailboxes/{mbx['id']}/inbox/messages/{item['id']}"))
    assert full["object"] == "inbox_message_full"
    # The list item is the full message (bodies far below the list's 32 KiB bound per value).
    assert item == full
    assert full["cc"] == [{"name": None, "email": "cc@example.net"}]
    assert full["reply_to"] == [{"name": None, "email": "reply@example.net"}]
    assert full["bcc"] is None
    assert full["message_id"] == [original["Message-ID"].strip("<>")]
    assert full["in_reply_to"] is None
    assert datetime.fromisoformat(full["sent_at"])
    names = [h["name"] for h in full["headers"]]
    assert "Subject" in names and "From" in names
    (text,) = full["text_body"]
    assert text["type"] == "text/plain"
    assert full["body_values"][text["part_id"]]["value"] == "Hallo Welt, schöne Grüße.\n"
    assert full["body_values"][text["part_id"]]["is_encoding_problem"] is False
    (html,) = full["html_body"]
    assert html["type"] == "text/html"
    assert "<b>Welt</b>" in full["body_values"][html["part_id"]]["value"]
    (att,) = full["attachments"]
    assert att["name"] == "Bericht März.pdf" and att["content_type"] == "application/pdf"
    assert att["size"] == len(JPEG)
    parts = urlsplit(att["download_path"])
    assert parts.path == f"/mailboxes/{mbx['id']}/inbox/attachments"
    assert parse_qs(parts.query) == {
        "blob_id": [att["blob_id"]],
        "message_id": [item["id"]],
        "part_id": [att["part_id"]],
    }


def test_shared_get_message_renders_one_message(api: ApiEnv) -> None:
    """``shipmail.inbox.service.get_message``: what the sandbox feature calls; one JMAP request, 404 when absent."""
    from shipmail.http.errors import NotFound
    from shipmail.inbox import service as inbox
    from shipmail.mailboxes.models import Mailbox

    mbx = new_mailbox(api)
    deliver(api, mbx["address"], build("Shared"))
    (item,) = get(api, f"/mailboxes/{mbx['id']}/inbox/messages")["data"]
    svc = api.client.app.state.services  # type: ignore[attr-defined]
    api.recorded()  # the delivery's record job makes a JMAP request of its own

    async def run(email_id: str) -> Any:
        async with svc.db.session() as session:
            row = await session.get(Mailbox, mbx["id"])
        before = svc.jmap.request_count
        msg = await inbox.get_message(svc, row, email_id)
        return msg, svc.jmap.request_count - before

    msg, cost = api.client.portal.call(run, item["id"].removeprefix("eml_"))  # type: ignore[union-attr]
    assert cost == 1
    assert msg.id == item["id"] and msg.subject == "Shared"
    assert msg.model_dump(mode="json", by_alias=True)["from"][0]["email"] == "ann@sender.example"
    with pytest.raises(NotFound):
        api.client.portal.call(run, "Mdoesnotexist000000000000")  # type: ignore[union-attr]


def test_filters(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    addr, base = mbx["address"], f"/mailboxes/{mbx['id']}/inbox/messages"
    deliver(
        api,
        addr,
        build("Quarterly report", sender='"Bob Builder" <bob@builders.example>', body="The zeppelin numbers are in.\n"),
    )
    deliver(api, addr, build("Lunch plans", sender="carol@food.example", to="team@example.net"))
    deliver(
        api,
        addr,
        build(
            "Invoice 42", sender="billing@shop.example", attachment=("invoice.pdf", "application/pdf", b"%PDF-1.4 fake")
        ),
    )
    everything = get(api, base)
    assert everything["pagination"]["total"] == 3
    by_subject = {m["subject"]: m for m in everything["data"]}

    # Substring filters on decoded headers, case-insensitive, not only whole words.
    assert subjects(get(api, base, subject="arterl")) == ["Quarterly report"]
    assert subjects(get(api, base, **{"from": "BUILDERS.ex"})) == ["Quarterly report"]
    assert subjects(get(api, base, **{"from": "Bob Build"})) == ["Quarterly report"]
    assert subjects(get(api, base, to="team@")) == ["Lunch plans"]
    assert get(api, base, subject="nothing like this")["data"] == []

    # Full text (the Xapian index lags delivery a little).
    wait_for(lambda: subjects(get(api, base, search_text="zeppelin")) == ["Quarterly report"])

    # Keywords and the starred role.
    lunch = by_subject["Lunch plans"]["id"]
    r = api.client.patch(f"/v1{base}/{lunch}", json={"read": True, "starred": True}, headers=api.auth())
    assert r.status_code == 200, r.text
    assert subjects(get(api, base, has_keyword="$seen")) == ["Lunch plans"]
    assert sorted(subjects(get(api, base, not_keyword="$seen"))) == ["Invoice 42", "Quarterly report"]
    assert subjects(get(api, base, folder_role="starred")) == ["Lunch plans"]
    assert subjects(get(api, base, has_keyword="$flagged", not_keyword="$seen")) == []
    assert len(get(api, base, folder_role="inbox")["data"]) == 3
    assert get(api, base, folder_role="trash")["data"] == []
    inbox_folder = by_subject["Lunch plans"]["folder_ids"][0]
    assert len(get(api, base, folder_id=inbox_folder)["data"]) == 3

    # Dates: after is inclusive, before exclusive, to the exact instant (Cyrus itself compares
    # `before` inclusively and drops fractions: the API corrects for both).
    def count(**params: str) -> int:
        return len(get(api, base, subject="Invoice", **params)["data"])

    received = datetime.fromisoformat(by_subject["Invoice 42"]["received_at"])
    at = received.isoformat()
    half = (received + timedelta(milliseconds=500)).isoformat()
    after_it = (received + timedelta(seconds=1)).isoformat()
    assert count(after=at) == 1 and count(after=half) == 0 and count(after=after_it) == 0
    assert count(before=at) == 0 and count(before=half) == 1 and count(before=after_it) == 1
    assert count(before=(received - timedelta(days=1)).isoformat()) == 0
    assert count(after=(received - timedelta(days=1)).isoformat()) == 1
    assert count(after=at, before=after_it) == 1
    plus2 = timezone(timedelta(hours=2))
    assert count(before=received.astimezone(plus2).isoformat()) == 0  # same instant, other offset
    assert count(after=(received + timedelta(seconds=1)).astimezone(plus2).isoformat()) == 0
    assert count(before=received.replace(tzinfo=None).isoformat()) == 0  # naive: UTC

    # Every filter costs one JMAP request, the custom-folder check included.
    costs_one_request(
        api,
        lambda: get(
            api,
            base,
            folder_id=inbox_folder,
            subject="x",
            **{"from": "y"},
            to="z",
            search_text="w",
            has_keyword="$seen",
            not_keyword="$draft",
            after="2020-01-01T00:00:00Z",
            before="2100-01-01T00:00:00Z",
        ),
    )


def test_has_attachment_for_mail_delivered_over_lmtp(api: ApiEnv) -> None:
    """Cyrus sets $HasAttachment only on import; the mailbox's Sieve script sets it at delivery."""
    mbx = new_mailbox(api)
    addr, base = mbx["address"], f"/mailboxes/{mbx['id']}/inbox/messages"
    deliver(api, addr, build("With file", attachment=("a.bin", "application/octet-stream", b"\x00\x01\x02")))
    deliver(api, addr, build("Plain"))
    listed = {m["subject"]: m for m in get(api, base)["data"]}
    assert listed["With file"]["has_attachment"] is True
    assert listed["Plain"]["has_attachment"] is False
    assert "$hasattachment" not in listed["With file"]["keywords"]
    assert subjects(get(api, base, has_attachment="true")) == ["With file"]
    assert subjects(get(api, base, has_attachment="false")) == ["Plain"]


def test_paging_is_stable_while_mail_arrives_and_is_read(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    addr, base = mbx["address"], f"/mailboxes/{mbx['id']}/inbox/messages"
    # All seven received in one second a minute ago: pages split that second (ties by id).
    minute_ago = datetime.now(UTC) - timedelta(minutes=1)
    for i in range(7):
        api.import_email(addr, build(f"m{i}").as_bytes(policy=policy.SMTP), minute_ago)
    first = get(api, base, limit=3, not_keyword="$seen")
    p = first["pagination"]
    assert p["total"] == 7 and p["has_more"] is True and p["limit"] == 3 and len(first["data"]) == 3
    seen = subjects(first)

    # New mail after the first page (received now, after everything listed) is not listed by the
    # later pages; the page's messages get read (leaving the not_keyword=$seen filter): nothing is
    # skipped or repeated.
    deliver(api, addr, build("late"))
    for m in first["data"]:
        r = api.client.patch(f"/v1{base}/{m['id']}", json={"read": True}, headers=api.auth())
        assert r.status_code == 200
    cursor = p["next_cursor"]
    while cursor:
        page = get(api, base, limit=3, not_keyword="$seen", cursor=cursor)
        assert page["pagination"]["total"] == 7  # stable while paging
        seen += subjects(page)
        cursor = page["pagination"]["next_cursor"]
    assert sorted(seen) == [f"m{i}" for i in range(7)]
    assert len(seen) == len(set(seen))

    # A fresh listing sees the late message; the whole walk costs one JMAP request per page.
    walked = list_all(api, mbx["id"], limit=2)
    assert sorted(m["subject"] for m in walked) == sorted([f"m{i}" for i in range(7)] + ["late"])
    received = [m["received_at"] for m in walked]
    assert received == sorted(received, reverse=True)
    page1 = get(api, base, limit=2)
    costs_one_request(api, lambda: get(api, base, limit=2, cursor=page1["pagination"]["next_cursor"]))


def test_cursor_is_bound_to_mailbox_and_filters(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    other = new_mailbox(api)
    base = f"/mailboxes/{mbx['id']}/inbox/messages"
    for i in range(3):
        deliver(api, mbx["address"], build(f"c{i}"))
    cursor = get(api, base, limit=1, subject="c")["pagination"]["next_cursor"]
    assert cursor
    assert get(api, base, limit=1, subject="c", cursor=cursor)["data"]
    for params in (
        {"subject": "d"},
        {},
        {"subject": "c", "folder_role": "inbox"},
        {"subject": "c", "has_attachment": "false"},
    ):
        r = api.client.get(f"/v1{base}", params={"limit": 1, "cursor": cursor, **params}, headers=api.auth())
        assert r.status_code == 422, params
        assert r.json()["error"]["details"][0]["field"] == "cursor"
    r = api.client.get(
        f"/v1/mailboxes/{other['id']}/inbox/messages", params={"subject": "c", "cursor": cursor}, headers=api.auth()
    )
    assert r.status_code == 422
    r = api.client.get(
        f"/v1/mailboxes/{mbx['id']}/inbox/threads", params={"subject": "c", "cursor": cursor}, headers=api.auth()
    )
    assert r.status_code == 422
    for bad in (cursor[:-2] + "xx", "garbage", "a.b"):
        r = api.client.get(f"/v1{base}", params={"subject": "c", "cursor": bad}, headers=api.auth())
        assert r.status_code == 422


@pytest.mark.parametrize("max_refetch", [500, 2])
def test_paging_through_one_second_bursts(api: ApiEnv, monkeypatch: pytest.MonkeyPatch, max_refetch: int) -> None:
    """Many messages with the same receivedAt second: pages split them without loss or repeats
    (max_refetch=2 also walks the position-based fallback for huge bursts)."""
    import smtplib

    from shipmail.inbox import service as inbox

    monkeypatch.setattr(inbox, "MAX_REFETCH", max_refetch)
    mbx = new_mailbox(api)
    raws = [build(f"burst{i}").as_bytes(policy=policy.SMTP) for i in range(12)]
    with smtplib.LMTP("127.0.0.1", api.lmtp_port, timeout=15) as lmtp:
        for raw in raws:
            assert lmtp.sendmail("s@example.org", [mbx["address"]], raw) == {}
    walked = list_all(api, mbx["id"], limit=5)
    names = [m["subject"] for m in walked]
    assert sorted(names) == sorted(f"burst{i}" for i in range(12))
    assert len(set(m["id"] for m in walked)) == 12
    seconds = [m["received_at"] for m in walked]
    assert max(seconds.count(s) for s in seconds) >= 6  # the bursts did share seconds
    page = get(api, f"/mailboxes/{mbx['id']}/inbox/messages", limit=5)
    assert page["pagination"]["total"] == 12
    page = get(api, f"/mailboxes/{mbx['id']}/inbox/messages", limit=5, cursor=page["pagination"]["next_cursor"])
    assert page["pagination"]["total"] == 12


def test_update_move_delete(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    base = f"/v1/mailboxes/{mbx['id']}/inbox/messages"
    deliver(api, mbx["address"], build("Victim"))
    (item,) = get(api, base[3:])["data"]
    mid = item["id"]
    inbox_folder = item["folder_ids"]

    r = api.client.patch(f"{base}/{mid}", json={"read": True, "starred": True}, headers=api.auth())
    assert r.status_code == 200, r.text
    assert r.json() == {
        "object": "inbox_message_action",
        "mailbox_id": mbx["id"],
        "address": mbx["address"],
        "message_id": mid,
        "ok": True,
    }
    assert get(api, f"{base[3:]}/{mid}")["keywords"] == {"$seen": True, "$flagged": True}
    r = api.client.patch(f"{base}/{mid}", json={"starred": False}, headers=api.auth())
    assert r.status_code == 200
    assert get(api, f"{base[3:]}/{mid}")["keywords"] == {"$seen": True}
    r = api.client.patch(f"{base}/{mid}", json={"read": False}, headers=api.auth())
    assert get(api, f"{base[3:]}/{mid}")["keywords"] == {}
    for body in ({}, {"read": "maybe"}, {"read": True, "other": 1}, {"read": None}):
        r = api.client.patch(f"{base}/{mid}", json=body, headers=api.auth())
        assert r.status_code == 422, body

    # Delete outside Trash/Junk: 422 (the reference's code), the message stays.
    r = api.client.delete(f"{base}/{mid}", headers=api.auth())
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "validation_error"
    assert get(api, f"{base[3:]}/{mid}")["id"] == mid

    # Move: exactly one target.
    bodies: list[dict[str, Any]] = [
        {},
        {"target_role": "trash", "target_folder_id": inbox_folder[0]},
        {"target_role": "sent"},
        {"target_role": "trash", "bogus": 1},
    ]
    for body in bodies:
        r = api.client.post(f"{base}/{mid}/move", json=body, headers=api.auth())
        assert r.status_code == 422, body
    r = api.client.post(f"{base}/{mid}/move", json={"target_folder_id": "fld_doesnotexist"}, headers=api.auth())
    assert r.status_code == 404
    r = api.client.post(f"{base}/{mid}/move", json={"target_role": "archive"}, headers=api.auth())
    assert r.status_code == 200, r.text
    archived = get(api, f"{base[3:]}/{mid}")["folder_ids"]
    assert archived != inbox_folder and len(archived) == 1
    assert get(api, base[3:], folder_role="archive")["data"][0]["id"] == mid
    assert get(api, base[3:], folder_role="inbox")["data"] == []
    # from_folder_id must name the current folder.
    r = api.client.post(
        f"{base}/{mid}/move", json={"target_role": "junk", "from_folder_id": inbox_folder[0]}, headers=api.auth()
    )
    assert r.status_code == 409
    r = api.client.post(
        f"{base}/{mid}/move",
        json={"target_folder_id": inbox_folder[0], "from_folder_id": archived[0]},
        headers=api.auth(),
    )
    assert r.status_code == 200, r.text
    assert get(api, f"{base[3:]}/{mid}")["folder_ids"] == inbox_folder
    r = api.client.post(f"{base}/{mid}/move", json={"target_role": "trash"}, headers=api.auth())
    assert r.status_code == 200

    r = api.client.delete(f"{base}/{mid}", headers=api.auth())
    assert r.status_code == 204, r.text
    assert api.client.get(f"{base}/{mid}", headers=api.auth()).status_code == 404
    assert api.client.delete(f"{base}/{mid}", headers=api.auth()).status_code == 404

    # Junk counts too.
    deliver(api, mbx["address"], build("Spam"))
    (spam,) = get(api, base[3:])["data"]
    assert (
        api.client.post(f"{base}/{spam['id']}/move", json={"target_role": "junk"}, headers=api.auth()).status_code
        == 200
    )
    assert api.client.delete(f"{base}/{spam['id']}", headers=api.auth()).status_code == 204


def test_unknown_ids_are_404(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    base = f"/v1/mailboxes/{mbx['id']}/inbox/messages"
    for mid in ("eml_Mdoesnotexist0000000000", "Mdoesnotexist", "eml_", "eml_bad*id", "thr_T123"):
        assert api.client.get(f"{base}/{mid}", headers=api.auth()).status_code == 404, mid
        assert api.client.patch(f"{base}/{mid}", json={"read": True}, headers=api.auth()).status_code == 404
        assert (
            api.client.post(f"{base}/{mid}/move", json={"target_role": "trash"}, headers=api.auth()).status_code == 404
        )
        assert api.client.delete(f"{base}/{mid}", headers=api.auth()).status_code == 404
    r = api.client.get(base, params={"folder_id": "fld_nosuchfolder"}, headers=api.auth())
    assert r.status_code == 404
    r = api.client.get(base, params={"folder_id": "inbox"}, headers=api.auth())
    assert r.status_code == 404
    r = api.client.get("/v1/mailboxes/mbx_nope/inbox/messages", headers=api.auth())
    assert r.status_code == 404


def test_other_organisations_get_404_and_scopes_apply(api: ApiEnv) -> None:
    mbx = new_mailbox(api)
    deliver(api, mbx["address"], build("Private"))
    (item,) = get(api, f"/mailboxes/{mbx['id']}/inbox/messages")["data"]
    base = f"/v1/mailboxes/{mbx['id']}/inbox"
    stranger = api.new_key(org="globex")
    h = api.auth(stranger)
    assert api.client.get(f"{base}/messages", headers=h).status_code == 404
    assert api.client.get(f"{base}/messages/{item['id']}", headers=h).status_code == 404
    assert api.client.patch(f"{base}/messages/{item['id']}", json={"read": True}, headers=h).status_code == 404
    assert (
        api.client.post(f"{base}/messages/{item['id']}/move", json={"target_role": "trash"}, headers=h).status_code
        == 404
    )
    assert api.client.delete(f"{base}/messages/{item['id']}", headers=h).status_code == 404
    assert api.client.get(f"{base}/threads", headers=h).status_code == 404
    assert api.client.get(f"{base}/threads/{item['thread_id']}", headers=h).status_code == 404

    reader = api.new_key(scopes=["messages:read"])
    assert api.client.get(f"{base}/messages", headers=api.auth(reader)).status_code == 200
    assert api.client.get(f"{base}/threads/{item['thread_id']}", headers=api.auth(reader)).status_code == 200
    r = api.client.patch(f"{base}/messages/{item['id']}", json={"read": True}, headers=api.auth(reader))
    assert r.status_code == 403
    r = api.client.post(f"{base}/messages/{item['id']}/move", json={"target_role": "trash"}, headers=api.auth(reader))
    assert r.status_code == 403
    other = api.new_key(scopes=["mailboxes:read"])
    assert api.client.get(f"{base}/messages", headers=api.auth(other)).status_code == 403
    assert api.client.get(f"{base}/messages").status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
        {"search_text": "x" * 501},
        {"folder_role": "outbox"},
        {"folder_role": "inbox", "folder_id": "fld_x"},
        {"has_keyword": "$junk"},
        {"not_keyword": "seen"},
        {"after": "yesterday"},
        {"before": "2024-13-01"},
        {"has_attachment": "perhaps"},
        {"cursor": "x" * 3000},
        {"subject": "x" * 501},
    ],
)
def test_bad_query_parameters_are_422(api: ApiEnv, params: dict[str, Any]) -> None:
    mbx = new_mailbox(api)
    for path in ("messages", "threads"):
        r = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/{path}", params=params, headers=api.auth())
        assert r.status_code == 422, (path, params, r.text)
        assert r.json()["error"]["type"] == "validation_error"


def test_the_official_sdk_parameters_are_accepted(api: ApiEnv) -> None:
    """What shipmail-python's list_inbox_messages / list_inbox_threads / move send."""
    mbx = new_mailbox(api)
    deliver(api, mbx["address"], build("SDK", attachment=("x.txt", "text/plain", b"hi")))
    base = f"/v1/mailboxes/{mbx['id']}/inbox"
    r = api.client.get(
        f"{base}/messages",
        params={
            "folder_role": "inbox",
            "search_text": "",
            "from": "ann",
            "to": "rcpt",
            "subject": "SDK",
            "has_attachment": "true",
            "after": "2020-01-01T00:00:00Z",
            "before": "2100-01-01T00:00:00+00:00",
            "limit": 10,
            "has_keyword": "$draft",
            "not_keyword": "$seen",
        },
        headers=api.auth(),
    )
    assert r.status_code == 200, r.text
    thread_params: dict[str, str | int] = {
        "sort_by": "last_message_at",
        "order": "desc",
        "after": "2020-01-01T00:00:00Z",
        "before": "2100-01-01T00:00:00Z",
        "limit": 25,
    }
    r = api.client.get(f"{base}/threads", params=thread_params, headers=api.auth())
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["subject"] == "SDK"
    # The SDK's reply-state filter (its attention_state) is served (issue 11).
    r = api.client.get(
        f"{base}/threads", params={**thread_params, "attention_state": "needs_reply"}, headers=api.auth()
    )
    assert r.status_code == 200, r.text
    assert all(t["attention_state"] == "needs_reply" for t in r.json()["data"])


def test_awkward_filter_text_is_never_a_server_error(api: ApiEnv) -> None:
    """Search syntax, control and non-ASCII characters go to Cyrus as plain text."""
    mbx = new_mailbox(api)
    deliver(api, mbx["address"], build("Hello world"))
    for value in [
        '"',
        "*",
        "AND",
        "(",
        "\\",
        "a:b",
        "🎉",
        "NOT",
        '"unclosed',
        "x" * 500,
        "%",
        "\x01",
        " ",
        "é",
        "subject:hello",
        "\u202e",
        "a\x00b",
    ]:
        for name in ("search_text", "from", "to", "subject"):
            r = api.client.get(f"/v1/mailboxes/{mbx['id']}/inbox/messages", params={name: value}, headers=api.auth())
            assert r.status_code == (422 if "\x00" in value else 200), (name, value, r.text)
