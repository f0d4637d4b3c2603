"""Thread reply state derived from the messages and the user's setting
(:mod:`shipmail.inbox.replystate`), the thread-list reply parameters, the update and draft bodies,
and the reply draft's recipients (:mod:`shipmail.replydrafts.service`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from shipmail.inbox import replystate
from shipmail.inbox.models import InboxThreadState
from shipmail.inbox.schemas import InboxThreadListQuery, UpdateInboxThreadReplyStateRequest
from shipmail.replydrafts.schemas import CreateInboxReplyDraftRequest
from shipmail.replydrafts.service import content_sha256, recipients

FOLDERS = {"inbox": "Fin", "drafts": "Fdr", "sent": "Fse", "trash": "Ftr", "junk": "Fju", "archive": "Far"}
OWN = ["me@ours.example", "alias@ours.example"]


def e(i: str, day: int, box: str = "Fin", sender: str = "ann@x.example", draft: bool = False) -> dict[str, Any]:
    return {
        "id": i,
        "threadId": "T",
        "receivedAt": f"2026-01-{day:02d}T10:00:00Z",
        "mailboxIds": {box: True},
        "keywords": {"$draft": True} if draft else {},
        "from": [{"name": None, "email": sender}],
    }


def view(members: list[dict[str, Any]], stored: InboxThreadState | None = None) -> replystate.ReplyView:
    return replystate.derive(replystate.classify(members, FOLDERS, OWN), stored)


def stored(state: str, basis: str, updates: int = 1) -> InboxThreadState:
    return InboxThreadState(
        mailbox_id="mbx_1",
        thread_id="T",
        user_state=state,
        basis_email_id=basis,
        updates=updates,
        set_at=datetime(2026, 2, 1, 9, 30, tzinfo=UTC),
        updated_at=datetime(2026, 2, 1, 9, 30, tzinfo=UTC),
    )


def test_inbound_needs_reply_since_the_first_unanswered_message() -> None:
    v = view([e("A", 1), e("B", 2)])
    assert (v.state, v.version, v.needs_reply_since, v.basis_email_id) == (
        "needs_reply",
        2,
        "2026-01-01T10:00:00Z",
        "B",
    )
    # A reply sent (in Sent) answers both; a later inbound message starts a new wait.
    v = view([e("A", 1), e("B", 2), e("R", 3, box="Fse", sender="me@ours.example"), e("C", 4)])
    assert (v.state, v.version, v.needs_reply_since) == ("needs_reply", 4, "2026-01-04T10:00:00Z")


def test_outbound_waits_on_the_contact_and_drafts_do_not_count() -> None:
    # From an alias, delivered to the inbox (not in Sent): still outbound.
    v = view([e("A", 1), e("R", 2, sender="Alias@Ours.example"), e("D", 3, box="Fdr", draft=True)])
    assert (v.state, v.version, v.needs_reply_since, v.basis_email_id) == ("waiting_on_contact", 2, None, "R")
    c = replystate.classify([e("A", 1), e("R", 2, box="Fse", sender="x@y.example")], FOLDERS, OWN)
    assert [m["id"] for m in c.inbound] == ["A"] and [m["id"] for m in c.outbound] == ["R"]
    # A thread of drafts only expects no reply; its version is at least 1.
    v = view([e("D", 1, box="Fdr", draft=True)])
    assert (v.state, v.version, v.basis_email_id) == ("no_reply_expected", 1, None)


def test_user_setting_holds_until_a_newer_message() -> None:
    members = [e("A", 1), e("B", 2)]
    v = view(members, stored("resolved", basis="B"))
    assert (v.state, v.version, v.needs_reply_since) == ("resolved", 3, None)
    assert v.done_at == datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
    assert view(members, stored("no_reply_expected", basis="B")).state == "no_reply_expected"
    # A new inbound message lapses it: needs reply again, the version moves on.
    v = view([*members, e("C", 3)], stored("resolved", basis="B"))
    assert (v.state, v.version, v.needs_reply_since, v.done_at) == ("needs_reply", 4, "2026-01-01T10:00:00Z", None)
    # Reopening a thread that waits on the contact: needs reply since the reopening.
    waiting = [e("A", 1), e("R", 2, box="Fse", sender="me@ours.example")]
    v = view(waiting, stored("needs_reply", basis="R", updates=2))
    assert (v.state, v.version, v.needs_reply_since) == ("needs_reply", 4, "2026-02-01T09:30:00Z")
    # ... and a reply sent afterwards lapses the reopening.
    v = view([*waiting, e("S", 3, box="Fse", sender="me@ours.example")], stored("needs_reply", basis="R"))
    assert v.state == "waiting_on_contact"


def test_view_data_carries_the_reference_and_sdk_names() -> None:
    data = replystate.view_data(view([e("A", 1)], stored("resolved", basis="A")), "thr_T")
    assert data["reply_state"] == "resolved" and data["attention_state"] == "done"
    assert data["reply_version"] == data["version"] == 2 and data["conversation_id"] == "thr_T"
    assert data["needs_reply_since"] is data["attention_since"] is None
    assert data["follow_up_at"] is None and data["assigned_member_id"] is None
    assert set(replystate.ATTENTION_OF) == set(replystate.REPLY_STATES)


def test_thread_list_reply_parameters() -> None:
    q = InboxThreadListQuery.model_validate({})
    assert (q.state_filter, q.sort_key, q.descending, q.limit) == (None, None, True, 25)
    q = InboxThreadListQuery.model_validate({"reply_state": "needs_reply", "sort_by": "needs_reply_since"})
    assert (q.state_filter, q.sort_key, q.descending) == ("needs_reply", "needs_reply_since", False)
    q = InboxThreadListQuery.model_validate({"attention_state": "waiting_on_them", "sort_by": "attention_since"})
    assert (q.state_filter, q.sort_key) == ("waiting_on_contact", "needs_reply_since")
    q = InboxThreadListQuery.model_validate({"reply_state": "resolved"})  # the reference's defaults
    assert (q.sort_key, q.descending) == ("needs_reply_since", False)
    q = InboxThreadListQuery.model_validate({"reply_state": "resolved", "order": "desc"})
    assert (q.sort_key, q.descending) == ("needs_reply_since", True)
    q = InboxThreadListQuery.model_validate({"order": "asc"})
    assert (q.sort_key, q.descending) == ("last_message_at", False)
    for bad, code in [
        ({"reply_state": "bogus"}, "literal_error"),
        ({"attention_state": "follow_up_due"}, "not_supported"),
        ({"sort_by": "subject"}, "literal_error"),
        ({"order": "sideways"}, "literal_error"),
        ({"reply_state": "resolved", "attention_state": "done"}, "value_error"),
    ]:
        with pytest.raises(pydantic.ValidationError) as caught:
            InboxThreadListQuery.model_validate(bad)
        assert caught.value.errors()[0]["type"] == code, bad


def test_update_body_takes_the_reference_or_the_sdk_form() -> None:
    ref = UpdateInboxThreadReplyStateRequest.model_validate({"reply_state": "resolved", "expected_reply_version": 3})
    assert (ref.target, ref.expected) == ("resolved", 3)
    sdk = UpdateInboxThreadReplyStateRequest.model_validate({"expected_version": 2, "done": False})
    assert (sdk.target, sdk.expected) == ("needs_reply", 2)
    for bad in [
        {"reply_state": "resolved"},
        {"expected_reply_version": 1},
        {"reply_state": "waiting_on_contact", "expected_reply_version": 1},
        {"reply_state": "resolved", "expected_reply_version": 0},
        {"reply_state": "resolved", "expected_reply_version": 1, "done": True},
        {"expected_version": 1},
        {"expected_version": 1, "done": True, "follow_up_at": "2026-01-01T00:00:00Z"},
        {"reply_state": "resolved", "expected_reply_version": 1, "extra": 1},
        {},
    ]:
        with pytest.raises(pydantic.ValidationError):
            UpdateInboxThreadReplyStateRequest.model_validate(bad)


def test_draft_body_needs_a_body_and_one_version() -> None:
    ok = CreateInboxReplyDraftRequest.model_validate({"text": "hi", "expected_reply_version": 2})
    assert (ok.expected, ok.reply_mode) == (2, "reply")
    assert CreateInboxReplyDraftRequest.model_validate({"html": "<p>x</p>", "expected_version": 5}).expected == 5
    for bad in [
        {"expected_reply_version": 1},
        {"text": "hi"},
        {"text": "hi", "expected_reply_version": 1, "expected_version": 1},
        {"text": "hi", "expected_reply_version": 1, "reply_mode": "forward"},
        {"text": "x" * 256001, "expected_reply_version": 1},
    ]:
        with pytest.raises(pydantic.ValidationError):
            CreateInboxReplyDraftRequest.model_validate(bad)


def test_reply_recipients_leave_out_the_mailbox_and_duplicates() -> None:
    original = {
        "from": [{"name": "Ann", "email": "ann@x.example"}],
        "replyTo": [{"name": "Desk", "email": "desk@x.example"}],
        "to": [{"name": None, "email": "ME@ours.example"}, {"name": "Bob", "email": "bob@x.example"}],
        "cc": [{"name": None, "email": "desk@x.example"}, {"name": "Cat", "email": "cat@x.example"}],
    }
    to, cc = recipients(original, "reply", OWN)
    assert [(p.address, p.name) for p in to] == [("desk@x.example", "Desk")] and cc == []
    to, cc = recipients(original, "reply_all", OWN)
    assert [p.address for p in cc] == ["bob@x.example", "cat@x.example"]
    to, _ = recipients({**original, "replyTo": None}, "reply", OWN)
    assert [p.address for p in to] == ["ann@x.example"]


def test_content_hash_is_stable_and_content_bound() -> None:
    assert content_sha256("Re: x", "hi", None) == content_sha256("Re: x", "hi", None)
    assert content_sha256("Re: x", "hi", None) != content_sha256("Re: x", None, "hi")
    assert len(content_sha256(None, None, None)) == 64


def test_a_reply_within_the_same_second_is_newer() -> None:
    """receivedAt has whole seconds: the reply sent within the second of the message it answers
    sorts after it, whatever the ids (an id-only order said needs_reply, measured on Cyrus)."""
    inbound = {**e("Mz", 5), "messageId": ["q@x.example"], "inReplyTo": None}
    reply = {**e("Ma", 5, box="Fse", sender="me@ours.example"), "messageId": ["r@ours.example"]}
    reply["inReplyTo"] = ["q@x.example"]
    for members in ([inbound, reply], [reply, inbound]):
        c = replystate.classify(members, FOLDERS, OWN)
        assert [m["id"] for m in c.messages] == ["Mz", "Ma"]
        assert replystate.derive(c, None).state == "waiting_on_contact"
    # Unrelated messages of one second keep the id order; a reply loop does not hang.
    loop = [
        {**e("M1", 5), "messageId": ["a"], "inReplyTo": ["b"]},
        {**e("M2", 5), "messageId": ["b"], "inReplyTo": ["a"]},
    ]
    assert [m["id"] for m in replystate.chronological(loop)] in (["M1", "M2"], ["M2", "M1"])
    assert [m["id"] for m in replystate.chronological([e("M9", 5), e("M1", 5)])] == ["M1", "M9"]
