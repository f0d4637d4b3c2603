"""Unit tests of the inbox: request models, JMAP filters and dates, rendering, and the message-list
keyset paging against an in-memory Email store that behaves like Cyrus 3.6 (inclusive `before`,
whole-second receivedAt, `(receivedAt desc, id desc)` order)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pydantic
import pytest

from shipmail.http.cursors import CursorCodec
from shipmail.http.errors import ValidationFailed
from shipmail.inbox import replystate
from shipmail.inbox import service as inbox
from shipmail.inbox.schemas import (
    InboxListQuery,
    InboxThreadSummary,
    MoveInboxMessageRequest,
    UpdateInboxMessageRequest,
)
from shipmail.jmap import email as jemail
from shipmail.jmap.request import Request, Results
from shipmail.mailboxes.models import Mailbox

#: What the listing reads of the settings: the trusted authserv-ids.
SETTINGS = SimpleNamespace(trusted_authserv_ids=frozenset({"mx.example"}))
FOLDERS = {"inbox": "Fin", "drafts": "Fdr", "sent": "Fse", "trash": "Ftr", "junk": "Fju", "archive": "Far"}
UTC = UTC
#: The rows here carry their folder ids, so the services never touch the database session.
NO_SESSION: Any = None


def row() -> Mailbox:
    return Mailbox(
        id="mbx_1",
        organization_id="org_1",
        domain_id="dom_1",
        local_part="a",
        address="a@b.example",
        password_hash="x",
        folder_ids=json.dumps(FOLDERS),
    )


# ----------------------------------------------------------------------------- request models


def test_update_request_needs_a_field() -> None:
    with pytest.raises(pydantic.ValidationError):
        UpdateInboxMessageRequest.model_validate({})
    with pytest.raises(pydantic.ValidationError):
        UpdateInboxMessageRequest.model_validate({"read": True, "archived": True})
    assert UpdateInboxMessageRequest.model_validate({"starred": False}).starred is False


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"target_role": "trash", "target_folder_id": "fld_x"},
        {"target_role": "sent"},
        {"target_folder_id": ""},
        {"from_folder_id": "fld_x"},
    ],
)
def test_move_request_needs_exactly_one_target(body: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        MoveInboxMessageRequest.model_validate(body)


def test_move_request_accepts_the_sdk_body() -> None:
    m = MoveInboxMessageRequest.model_validate({"from_folder_id": "fld_a", "target_role": "archive"})
    assert (m.target_role, m.target_folder_id, m.from_folder_id) == ("archive", None, "fld_a")


def test_list_query() -> None:
    q = InboxListQuery.model_validate({"from": "ann", "has_attachment": "true", "limit": "7", "sort_by": "x"})
    assert (q.from_, q.has_attachment, q.limit) == ("ann", True, 7)
    assert InboxListQuery.model_validate({}).limit == 50
    with pytest.raises(pydantic.ValidationError):
        InboxListQuery.model_validate({"folder_id": "fld_a", "folder_role": "inbox"})
    with pytest.raises(pydantic.ValidationError):
        InboxListQuery.model_validate({"has_keyword": "$junk"})


# ----------------------------------------------------------------------------- dates and filters


def test_cyrus_date_bounds() -> None:
    t = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    # Cyrus: before is receivedAt <= value (fraction dropped); after is receivedAt >= value.
    assert jemail.received_before(t) == "2024-05-01T11:59:59Z"
    assert jemail.received_before(t + timedelta(milliseconds=1)) == "2024-05-01T12:00:00Z"
    assert jemail.received_at_or_after(t) == "2024-05-01T12:00:00Z"
    assert jemail.received_at_or_after(t + timedelta(milliseconds=1)) == "2024-05-01T12:00:01Z"
    plus2 = timezone(timedelta(hours=2))
    assert jemail.received_before(datetime(2024, 5, 1, 14, 0, tzinfo=plus2)) == "2024-05-01T11:59:59Z"
    assert jemail.received_before(datetime(2024, 5, 1, 12, 0)) == "2024-05-01T11:59:59Z"  # naive = UTC


def test_keywords_hide_the_attachment_marker() -> None:
    assert jemail.keywords({"$seen": True, "$HasAttachment": True, "$hasnoattachment": True, "x": False}) == {
        "$seen": True
    }
    assert jemail.keywords(None) == {}


def test_filters_and_binding() -> None:
    q = InboxListQuery.model_validate(
        {
            "folder_role": "starred",
            "search_text": "zeppelin",
            "from": "ann",
            "to": "bob",
            "subject": "hi",
            "has_attachment": "false",
            "has_keyword": "$seen",
            "not_keyword": "$draft",
            "after": "2024-01-01T00:00:00.5Z",
        }
    )
    listing = inbox._resolve(row(), FOLDERS, q)
    assert listing.conditions == [
        {"hasKeyword": "$flagged", "inMailboxOtherThan": ["Ftr", "Fju"]},
        {"text": "zeppelin"},
        {"header": ["From", "ann"]},
        {"header": ["To", "bob"]},
        {"header": ["Subject", "hi"]},
        {"hasAttachment": False},
        {"hasKeyword": "$seen"},
        {"notKeyword": "$draft"},
        {"after": "2024-01-01T00:00:01Z"},
    ]
    assert listing.custom_folder is None
    other = inbox._resolve(row(), FOLDERS, InboxListQuery.model_validate({"folder_role": "starred"}))
    assert other.binding != listing.binding and other.binding["m"] == "mbx_1"
    custom = inbox._resolve(row(), FOLDERS, InboxListQuery.model_validate({"folder_id": "fld_Fcustom"}))
    assert custom.conditions == [{"inMailbox": "Fcustom"}] and custom.custom_folder == "Fcustom"
    system = inbox._resolve(row(), FOLDERS, InboxListQuery.model_validate({"folder_id": "fld_Far"}))
    assert system.custom_folder is None
    # Empty text filters are no filters.
    empty = inbox._resolve(row(), FOLDERS, InboxListQuery.model_validate({"search_text": "", "from": ""}))
    assert empty.conditions == [] and empty.binding == inbox._resolve(row(), FOLDERS, InboxListQuery()).binding
    assert inbox._filter([], datetime(2024, 1, 1, tzinfo=UTC)) == {"before": "2023-12-31T23:59:59Z"}


# ----------------------------------------------------------------------------- rendering


RAW_EMAIL: dict[str, Any] = {
    "id": "Mabc",
    "threadId": "Tdef",
    "mailboxIds": {"Fin": True},
    "keywords": {"$seen": True, "$hasattachment": True},
    "from": [{"name": "Ann", "email": "ann@x.example"}],
    "to": None,
    "subject": None,
    "receivedAt": "2024-05-01T12:00:00Z",
    "preview": "hi",
    "hasAttachment": True,
    "size": 1234,
    "cc": [{"name": None, "email": "c@x.example"}],
    "bcc": None,
    "replyTo": None,
    "sender": None,
    "sentAt": "2024-05-01T14:00:00+02:00",
    "messageId": ["m1@x"],
    "inReplyTo": None,
    "references": None,
    "headers": [{"name": "Subject", "value": " hi"}, {"name": "X-Long", "value": " a\r\n b\r\n\tc"}],
    "textBody": [{"partId": "1", "blobId": "B1", "type": "text/plain", "charset": "utf-8", "size": 3}],
    "htmlBody": [{"partId": "1", "blobId": "B1", "type": "text/plain", "charset": "utf-8", "size": 3}],
    "attachments": [
        {
            "partId": "2",
            "blobId": "G/a+b=",
            "type": "application/pdf",
            "name": "R&D report ü.pdf",
            "size": 9,
            "disposition": "attachment",
            "cid": None,
        },
        {"partId": "3", "blobId": None, "type": "text/plain", "name": "ghost", "size": 0},
    ],
    "bodyValues": {"1": {"value": "hé\n", "isEncodingProblem": False, "isTruncated": False}},
}


def test_render_full_message() -> None:
    full = inbox.render_full(row(), RAW_EMAIL)
    data = full.model_dump(mode="json", by_alias=True)
    assert data["id"] == "eml_Mabc" and data["thread_id"] == "thr_Tdef" and data["folder_ids"] == ["fld_Fin"]
    assert data["keywords"] == {"$seen": True}
    assert data["from"] == [{"name": "Ann", "email": "ann@x.example"}] and data["to"] is None
    assert data["sent_at"] == "2024-05-01T14:00:00+02:00"
    assert data["body_values"] == {"1": {"value": "hé\n", "is_encoding_problem": False, "is_truncated": False}}
    assert data["authentication_results"] is None
    (att,) = data["attachments"]
    assert att["blob_id"] == "G/a+b=" and att["name"] == "R&D report ü.pdf"
    parts = urlsplit(att["download_path"])
    assert parts.path == "/mailboxes/mbx_1/inbox/attachments"
    assert parse_qs(parts.query) == {"blob_id": ["G/a+b="], "message_id": ["eml_Mabc"], "part_id": ["2"]}
    (text,) = data["text_body"]
    assert text["blob_id"] == "B1" and text["part_id"] == "1"
    assert parse_qs(urlsplit(text["download_path"]).query) == {
        "blob_id": ["B1"],
        "message_id": ["eml_Mabc"],
        "part_id": ["1"],
    }
    assert data["headers"] == [{"name": "Subject", "value": "hi"}, {"name": "X-Long", "value": "a b\tc"}]
    raw = inbox.render_full(row(), RAW_EMAIL, raw_headers=True).model_dump(mode="json", by_alias=True)
    assert raw["headers"] == [{"name": "Subject", "value": " hi"}, {"name": "X-Long", "value": " a\r\n b\r\n\tc"}]
    listed = inbox.render_message(row(), RAW_EMAIL).model_dump(mode="json", by_alias=True)
    assert listed["object"] == "inbox_message" and "body_values" not in listed


def test_has_attachment_follows_the_attachments_list() -> None:
    # The server's flag says yes, the list has only a part without a blob: no attachment.
    email = {**RAW_EMAIL, "attachments": [RAW_EMAIL["attachments"][1]]}
    assert inbox.render_full(row(), email).has_attachment is False
    # The server's flag says no (a nameless octet-stream part), the list has it: an attachment.
    assert inbox.render_full(row(), {**RAW_EMAIL, "hasAttachment": False}).has_attachment is True
    # Without the list (a bare summary): the server's flag.
    bare = {k: v for k, v in RAW_EMAIL.items() if k != "attachments"}
    assert inbox.render_message(row(), bare).has_attachment is True


def test_html_only_preview_is_text() -> None:
    html = "<HTML><HEAD> <TITLE>RE[4]: x</TITLE><style>p{}</style></HEAD><BODY><p>Caf&eacute;&nbsp; <b>ok</b>"
    html += "<script>alert(1)</script>\n\n   done" + " word" * 100 + "</BODY></HTML>"
    email = {
        **RAW_EMAIL,
        "preview": html[:256],
        "textBody": [{"partId": "1", "blobId": "B1", "type": "text/html"}],
        "bodyValues": {"1": {"value": html, "isEncodingProblem": False, "isTruncated": False}},
    }
    got = inbox.render_full(row(), email).preview
    assert got.startswith("Café ok done word word") and len(got) == 256 and "<" not in got
    # A plain-text body keeps the server's preview.
    assert inbox.render_full(row(), RAW_EMAIL).preview == "hi"


def test_download_path_without_a_part() -> None:
    assert inbox.download_path("mbx_1", "Gx") == "/mailboxes/mbx_1/inbox/attachments?blob_id=Gx"


def test_thread_summary_counts() -> None:
    def e(i: str, at: str, boxes: list[str], kw: dict[str, bool]) -> dict[str, Any]:
        return {
            "id": i,
            "threadId": "T1",
            "receivedAt": at,
            "mailboxIds": {b: True for b in boxes},
            "keywords": kw,
            "from": [{"name": None, "email": f"{i}@x"}],
            "subject": "s",
            "preview": "",
            "size": 1,
        }

    members = [
        e("M1", "2024-01-01T00:00:00Z", ["Fin"], {"$seen": True}),
        e("M2", "2024-01-02T00:00:00Z", ["Fse"], {}),
        e("M3", "2024-01-03T00:00:00Z", ["Fin"], {}),
        e("M4", "2024-01-04T00:00:00Z", ["Fdr"], {"$draft": True}),
    ]
    c = replystate.classify(members, FOLDERS, [row().address])
    view = replystate.derive(c, None)
    s = InboxThreadSummary.model_validate(inbox._summary_data(row(), members[2], c, view))
    assert (s.message_count, s.unread_count) == (4, 2)
    assert (s.reply_state, s.reply_version, s.attention_state) == ("needs_reply", 3, "needs_reply")
    assert s.needs_reply_since is not None and s.needs_reply_since.day == 3
    assert s.latest_inbound_email_id == "M3" and s.latest_outbound_email_id == "M2"
    assert s.latest_email_id == "M4" and s.latest_from_address == "M4@x"
    assert s.first_message_at.day == 1 and s.last_message_at.day == 4


# ----------------------------------------------------------------------------- keyset paging


class CyrusLikeStore:
    """Email/query and Email/get over a list of Emails, as Cyrus 3.6 answers them. It reads the
    request's JSON body (RFC 8620 section 3.3) and resolves back-references by ``resultOf``."""

    def __init__(self, emails: list[dict[str, Any]]) -> None:
        self.emails = {e["id"]: e for e in emails}
        self.requests = 0
        self.anchor_misses = 0  # Email/query calls answered anchorNotFound
        self.fetched = 0  # Emails returned by Email/get

    def _match(self, e: dict[str, Any], f: dict[str, Any]) -> bool:
        if f.get("operator") == "AND":
            return all(self._match(e, c) for c in f["conditions"])
        if "before" in f and not e["receivedAt"] <= f["before"]:  # inclusive, like Cyrus 3.6
            return False
        return not ("notKeyword" in f and e["keywords"].get(f["notKeyword"]))

    async def call(self, address: str, request: Request) -> Results:
        self.requests += 1
        out: list[tuple[str, dict[str, Any], str]] = []
        by_id: dict[str, dict[str, Any]] = {}
        for name, args, cid in json.loads(json.dumps(request.body("acct")))["methodCalls"]:
            if name == "Email/query":
                found = [e for e in self.emails.values() if self._match(e, args["filter"])]
                found.sort(key=lambda e: (e["receivedAt"], e["id"]), reverse=True)
                order = [e["id"] for e in found]
                pos, limit = args.get("position", 0), args.get("limit")
                if "anchor" in args:  # RFC 8620 section 5.5: position ignored
                    if args["anchor"] not in order:
                        by_id[cid] = {}
                        out.append(("error", {"type": "anchorNotFound"}, cid))
                        self.anchor_misses += 1
                        continue
                    pos = max(0, order.index(args["anchor"]) + args.get("anchorOffset", 0))
                ids = order[pos : None if limit is None else pos + limit]
                res = {"ids": ids, "total": len(found), "position": pos}
            elif name == "Email/get":
                ref = args["#ids"]
                assert ref["path"] == "/ids"
                if "ids" not in by_id[ref["resultOf"]]:
                    out.append(("error", {"type": "invalidResultReference"}, cid))
                    continue
                wanted = by_id[ref["resultOf"]]["ids"]
                res = {"list": [dict(self.emails[i]) for i in wanted if i in self.emails], "notFound": []}
                self.fetched += len(res["list"])
            elif name == "Mailbox/get":  # the Junk folder's count (junk_total)
                counted = [
                    {"id": m, "totalEmails": sum(1 for e in self.emails.values() if e["mailboxIds"].get(m))}
                    for m in args["ids"]
                ]
                res = {"list": counted, "notFound": []}
            else:
                raise AssertionError(name)
            by_id[cid] = res
            out.append((name, res, cid))
        return Results(responses=out, session_state="s")


def email_at(n: int, second: int) -> dict[str, Any]:
    at = (datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "id": f"M{random.getrandbits(48):012x}",
        "threadId": f"T{n}",
        "mailboxIds": {"Fin": True},
        "keywords": {},
        "from": None,
        "to": None,
        "subject": str(n),
        "receivedAt": at,
        "preview": "",
        "hasAttachment": False,
        "size": 1,
    }


def walk(svc: Any, params: dict[str, Any], between: Any = None) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        q = InboxListQuery.model_validate({**params, **({"cursor": cursor} if cursor else {})})
        import asyncio

        page = asyncio.run(inbox.list_messages(svc, NO_SESSION, row(), q))
        seen += [m.id.removeprefix("eml_") for m in page.data]
        assert len(page.data) <= q.limit
        if between is not None:
            between(page)
        if not page.pagination.has_more:
            assert page.pagination.next_cursor is None
            return seen
        cursor = page.pagination.next_cursor


@pytest.mark.parametrize("seed", range(60))
def test_keyset_paging_never_repeats_or_skips(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random mailboxes full of same-second ties; between pages, listed mail is read (leaving the
    not_keyword=$seen filter) and unlisted mail is deleted: every message that stays matching is
    listed exactly once."""
    rnd = random.Random(seed)
    random.seed(seed)
    emails = [email_at(n, rnd.randrange(4)) for n in range(rnd.randrange(1, 40))]
    store = CyrusLikeStore(emails)
    svc: Any = SimpleNamespace(jmap=store, cursors=CursorCodec(b"k"), settings=SETTINGS)
    listed: set[str] = set()
    gone: set[str] = set()
    added: set[str] = set()

    def churn(page: Any) -> None:
        for m in page.data:
            listed.add(m.id.removeprefix("eml_"))
        for e in list(store.emails.values()):
            r = rnd.random()
            if e["id"] in listed and r < 0.5:
                e["keywords"] = {"$seen": True}
            elif e["id"] not in listed and r < 0.05:
                del store.emails[e["id"]]
                gone.add(e["id"])
        for _ in range(rnd.choice([0, 0, 1, 8])):  # mail moved into the list, in a listed second
            new = email_at(1000 + len(added), rnd.randrange(4))
            store.emails[new["id"]] = new
            added.add(new["id"])

    limit = rnd.randrange(1, 7)
    seen = walk(svc, {"limit": limit, "not_keyword": "$seen"}, churn)
    assert len(seen) == len(set(seen))
    assert {e["id"] for e in emails} - gone <= set(seen) <= {e["id"] for e in emails} | added
    # Without churn the walk is the sorted list and total is stable, also when bursts exceed
    # MAX_REFETCH (the rest of such a second is then skipped by position: exact only without churn).
    monkeypatch.setattr(inbox, "MAX_REFETCH", rnd.choice([500, 2]))
    store = CyrusLikeStore(emails)
    svc = SimpleNamespace(jmap=store, cursors=CursorCodec(b"k"), settings=SETTINGS)
    totals: list[int] = []
    seen = walk(svc, {"limit": limit}, lambda page: totals.append(page.pagination.total))
    ordered = sorted(emails, key=lambda e: (e["receivedAt"], e["id"]), reverse=True)
    assert seen == [e["id"] for e in ordered]
    assert set(totals) == {len(emails)}
    assert store.requests == len(totals) and store.anchor_misses == 0
    assert store.fetched == len(emails)  # every page placed by its anchor: nothing fetched twice


def test_a_page_whose_anchor_left_the_list_is_placed_by_received_at() -> None:
    """Under not_keyword=$seen, reading the last listed message removes the anchor: the next page
    falls back to (receivedAt, id) placement in a second request and still skips nothing."""
    emails = [email_at(n, n // 3) for n in range(9)]  # three per second
    store = CyrusLikeStore(emails)
    svc: Any = SimpleNamespace(jmap=store, cursors=CursorCodec(b"k"), settings=SETTINGS)
    import asyncio

    first = asyncio.run(inbox.list_messages(svc, NO_SESSION, row(), InboxListQuery(limit=4, not_keyword="$seen")))
    for m in first.data:
        store.emails[m.id.removeprefix("eml_")]["keywords"] = {"$seen": True}
    query = InboxListQuery(limit=4, not_keyword="$seen", cursor=first.pagination.next_cursor)
    second = asyncio.run(inbox.list_messages(svc, NO_SESSION, row(), query))
    ordered = [e["id"] for e in sorted(emails, key=lambda e: (e["receivedAt"], e["id"]), reverse=True)]
    assert [m.id.removeprefix("eml_") for m in first.data + second.data] == ordered[:8]
    assert store.anchor_misses == 1 and store.requests == 3
    assert second.pagination.total == 9 and second.pagination.has_more


def test_cursor_checks() -> None:
    store = CyrusLikeStore([email_at(n, 0) for n in range(5)])
    svc: Any = SimpleNamespace(jmap=store, cursors=CursorCodec(b"k"), settings=SETTINGS)
    import asyncio

    first = asyncio.run(inbox.list_messages(svc, NO_SESSION, row(), InboxListQuery(limit=2)))
    cursor = first.pagination.next_cursor
    assert cursor
    for params in ({"subject": "x"}, {"before": "2030-01-01T00:00:00Z"}, {"folder_role": "inbox"}):
        with pytest.raises(ValidationFailed):
            query = InboxListQuery.model_validate({**params, "cursor": cursor})
            asyncio.run(inbox.list_messages(svc, NO_SESSION, row(), query))
    other = Mailbox(**{**row().model_dump(), "id": "mbx_2"})
    with pytest.raises(ValidationFailed):
        asyncio.run(inbox.list_messages(svc, NO_SESSION, other, InboxListQuery(cursor=cursor)))
    forged = svc.cursors.encode(
        inbox.KIND_MESSAGES,
        inbox._resolve(row(), FOLDERS, InboxListQuery()).binding,
        {"s": "2024-01-01T00:00:00Z", "r": "x", "i": "M", "k": -1, "o": 0},
    )
    with pytest.raises(ValidationFailed):
        asyncio.run(inbox.list_messages(svc, NO_SESSION, row(), InboxListQuery(cursor=forged)))
